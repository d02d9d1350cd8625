// Registers Ann and Ben on the server ($SPLITSAVE_SERVER, default http://127.0.0.1:3000) and makes
// them partners, so the app has a couple to sign in as. Once they exist it says so and changes
// nothing, so the quick start can run it every time.
const server = process.env.SPLITSAVE_SERVER ?? "http://127.0.0.1:3000"
const password = "correct horse battery staple"

async function post(path, body, token) {
  const headers = {}
  if (body !== undefined) headers["content-type"] = "application/json"
  if (token !== undefined) headers.authorization = `Bearer ${token}`
  const response = await fetch(server + path, { method: "POST", headers, body: body && JSON.stringify(body) })
  const answer = await response.json().catch(() => ({}))
  if (!response.ok) throw new Error(`${path} answered ${response.status}: ${JSON.stringify(answer)}`)
  return answer
}

const taken = await fetch(server + "/api/auth/login", {
  method: "POST",
  headers: { "content-type": "application/json" },
  body: JSON.stringify({ email: "ann@example.com", password }),
})
if (taken.ok) {
  console.log(`Ann (ann@example.com) and Ben (ben@example.com) exist already; password: ${password}`)
  process.exit(0)
}
const ann = await post("/api/auth/register", { email: "ann@example.com", password, name: "Ann", currency: "EUR", income: "3000.00" })
const ben = await post("/api/auth/register", { email: "ben@example.com", password, name: "Ben", currency: "EUR", income: "2000.00" })
const invitation = await post("/api/partnerships/invite", { email: "ben@example.com", approval_threshold: "100" }, ann.access_token)
await post(`/api/partnerships/accept/${invitation.id}`, undefined, ben.access_token)
console.log(`Ann (ann@example.com) and Ben (ben@example.com) are partners; password: ${password}`)
