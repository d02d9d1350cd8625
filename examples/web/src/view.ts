/**
 * Rendering: the document's plain values (readDocument, documentSplit) to DOM. Everything here
 * is a function of the document and who is signed in, so both partners' pages show the same
 * text for the same document.
 */
import {
  type Approval,
  type DocSplit,
  type DocumentState,
  type Expense,
  type Member,
  formatMinor,
} from "@splitsave/client"

import { h, svg } from "./dom.js"

const STATUS: Record<Expense["status"], string> = {
  active: "Active",
  pending_approval: "Waiting for approval",
  archived: "Archived",
}

const COLORS = ["#2f6fdd", "#e08a1e"]

function nameOf(members: Member[], userId: string): string {
  return members.find((m) => m.user_id === userId)?.name ?? "?"
}

/** Both partners see one order: oldest first, then by id. */
function byCreation<T extends { created_at: number; id: string }>(a: T, b: T): number {
  return a.created_at - b.created_at || a.id.localeCompare(b.id)
}

/** The expense table's rows: every expense that is not archived. */
export function expenseRows(state: DocumentState): HTMLTableRowElement[] {
  const currency = state.partnership.currency
  return state.expenses
    .filter((e) => e.status !== "archived")
    .sort(byCreation)
    .map((e) =>
      h(
        "tr",
        { "data-status": e.status },
        h("td", {}, e.name),
        h("td", { class: "num" }, `${formatMinor(e.amount, currency)} ${currency}`),
        h("td", {}, e.category),
        h("td", {}, e.frequency),
        h("td", {}, nameOf(state.members, e.added_by)),
        h("td", {}, STATUS[e.status]),
      ),
    )
}

/** What an approval request proposes, in words. */
function describe(a: Approval, state: DocumentState): string {
  const currency = state.partnership.currency
  const d = a.request_data
  const amount = d.amount === undefined ? "" : ` — ${formatMinor(d.amount, currency)} ${currency}`
  const what = a.request_type.endsWith("_add") ? "add" : "change"
  return `${nameOf(state.members, a.requested_by)} asks to ${what} ${d.name ?? "an item"}${amount}${d.frequency ? ` ${d.frequency}` : ""}`
}

/**
 * Pending requests: those `me` must answer get Approve/Decline buttons (the `data-request`
 * attribute names the request); those `me` asked wait for the partner.
 */
export function approvalItems(state: DocumentState, me: string): HTMLLIElement[] {
  const pending = state.approvals.filter((a) => a.status === "pending").sort(byCreation)
  if (pending.length === 0) return [h("li", { class: "muted" }, "Nothing is waiting.")]
  return pending.map((a) => {
    const text = describe(a, state)
    if (a.requested_by === me) return h("li", {}, text, h("span", { class: "muted" }, " (waiting for your partner)"))
    return h(
      "li",
      {},
      text,
      h(
        "span",
        { class: "answer" },
        h("button", { type: "button", "data-request": a.id, "data-answer": "approve" }, "Approve"),
        h("button", { type: "button", "data-request": a.id, "data-answer": "decline" }, "Decline"),
      ),
    )
  })
}

/** The split as a bar of each partner's share of the monthly total, with the amounts as text. */
export function splitView(s: DocSplit): HTMLElement {
  const { split, currency, members } = s
  const money = (minor: number) => `${formatMinor(minor, currency)} ${currency}`
  const parts = [
    { member: members[0], share: split.share_1, ratio: split.ratio_1 },
    { member: members[1], share: split.share_2, ratio: split.ratio_2 },
  ]
  const chart = svg("svg", { viewBox: "0 0 400 56", role: "img", "aria-label": "Each partner's share" })
  let x = 0
  parts.forEach((p, i) => {
    const width = split.monthly_total === 0 ? 200 : (400 * p.share) / split.monthly_total
    chart.append(svg("rect", { x, y: 0, width, height: 32, fill: split.monthly_total === 0 ? "#ddd" : COLORS[i]! }))
    if (split.monthly_total > 0 && width > 60) chart.append(svg("text", { x: x + width / 2, y: 21, "text-anchor": "middle", fill: "#fff" }, `${p.ratio}%`))
    x += width
  })
  const count = s.active_expenses === 1 ? "1 active expense" : `${s.active_expenses} active expenses`
  const basis = split.basis === "income" ? "split by income" : "split equally (incomes not entered)"
  chart.append(svg("text", { x: 0, y: 50, "font-size": 12 }, s.active_expenses === 0 ? "No active expenses yet" : `${count}, ${basis}`))
  const lines = parts.map((p, i) =>
    h("li", {}, h("span", { class: "swatch", style: `background:${COLORS[i]}` }), `${p.member?.name ?? "?"} pays ${money(p.share)} (${p.ratio}%)`),
  )
  return h(
    "div",
    { "data-testid": "split" },
    chart,
    h("p", { class: "total" }, `Total ${money(split.monthly_total)} a month`),
    h("ul", { class: "shares" }, ...lines),
  )
}
