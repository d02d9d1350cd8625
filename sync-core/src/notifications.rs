//! What a merge tells the partner who is not looking: the push notifications of a merge, from
//! its events and the document after it.
//!
//! The rules (docs/push.md):
//! - the author of a merge is never notified of it; the partner is, per kind:
//!   `approval_requested` (an approval request was filed by the author), `approval_answered`
//!   (the author answered the partner's request), `message` (the author wrote),
//!   `contributions_opened` (a month's contributions were written for the first time),
//!   `partner_paid` (the author marked their share of a month paid) and `goal_reached` (the
//!   author's contribution brought a goal to its target);
//! - a burst (one merge with several events of a kind, such as ten expenses added offline that
//!   each need approval) becomes one notification per kind: "Ann asked for your approval on 10
//!   items";
//! - every notification comes in two wordings: with details (names, amounts, a message's text)
//!   and without (for a lock screen the user keeps private), which carries ids only;
//! - each has a dedupe key derived from what it is about, so the same event is never queued
//!   twice for one user.
//!
//! Invitations are not in a document (the invitee has none yet): the server builds that one
//! with [`invitation`].

use std::collections::BTreeMap;

use automerge::{Automerge, Change};
use rust_decimal::Decimal;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::enums::ApprovalStatus;
use crate::events::{self, EventKind};
use crate::ids::UserId;
use crate::materialize::{self, Row};
use crate::read;
use crate::schema::Collection;
use crate::touched::{entity_ops, Touched};

/// Kinds of notification a user can turn on or off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NotificationKind {
    /// The partner asked for the user's approval.
    ApprovalRequested,
    /// The partner answered the user's request.
    ApprovalAnswered,
    /// The partner wrote a message.
    Message,
    /// Someone invited the user to a partnership.
    Invitation,
    /// A month's contributions are open.
    ContributionsOpened,
    /// The partner marked their share of a month paid.
    PartnerPaid,
    /// A shared goal reached its target.
    GoalReached,
}

impl NotificationKind {
    /// Every kind.
    pub const ALL: [NotificationKind; 7] = [
        NotificationKind::ApprovalRequested,
        NotificationKind::ApprovalAnswered,
        NotificationKind::Message,
        NotificationKind::Invitation,
        NotificationKind::ContributionsOpened,
        NotificationKind::PartnerPaid,
        NotificationKind::GoalReached,
    ];

    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::ApprovalRequested => "approval_requested",
            NotificationKind::ApprovalAnswered => "approval_answered",
            NotificationKind::Message => "message",
            NotificationKind::Invitation => "invitation",
            NotificationKind::ContributionsOpened => "contributions_opened",
            NotificationKind::PartnerPaid => "partner_paid",
            NotificationKind::GoalReached => "goal_reached",
        }
    }

    /// The kind an API spelling names.
    pub fn parse(s: &str) -> Option<NotificationKind> {
        NotificationKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// A title and a body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wording {
    /// Title line.
    pub title: String,
    /// Body text.
    pub body: String,
}

/// One notification for one user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    /// Who is told.
    pub recipient: UserId,
    /// What kind of news.
    pub kind: NotificationKind,
    /// Same event, same key: what makes a notification unique for its recipient.
    pub dedupe_key: String,
    /// With names, amounts and texts.
    pub detailed: Wording,
    /// Without them (ids only in `data`).
    pub private: Wording,
    /// Ids for the app to open the right screen (`kind`, entity ids, `count`).
    pub data: BTreeMap<String, String>,
    /// A newer notification with the same key replaces an older one on the device.
    pub collapse_key: String,
}

/// One event a notification is about (before bursts are folded together).
struct Item {
    recipient: UserId,
    kind: NotificationKind,
    /// The entity's id (a month for contributions).
    id: String,
    /// What the detailed wording says about this one item.
    detail: String,
}

/// The notifications of a merge by `author`, whose `changes` are applied to `doc` (the
/// client's and the server's together, as [`events::events`] takes them).
pub fn from_merge(doc: &Automerge, changes: &[Change], author: UserId) -> Vec<Notification> {
    let Some(partner) = partner_of(doc, author) else {
        return Vec::new();
    };
    let name = member_name(doc, author);
    let currency = read::read_partnership(doc)
        .map(|p| p.currency.to_string())
        .unwrap_or_default();
    let money = |amount: &Decimal| format!("{amount} {currency}");
    let mut items = Vec::new();
    for event in events::events(doc, changes) {
        match (event.kind, &event.row) {
            (EventKind::ApprovalRequested, Some(Row::Approval(a))) if a.requested_by == author => {
                items.push(Item {
                    recipient: partner,
                    kind: NotificationKind::ApprovalRequested,
                    id: event.key.clone(),
                    detail: approval_detail(doc, &a.request_data, &a.target_id.to_string(), money),
                });
            }
            (EventKind::ApprovalResponded, Some(Row::Approval(a)))
                if a.responded_by == Some(author) && a.requested_by != author =>
            {
                let answer = if a.status == ApprovalStatus::Approved.as_str() {
                    "approved"
                } else {
                    "declined"
                };
                let what = approval_detail(doc, &a.request_data, &a.target_id.to_string(), money);
                items.push(Item {
                    recipient: a.requested_by,
                    kind: NotificationKind::ApprovalAnswered,
                    id: event.key.clone(),
                    detail: format!("{answer} {what}"),
                });
            }
            (EventKind::MessageNew, Some(Row::Message(m))) if m.sender_id == author => {
                items.push(Item {
                    recipient: partner,
                    kind: NotificationKind::Message,
                    id: event.key.clone(),
                    detail: m.text.clone(),
                });
            }
            _ => {}
        }
    }
    // What events do not name: months opened or marked paid, goals brought to their target.
    let ops = entity_ops(doc, changes);
    for ((collection, key), op) in &ops {
        match collection {
            Collection::Contributions => {
                let Some(Row::Contribution(month)) = row_of(doc, *collection, key) else {
                    continue;
                };
                if op.created {
                    items.push(Item {
                        recipient: partner,
                        kind: NotificationKind::ContributionsOpened,
                        id: month.month.clone(),
                        detail: month
                            .shares
                            .iter()
                            .find(|s| s.user_id == partner)
                            .map(|s| format!("{}: your share is {}", month.month, money(&s.amount)))
                            .unwrap_or_else(|| month.month.clone()),
                    });
                } else if op.fields.contains("paid") {
                    if let Some(share) = month
                        .shares
                        .iter()
                        .find(|s| s.user_id == author && s.paid_at.is_some())
                    {
                        items.push(Item {
                            recipient: partner,
                            kind: NotificationKind::PartnerPaid,
                            id: month.month.clone(),
                            detail: format!("{} for {}", money(&share.amount), month.month),
                        });
                    }
                }
            }
            Collection::Goals => {
                let Some(Row::Goal(goal)) = row_of(doc, *collection, key) else {
                    continue;
                };
                if goal.saved_amount < goal.target_amount {
                    continue;
                }
                // Reached by this merge: what it added to the goal took it over the target.
                let added: Decimal = ops
                    .iter()
                    .filter(|((c, _), o)| *c == Collection::GoalContributions && o.created)
                    .filter_map(|((c, k), _)| match row_of(doc, *c, k) {
                        Some(Row::GoalContribution(gc)) if gc.goal_id == goal.id => Some(gc.amount),
                        _ => None,
                    })
                    .sum();
                if added > Decimal::ZERO && goal.saved_amount - added < goal.target_amount {
                    items.push(Item {
                        recipient: partner,
                        kind: NotificationKind::GoalReached,
                        id: key.clone(),
                        detail: format!("{} ({})", goal.name, money(&goal.target_amount)),
                    });
                }
            }
            _ => {}
        }
    }
    fold(items, &name)
}

/// The notification of an invitation to `invitee` from `inviter_name`.
pub fn invitation(invitee: UserId, invitation_id: &str, inviter_name: &str) -> Notification {
    let mut data = BTreeMap::new();
    data.insert("kind".to_owned(), "invitation".to_owned());
    data.insert("invitation_id".to_owned(), invitation_id.to_owned());
    Notification {
        recipient: invitee,
        kind: NotificationKind::Invitation,
        dedupe_key: format!("invitation:{invitation_id}"),
        detailed: Wording {
            title: "SplitSave".to_owned(),
            body: format!("{inviter_name} invited you to share your finances"),
        },
        private: Wording {
            title: "SplitSave".to_owned(),
            body: "You have a new invitation".to_owned(),
        },
        data,
        collapse_key: format!("invitation:{invitation_id}"),
    }
}

/// One notification per recipient and kind, in the order the kinds first appear.
fn fold(items: Vec<Item>, name: &str) -> Vec<Notification> {
    let mut groups: Vec<((UserId, NotificationKind), Vec<Item>)> = Vec::new();
    for item in items {
        let key = (item.recipient, item.kind);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, g)) => g.push(item),
            None => groups.push((key, vec![item])),
        }
    }
    groups
        .into_iter()
        .map(|((recipient, kind), items)| notification(recipient, kind, &items, name))
        .collect()
}

fn notification(
    recipient: UserId,
    kind: NotificationKind,
    items: &[Item],
    name: &str,
) -> Notification {
    let n = items.len();
    let first = &items[0];
    let (detailed, private) = match kind {
        NotificationKind::ApprovalRequested if n == 1 => (
            format!("{name} asked for your approval: {}", first.detail),
            format!("{name} asked for your approval"),
        ),
        NotificationKind::ApprovalRequested => (
            format!("{name} asked for your approval on {n} items"),
            format!("{name} asked for your approval on {n} items"),
        ),
        NotificationKind::ApprovalAnswered if n == 1 => (
            format!("{name} {}", first.detail),
            format!("{name} answered your request"),
        ),
        NotificationKind::ApprovalAnswered => (
            format!("{name} answered {n} of your requests"),
            format!("{name} answered {n} of your requests"),
        ),
        NotificationKind::Message if n == 1 => (
            format!("{name}: {}", first.detail),
            format!("New message from {name}"),
        ),
        NotificationKind::Message => (
            format!("{name} sent {n} messages"),
            format!("{n} new messages from {name}"),
        ),
        NotificationKind::ContributionsOpened => (
            format!("This month's contributions are open. {}", first.detail),
            "This month's contributions are open".to_owned(),
        ),
        NotificationKind::PartnerPaid => (
            format!("{name} paid their share: {}", first.detail),
            format!("{name} paid their share"),
        ),
        NotificationKind::GoalReached if n == 1 => (
            format!("Goal reached: {}", first.detail),
            "A shared goal was reached".to_owned(),
        ),
        NotificationKind::GoalReached => (
            format!("{n} goals reached"),
            format!("{n} shared goals were reached"),
        ),
        NotificationKind::Invitation => (
            format!("{name} invited you"),
            "You have a new invitation".to_owned(),
        ),
    };
    let ids: Vec<&str> = items.iter().map(|i| i.id.as_str()).collect();
    let mut data = BTreeMap::new();
    data.insert("kind".to_owned(), kind.as_str().to_owned());
    data.insert("ids".to_owned(), ids.join(","));
    data.insert("count".to_owned(), n.to_string());
    // One key per set of events: the same merge derived again gives the same key.
    let dedupe_key = if n == 1 {
        format!("{}:{}", kind.as_str(), first.id)
    } else {
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        let digest = Sha256::digest(sorted.join(",").as_bytes());
        format!("{}:{}", kind.as_str(), hex::encode(&digest[..16]))
    };
    let collapse_key = match kind {
        // A newer notification about the same month replaces the older one.
        NotificationKind::ContributionsOpened | NotificationKind::PartnerPaid => {
            format!("{}:{}", kind.as_str(), first.id)
        }
        _ => dedupe_key.clone(),
    };
    Notification {
        recipient,
        kind,
        dedupe_key,
        detailed: Wording {
            title: "SplitSave".to_owned(),
            body: detailed,
        },
        private: Wording {
            title: "SplitSave".to_owned(),
            body: private,
        },
        data,
        collapse_key,
    }
}

/// "Sofa, 900.00 USD" for a request, from its proposed values or its target.
fn approval_detail(
    doc: &Automerge,
    data: &Value,
    target: &str,
    money: impl Fn(&Decimal) -> String,
) -> String {
    let name = data
        .get("name")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| {
            [Collection::Expenses, Collection::Goals]
                .into_iter()
                .find_map(|c| match row_of(doc, c, target) {
                    Some(Row::Expense(e)) => Some(e.name),
                    Some(Row::Goal(g)) => Some(g.name),
                    _ => None,
                })
        })
        .unwrap_or_else(|| "an item".to_owned());
    let amount = ["amount", "target_amount"]
        .iter()
        .find_map(|k| data.get(*k))
        .and_then(|v| match v {
            Value::String(s) => s.parse::<Decimal>().ok(),
            Value::Number(n) => n.to_string().parse::<Decimal>().ok(),
            _ => None,
        });
    match amount {
        Some(a) => format!("{name}, {}", money(&a)),
        None => name,
    }
}

fn row_of(doc: &Automerge, c: Collection, key: &str) -> Option<Row> {
    let mut touched = Touched::default();
    touched.add(c, key);
    materialize::rows_for(doc, &touched)
        .ok()?
        .changes
        .into_iter()
        .find_map(|rc| match rc {
            materialize::RowChange::Upsert(r) => Some(r),
            materialize::RowChange::Delete { .. } => None,
        })
}

fn partner_of(doc: &Automerge, user: UserId) -> Option<UserId> {
    read::read_members(doc)
        .ok()?
        .into_iter()
        .map(|m| m.user_id)
        .find(|u| *u != user)
}

fn member_name(doc: &Automerge, user: UserId) -> String {
    read::read_member(doc, &user.to_string())
        .ok()
        .flatten()
        .map(|m| m.name)
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "Your partner".to_owned())
}
