/**
 * Two partners, each in their own browser context, use the web app against the real server:
 * one edits offline, both converge, an over-threshold expense waits for the other's approval.
 * Every check reads what the page shows; waits poll with deadlines.
 */
import assert from "node:assert/strict"
import { mkdirSync, mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { after, before, test } from "node:test"
import { fileURLToPath } from "node:url"

import { TestServer, eventually, makeCouple } from "./.harness/server.js"
import { freePort, launchChromium, startPreview } from "./app.mjs"

// The screenshots in docs/images are rewritten only when asked (UPDATE_SCREENSHOTS=1), so that
// running the tests leaves the checkout as it was; otherwise they go to a temporary directory.
const IMAGES = process.env.UPDATE_SCREENSHOTS === "1"
  ? fileURLToPath(new URL("../../../docs/images/", import.meta.url))
  : join(mkdtempSync(join(tmpdir(), "splitsave-web-shots-")), "/")
const WAIT_MS = 20_000

let server, preview, browser

before(async () => {
  const port = await freePort()
  server = await TestServer.start({ env: { CORS_ORIGIN: `http://127.0.0.1:${port}` } })
  preview = await startPreview(server.baseUrl, port)
  browser = await launchChromium()
})

after(async () => {
  await browser?.close()
  await preview?.stop()
  await server?.stop()
})

/** A partner's page, signed in. */
async function signIn(user) {
  const context = await browser.newContext({ viewport: { width: 1000, height: 700 } })
  const page = await context.newPage()
  page.on("pageerror", (err) => console.error(`[${user.name}] page error:`, err))
  page.on("console", (m) => m.type() === "error" && console.error(`[${user.name}] console:`, m.text()))
  await page.goto(preview.url)
  await page.getByLabel("Email").fill(user.email)
  await page.getByLabel("Password").fill(user.password)
  await page.getByRole("button", { name: "Sign in" }).click()
  await page.getByText(`Signed in as ${user.name}`).waitFor({ timeout: WAIT_MS })
  await syncStatus(page, "Synced")
  return page
}

function syncStatus(page, text) {
  return page.getByRole("status", { name: "Sync status" }).filter({ hasText: text }).waitFor({ timeout: WAIT_MS })
}

async function addExpense(page, { name, amount, category, frequency }) {
  const form = page.locator("#add-expense")
  await form.getByLabel("Name").fill(name)
  await form.getByLabel("Amount").fill(amount)
  await form.getByLabel("Category").selectOption(category)
  await form.getByLabel("Frequency").selectOption(frequency)
  await form.getByRole("button", { name: "Add expense" }).click()
  await page.locator("#expenses tr", { hasText: name }).waitFor({ timeout: WAIT_MS })
}

/** The expense table as the user reads it: one array of cell texts per row. */
function expenses(page) {
  return page.locator("#expenses tr").evaluateAll((rows) => rows.map((r) => [...r.cells].map((c) => c.textContent.trim())))
}

const splitText = (page) => page.getByTestId("split").innerText()
const approvalsText = (page) => page.locator("#approvals").innerText()

/** Waits until both pages show the same expenses (`count` rows) and split; returns them. */
async function converged(ann, ben, count) {
  return eventually(
    `both pages to show the same ${count} expenses and split`,
    async () => {
      const [a, b, sa, sb] = await Promise.all([expenses(ann), expenses(ben), splitText(ann), splitText(ben)])
      return a.length === count && JSON.stringify(a) === JSON.stringify(b) && sa === sb && { rows: a, split: sa }
    },
    WAIT_MS,
  )
}

function shoot(page, name) {
  mkdirSync(IMAGES, { recursive: true })
  return page.screenshot({ path: `${IMAGES}web-example-${name}.png` })
}

test("two partners: offline edits converge, an over-threshold expense waits for approval", async () => {
  // Ann invites Ben (approval threshold 100 EUR); their incomes make the split 60/40.
  const couple = await makeCouple(server, { inviter: { income: "3000.00" }, invitee: { income: "2000.00" } })
  const ann = await signIn(couple.inviter)
  const ben = await signIn(couple.invitee)

  await ann.getByLabel("Offline").check()
  await syncStatus(ann, "Offline")
  await addExpense(ann, { name: "Rent", amount: "1200.00", category: "housing", frequency: "monthly" })
  await addExpense(ann, { name: "Groceries", amount: "60.25", category: "groceries", frequency: "weekly" })
  await addExpense(ben, { name: "Internet", amount: "39.99", category: "utilities", frequency: "monthly" })
  // Offline, Ann's page already applies the rules: Rent waits, Ben's expense is not there yet.
  assert.deepEqual(await expenses(ann), [
    ["Rent", "1200.00 EUR", "housing", "monthly", "Ann", "Waiting for approval"],
    ["Groceries", "60.25 EUR", "groceries", "weekly", "Ann", "Active"],
  ])
  assert.deepEqual(await expenses(ben), [["Internet", "39.99 EUR", "utilities", "monthly", "Ben", "Active"]])
  await shoot(ann, "1-ann-offline")

  await ann.getByLabel("Offline").uncheck()
  await Promise.all([syncStatus(ann, "Synced"), syncStatus(ben, "Synced")])
  const before = await converged(ann, ben, 3)
  assert.deepEqual(
    before.rows.map(([name, amount, , , by, status]) => [name, amount, by, status]),
    [
      ["Rent", "1200.00 EUR", "Ann", "Waiting for approval"],
      ["Groceries", "60.25 EUR", "Ann", "Active"],
      ["Internet", "39.99 EUR", "Ben", "Active"],
    ],
  )
  // 60.25 × 52 / 12 + 39.99 = 301.07 a month; 3000 : 2000 gives 180.642 and 120.428, the
  // leftover cent to the larger remainder (Ben's).
  assert.match(before.split, /Total 301\.07 EUR a month/)
  assert.match(before.split, /Ann pays 180\.64 EUR \(60%\)/)
  assert.match(before.split, /Ben pays 120\.43 EUR \(40%\)/)

  assert.match(await approvalsText(ann), /Ann asks to add Rent — 1200\.00 EUR monthly \(waiting for your partner\)/)
  const request = ben.locator("#approvals li", { hasText: "Ann asks to add Rent — 1200.00 EUR monthly" })
  await request.waitFor({ timeout: WAIT_MS })
  await shoot(ann, "2-ann-synced")
  await shoot(ben, "3-ben-pending")

  await request.getByRole("button", { name: "Approve" }).click()
  const approved = await eventually(
    "Rent to be active on both pages",
    async () => {
      const state = await converged(ann, ben, 3)
      return state.rows.find((r) => r[0] === "Rent")?.[5] === "Active" && state
    },
    WAIT_MS,
  )
  // + 1200.00 a month: 1501.07, that is 900.642 and 600.428.
  assert.match(approved.split, /Total 1501\.07 EUR a month/)
  assert.match(approved.split, /Ann pays 900\.64 EUR \(60%\)/)
  assert.match(approved.split, /Ben pays 600\.43 EUR \(40%\)/)
  for (const page of [ann, ben]) assert.equal(await approvalsText(page), "Nothing is waiting.")
  await Promise.all([syncStatus(ann, "Synced"), syncStatus(ben, "Synced")])
  await shoot(ben, "4-ben-approved")
  await shoot(ann, "5-ann-approved")
})
