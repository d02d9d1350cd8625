/**
 * The SplitSave web example: sign in, then the couple's partnership document, opened from
 * IndexedDB when it is there and synced with the server through the page's own origin (Vite
 * proxies /api and /sync). Every edit is an operation of @splitsave/client applied to the local
 * document, online or not; the page re-renders on every change, local or from the partner.
 */
import {
  ApiError,
  CATEGORY_VALUES,
  FREQUENCY_VALUES,
  KeyValueTokenStore,
  SplitSaveClient,
  addExpense,
  approve,
  decline,
  documentSplit,
  indexedDbStorage,
  readDocument,
  toMinorPositive,
  type Category,
  type Frequency,
  type Outcome,
  type SyncState,
} from "@splitsave/client"

import { byId, h } from "./dom.js"
import { approvalItems, expenseRows, splitView } from "./view.js"

type Handle = Awaited<ReturnType<SplitSaveClient["open"]>>

const client = new SplitSaveClient({
  baseUrl: location.origin,
  storage: indexedDbStorage(),
  tokenStore: new KeyValueTokenStore(localStorage),
  retryIntervalMs: 1000,
})

const login = byId<HTMLFormElement>("login")
const addForm = byId<HTMLFormElement>("add-expense")
const offline = byId<HTMLInputElement>("offline")
let me = ""
let handle: Handle | undefined

function message(err: unknown): string {
  if (err instanceof ApiError && err.status === 401) return "Wrong email or password."
  return err instanceof Error ? err.message : String(err)
}

function showLogin(error = ""): void {
  byId("app").hidden = true
  byId("bar").hidden = true
  login.hidden = false
  login.querySelector(".error")!.textContent = error
}

/** Opens the couple's document and shows it, re-rendering on every change. */
async function start(userId: string): Promise<void> {
  me = userId
  handle = await client.open()
  handle.on("change", render)
  client.onSyncState(showSyncStatus)
  login.hidden = true
  byId("app").hidden = false
  byId("bar").hidden = false
  render()
}

function render(): void {
  if (handle === undefined) return
  const doc = handle.doc()
  const state = readDocument(doc)
  const name = state.members.find((m) => m.user_id === me)?.name ?? ""
  byId("who").textContent = `Signed in as ${name}`
  byId("split").replaceChildren(splitView(documentSplit(doc)))
  byId("approvals").replaceChildren(...approvalItems(state, me))
  byId("expenses").replaceChildren(...expenseRows(state))
}

/** Offline, or online and whether the server holds every local change (told by the package). */
function showSyncStatus(state: SyncState): void {
  const el = byId("sync-status")
  el.dataset.state = state
  el.textContent = { offline: "Offline", synced: "Synced", syncing: "Syncing…" }[state]
}

/** Applies an operation to the local document (it syncs when online). */
function apply(op: (d: object, ctx: { user: string; now: number }) => Outcome): Outcome {
  let outcome: Outcome | undefined
  handle!.change((d) => {
    outcome = op(d as object, { user: me, now: Date.now() })
  })
  return outcome!
}

login.addEventListener("submit", async (event) => {
  event.preventDefault()
  const form = new FormData(login)
  try {
    const user = await client.login(String(form.get("email")), String(form.get("password")))
    await start(user.id)
  } catch (err) {
    showLogin(message(err))
  }
})

addForm.addEventListener("submit", (event) => {
  event.preventDefault()
  const form = new FormData(addForm)
  const error = addForm.querySelector(".error")!
  try {
    const currency = readDocument(handle!.doc()).partnership.currency
    const amount = toMinorPositive(String(form.get("amount")).trim(), currency)
    const outcome = apply((d, ctx) =>
      addExpense(d, ctx, {
        name: String(form.get("name")),
        amount,
        category: form.get("category") as Category,
        frequency: form.get("frequency") as Frequency,
      }),
    )
    addForm.reset()
    error.textContent = outcome.kind === "approval_requested" ? "Over the approval threshold: it waits for your partner." : ""
  } catch (err) {
    error.textContent = message(err)
  }
})

byId("approvals").addEventListener("click", (event) => {
  const button = (event.target as Element).closest<HTMLButtonElement>("button[data-request]")
  if (button === null) return
  const id = button.dataset.request!
  try {
    apply((d, ctx) => (button.dataset.answer === "approve" ? approve : decline)(d, ctx, id))
  } catch (err) {
    alert(message(err))
  }
})

offline.addEventListener("change", () => {
  if (offline.checked) client.goOffline()
  else client.goOnline()
})

byId("sign-out").addEventListener("click", async () => {
  await client.logout()
  location.reload()
})

client.onSignedOut(() => showLogin("Your session ended: sign in again."))

for (const [select, values] of [["category", CATEGORY_VALUES], ["frequency", FREQUENCY_VALUES]] as const) {
  addForm.querySelector(`select[name=${select}]`)!.append(...values.map((v) => h("option", { value: v }, v)))
}
addForm.querySelector<HTMLOptionElement>("option[value=monthly]")!.defaultSelected = true

// A remembered session opens the document straight away (from IndexedDB when offline).
const stored = await client.session.stored()
if (stored?.userId !== undefined) await start(stored.userId).catch((err) => showLogin(message(err)))
else showLogin()
