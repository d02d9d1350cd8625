//! The generator of a long-lived couple's document, shared by the examples that measure
//! history on it (`sync-core/examples/history_cost.rs`, `server/examples/history_page.rs`,
//! which includes this file with `#[path]`).
//!
//! [`build`] starts from the partnership document the server creates
//! ([`new_partnership_document`]) and appends `n` changes, one user action each, spread evenly
//! over 36 months of change times, as the couple's apps and the server would write them:
//!
//! - Ann's phone, Ann's laptop and Ben's phone (device actors) add expenses (Text names),
//!   ask for amount edits that the partner approves (the approval applies the new amount),
//!   archive old expenses, add goals (approved by the partner) and log contributions, send
//!   chat messages and mark the partner's read;
//! - the server's actor writes REST operations for a user (message
//!   `splitsave: operation by <user id>`, [`history::OPERATION_MESSAGE_PREFIX`]);
//! - now and then a device writes an amount directly (an old client) and the server's
//!   compensation restores it ([`history::COMPENSATION_MESSAGE`]).
//!
//! One expense, the rent, is edited all along: the entity with the longest history.
#![allow(dead_code)]

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, Automerge, ChangeHash};
use splitsave_sync_core::document::{
    new_partnership_document, server_actor, NewMember, NewPartnership,
};
use splitsave_sync_core::enums::{Category, Frequency, GoalType, Priority};
use splitsave_sync_core::history;
use splitsave_sync_core::ids::{EntityId, PartnershipId, UserId};
use splitsave_sync_core::money::{Currency, MinorUnits};
use splitsave_sync_core::ops::{self, Ctx, NewExpense, NewGoal, OpError, Outcome};
use splitsave_sync_core::read;
use splitsave_sync_core::schema::{Collection, ExpenseFields};
use splitsave_sync_core::time::Millis;

/// 2023-12-01T00:00:00Z: three years before the examples' "now".
pub const START: Millis = Millis(1_701_388_800_000);
/// 36 months (3 × 365 days) in milliseconds.
pub const SPAN_MS: i64 = 3 * 365 * 24 * 60 * 60 * 1000;

/// Who the couple is.
#[derive(Clone, Copy, Debug)]
pub struct Couple {
    /// The partnership (its document's id).
    pub partnership: PartnershipId,
    /// The inviter.
    pub ann: UserId,
    /// The invitee.
    pub ben: UserId,
}

impl Couple {
    /// A couple with fresh ids.
    pub fn random() -> Couple {
        Couple {
            partnership: PartnershipId::new_v7(),
            ann: UserId::new_v7(),
            ben: UserId::new_v7(),
        }
    }
}

/// What [`build`] made.
pub struct Built {
    /// The document: the partnership's creation, then `n` changes.
    pub doc: Automerge,
    /// Each device actor and the user it belongs to (what the server's actor bindings hold).
    pub devices: Vec<(ActorId, UserId)>,
    /// The actor the server's REST operations and compensations are written with.
    pub server: ActorId,
    /// The rent: the expense with the most entries.
    pub rent: EntityId,
    /// The newest change a device wrote directly to one expense's amount (`amount` and
    /// `updated_at`, two ops, no message), and that expense.
    pub last_direct_edit: Option<(ChangeHash, EntityId)>,
    /// How many changes of each sort were written.
    pub counts: Counts,
}

/// Changes written, by sort.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counts {
    /// By a device.
    pub device: usize,
    /// REST operations (the server's actor, for a user).
    pub rest: usize,
    /// The server's compensations.
    pub compensations: usize,
    /// Expenses added (device or REST).
    pub expenses: usize,
    /// Goals added.
    pub goals: usize,
}

/// Who writes a change.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Writer {
    /// A device of the user.
    Device(usize),
    /// The server, for the user (REST).
    Rest(UserId),
    /// The server's compensation.
    Compensation,
}

const NAMES: [&str; 8] = [
    "Groceries",
    "Electricity",
    "Internet",
    "Dinner out",
    "Train tickets",
    "Pharmacy",
    "Cinema",
    "Hardware store",
];
const TEXTS: [&str; 5] = [
    "See you at eight, I'll bring dessert",
    "Can you check the electricity bill?",
    "Paid the rent",
    "Let's put a bit more into the holiday fund this month",
    "Thanks!",
];

/// Builds the couple's document of `n` changes after its creation (see the module docs).
pub fn build(n: usize, couple: &Couple) -> Built {
    let (ann, ben) = (couple.ann, couple.ben);
    let member = |user_id, name: &str, slot| NewMember {
        user_id,
        name: name.into(),
        income: None,
        slot,
    };
    let mut doc = new_partnership_document(&NewPartnership {
        id: couple.partnership,
        currency: Currency::parse("EUR").expect("EUR"),
        // 10,000.00: day-to-day expenses do not need approval.
        approval_threshold: MinorUnits(1_000_000),
        members: [member(ann, "Ann", 1), member(ben, "Ben", 2)],
        created_at: START,
    })
    .expect("the partnership document");
    let devices: Vec<(ActorId, UserId)> = vec![
        (ActorId::from(*b"ann-phone-device"), ann),
        (ActorId::from(*b"ben-phone-device"), ben),
        (ActorId::from(*b"ann-laptop-devic"), ann),
    ];
    let server = server_actor(*b"node0001");
    let other = |u: UserId| if u == ann { ben } else { ann };

    let mut counts = Counts::default();
    let mut expenses: Vec<EntityId> = Vec::new();
    let mut archived_upto = 1usize; // expenses[0] is the rent, never archived
    let mut rent: Option<EntityId> = None;
    let mut pending_edit: Option<(EntityId, UserId)> = None;
    let mut pending_goal: Option<(EntityId, UserId, EntityId)> = None;
    let mut goals: Vec<EntityId> = Vec::new();
    let mut unread: Option<(EntityId, UserId)> = None;
    let mut direct: Option<(EntityId, i64)> = None;
    let mut last_direct_edit = None;

    for i in 0..n {
        let at = Millis(START.0 + (SPAN_MS as i128 * (i as i128 + 1) / (n as i128 + 1)) as i64);
        // Who acts: the partners take turns in runs of a few actions; Ann uses her laptop
        // for one run in three of hers.
        let run = i / 7;
        let user = if run % 2 == 0 { ann } else { ben };
        let device = if user == ben {
            1
        } else if run % 3 == 0 {
            2
        } else {
            0
        };
        let slot = i % 20;
        let mut writer = Writer::Device(device);
        let amount = MinorUnits(1_250 + (i % 9_973) as i64);
        let mut direct_edit = None;
        let result = |doc: &mut Automerge,
                      writer: Writer,
                      f: &mut dyn FnMut(
            &mut automerge::transaction::Transaction<'_>,
        ) -> Result<Outcome, OpError>|
         -> (Outcome, Option<ChangeHash>) {
            let (actor, message) = match writer {
                Writer::Device(d) => (devices[d].0.clone(), None),
                Writer::Rest(u) => (
                    server.clone(),
                    Some(format!("{}{u}", history::OPERATION_MESSAGE_PREFIX)),
                ),
                Writer::Compensation => (
                    server.clone(),
                    Some(history::COMPENSATION_MESSAGE.to_string()),
                ),
            };
            doc.set_actor(actor);
            let done = doc
                .transact_with::<_, _, OpError, _>(
                    |_| {
                        let o = CommitOptions::default().with_time(at.0 / 1000);
                        match &message {
                            Some(m) => o.with_message(m.clone()),
                            None => o,
                        }
                    },
                    |tx| f(tx),
                )
                .unwrap_or_else(|failure| panic!("change {i}: {}", failure.error));
            (done.result, done.hash)
        };
        let ctx = Ctx { user, now: at };
        let add_expense = |tx: &mut automerge::transaction::Transaction<'_>,
                           ctx: &Ctx,
                           name: &str,
                           amount: MinorUnits| {
            ops::add_expense(
                tx,
                ctx,
                &NewExpense {
                    name: name.to_string(),
                    amount,
                    category: if name == "Rent" {
                        Category::Housing
                    } else {
                        Category::Groceries
                    },
                    frequency: if name == "Rent" {
                        Frequency::Monthly
                    } else {
                        Frequency::Weekly
                    },
                },
            )
        };
        let outcome = if rent.is_none() {
            let (o, _) = result(&mut doc, writer, &mut |tx| {
                add_expense(tx, &ctx, "Rent", MinorUnits(145_000))
            });
            counts.expenses += 1;
            o
        } else {
            match slot {
                // 4 in 20: a device adds an expense.
                0..=3 => {
                    let name = format!("{} {}", NAMES[i % NAMES.len()], i / 20);
                    counts.expenses += 1;
                    result(&mut doc, writer, &mut |tx| {
                        add_expense(tx, &ctx, &name, amount)
                    })
                    .0
                }
                // An amount edit asked for (the rent one time in twenty)...
                4 => {
                    let target = if i % 400 == 4 {
                        expenses[0]
                    } else {
                        *expenses.last().expect("an expense")
                    };
                    result(&mut doc, writer, &mut |tx| {
                        ops::edit_expense(
                            tx,
                            &ctx,
                            target,
                            &ExpenseFields {
                                amount: Some(MinorUnits(amount.0 + 100)),
                                ..ExpenseFields::default()
                            },
                            Some("the price went up"),
                        )
                    })
                    .0
                }
                // ... and approved by the partner, which applies it.
                5 if pending_edit.is_some() => {
                    let (request, asker) = pending_edit.take().expect("pending");
                    let ctx = Ctx {
                        user: other(asker),
                        now: at,
                    };
                    let d = if ctx.user == ben { 1 } else { 0 };
                    result(&mut doc, Writer::Device(d), &mut |tx| {
                        ops::approve(tx, &ctx, request)
                    })
                    .0
                }
                // Now and then an old client writes an amount directly...
                6 if i % 100 == 6 => {
                    let target = *expenses.last().expect("an expense");
                    let old = read::read_expense(&doc, &target.to_string())
                        .ok()
                        .flatten()
                        .map(|e| e.amount.0)
                        .unwrap_or(amount.0);
                    let (o, hash) = result(&mut doc, writer, &mut |tx| {
                        let obj = read::entity_obj(tx, Collection::Expenses, &target.to_string())?
                            .ok_or(OpError::NotFound)?;
                        tx.put(&obj, "amount", old + 500)?;
                        tx.put(&obj, "updated_at", at.0)?;
                        Ok(Outcome::Applied { id: target })
                    });
                    direct = Some((target, old));
                    direct_edit = hash.map(|h| (h, target));
                    o
                }
                // ... and the server's compensation restores it.
                7 if direct.is_some() => {
                    let (target, old) = direct.take().expect("direct");
                    writer = Writer::Compensation;
                    result(&mut doc, writer, &mut |tx| {
                        let obj = read::entity_obj(tx, Collection::Expenses, &target.to_string())?
                            .ok_or(OpError::NotFound)?;
                        tx.put(&obj, "amount", old)?;
                        Ok(Outcome::Applied { id: target })
                    })
                    .0
                }
                // An old expense archived.
                8 if archived_upto < expenses.len() => {
                    let target = expenses[archived_upto];
                    archived_upto += 1;
                    result(&mut doc, writer, &mut |tx| {
                        ops::archive_expense(tx, &ctx, target)
                    })
                    .0
                }
                // Goals: one added every 2,000 changes (the partner approves it the next
                // time round), otherwise a contribution.
                9 if pending_goal.is_some() => {
                    let (request, asker, goal) = pending_goal.take().expect("pending");
                    let ctx = Ctx {
                        user: other(asker),
                        now: at,
                    };
                    let d = if ctx.user == ben { 1 } else { 0 };
                    let (o, _) = result(&mut doc, Writer::Device(d), &mut |tx| {
                        ops::approve(tx, &ctx, request)
                    });
                    goals.push(goal);
                    o
                }
                9 if i % 2_000 == 9 || goals.is_empty() => {
                    counts.goals += 1;
                    result(&mut doc, writer, &mut |tx| {
                        ops::add_goal(
                            tx,
                            &ctx,
                            &NewGoal {
                                name: format!("Holiday {}", i / 2_000),
                                target_amount: MinorUnits(300_000),
                                goal_type: GoalType::Vacation,
                                priority: Priority::Medium,
                            },
                        )
                    })
                    .0
                }
                9 | 18 if !goals.is_empty() => {
                    let goal = goals[i % goals.len()];
                    result(&mut doc, writer, &mut |tx| {
                        ops::contribute_to_goal(tx, &ctx, goal, MinorUnits(2_500))
                    })
                    .0
                }
                // The partner's message marked read.
                16 if unread.is_some_and(|(_, sender)| sender != user) => {
                    let (message, _) = unread.take().expect("unread");
                    result(&mut doc, writer, &mut |tx| {
                        ops::mark_read(tx, &ctx, message)
                    })
                    .0
                }
                // REST: an expense added through the API.
                17 => {
                    writer = Writer::Rest(user);
                    counts.expenses += 1;
                    let name = format!("{} (web) {}", NAMES[i % NAMES.len()], i / 20);
                    result(&mut doc, writer, &mut |tx| {
                        add_expense(tx, &ctx, &name, amount)
                    })
                    .0
                }
                // REST: a message, or an expense archived, through the API.
                19 => {
                    writer = Writer::Rest(user);
                    if i % 40 == 19 && archived_upto < expenses.len() {
                        let target = expenses[archived_upto];
                        archived_upto += 1;
                        result(&mut doc, writer, &mut |tx| {
                            ops::archive_expense(tx, &ctx, target)
                        })
                        .0
                    } else {
                        let text = TEXTS[i % TEXTS.len()];
                        let (o, _) = result(&mut doc, writer, &mut |tx| {
                            ops::send_message(tx, &ctx, text)
                        });
                        if let Outcome::Applied { id } = o {
                            unread = Some((id, user));
                        }
                        o
                    }
                }
                // Otherwise (about a third of the changes): a chat message.
                _ => {
                    let text = TEXTS[i % TEXTS.len()];
                    let (o, _) = result(&mut doc, writer, &mut |tx| {
                        ops::send_message(tx, &ctx, text)
                    });
                    if let Outcome::Applied { id } = o {
                        unread = Some((id, user));
                    }
                    o
                }
            }
        };
        match writer {
            Writer::Device(_) => counts.device += 1,
            Writer::Rest(_) => counts.rest += 1,
            Writer::Compensation => counts.compensations += 1,
        }
        if direct_edit.is_some() {
            last_direct_edit = direct_edit;
        }
        match outcome {
            Outcome::Applied { id } if rent.is_none() => {
                rent = Some(id);
                expenses.push(id);
            }
            Outcome::Applied { id } => {
                if slot <= 3 || slot == 17 {
                    expenses.push(id);
                }
            }
            Outcome::ApprovalRequested {
                request_id,
                target_id,
            } => {
                if slot == 9 {
                    pending_goal = Some((request_id, user, target_id));
                } else {
                    pending_edit = Some((request_id, user));
                }
            }
        }
    }
    Built {
        doc,
        devices,
        server,
        rent: rent.expect("the rent"),
        last_direct_edit,
        counts,
    }
}
