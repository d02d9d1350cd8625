//! The couples an export is measured on: a partnership document built here with sync-core's
//! operations (the code apps and the server run), event by event over three simulated years,
//! stored as the server stores a document (a snapshot and the changes after it, every device
//! actor bound to its user), then materialized by the server binary itself (its rows by
//! `splitsave rebuild-rows`, its history by `splitsave rebuild-history`) and verified by it
//! (`splitsave check`).
//!
//! Entries come in the proportions of a couple that logs every purchase ([`Mix::of`]): six in
//! ten rows are expenses (one in fifteen over the approval threshold, so it waits for the
//! partner, who approves it or, one time in eight, declines it; one in sixty later edited
//! through an approved edit request), a tenth are contributions logged to savings goals (one goal
//! per 500 entries, each proposed and approved), one month per simulated month (written by a
//! server actor as the server writes it on a month's first read, then marked paid by each
//! partner), and the rest messages (four in five read by the recipient). Every operation is one
//! change, so the document's history is as long as an app's would be.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::process::Command;

use automerge::transaction::{CommitOptions, Transaction};
use automerge::{ActorId, Automerge, ChangeHash};
use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;
use splitsave_server::auth::tokens::TokenKeys;
use splitsave_server::store::{
    AcceptInvitation, NewChange, NewInvitation, NewSnapshot, NewUser, Store,
};
use splitsave_sync_core::document::{
    new_partnership_document, read_document, server_actor, DocumentState, NewMember, NewPartnership,
};
use splitsave_sync_core::enums::{Category, Frequency, GoalType, Priority};
use splitsave_sync_core::ids::{EntityId, PartnershipId, UserId};
use splitsave_sync_core::money::{Currency, MinorUnits};
use splitsave_sync_core::ops::{self, Ctx, NewExpense, NewGoal, OpResult, Outcome};
use splitsave_sync_core::schema::ExpenseFields;
use splitsave_sync_core::split::Month;
use splitsave_sync_core::split_doc;
use splitsave_sync_core::time::Millis;
use uuid::Uuid;

use crate::{LoadError, Result};

/// Simulated months of the couple's life.
const MONTHS: usize = 36;
/// Changes stored after the snapshot (the server compacts every 500, so a stored document has
/// 0-499 of them; the `automerge` export loads them on top of the snapshot).
const TAIL: usize = 250;
/// The partnership's approval threshold, in cents (100.00 EUR).
const THRESHOLD_MINOR: i64 = 10_000;
/// A simulated day, in milliseconds.
const DAY_MS: i64 = 86_400_000;

/// How many of each kind of entry a couple of `entries` exported rows has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Mix {
    pub(crate) expenses: usize,
    /// Every n-th expense is over the threshold (an `expense_add` request).
    pub(crate) over_threshold_every: usize,
    /// Every n-th expense is later edited (an approved `expense_edit` request).
    pub(crate) edit_every: usize,
    pub(crate) goals: usize,
    pub(crate) goal_contributions: usize,
    pub(crate) months: usize,
    pub(crate) messages: usize,
}

impl Mix {
    /// The proportions for `entries` rows in all: expenses 60 %, goal contributions 10 %, a goal
    /// per 500, a month per simulated month (at most 36, at least one), the approval requests
    /// those make, and messages for the rest.
    pub(crate) fn of(entries: usize) -> Mix {
        let expenses = entries * 3 / 5;
        let goals = (entries / 500).max(1);
        let mut mix = Mix {
            expenses,
            over_threshold_every: 15,
            edit_every: 60,
            goals,
            goal_contributions: entries / 10,
            months: (entries / 100).clamp(1, MONTHS),
            messages: 0,
        };
        mix.messages = entries.saturating_sub(mix.rows_without_messages());
        mix
    }

    /// Approval requests: one per over-threshold expense, per edited expense and per goal.
    pub(crate) fn approvals(&self) -> usize {
        self.expenses / self.over_threshold_every + self.expenses / self.edit_every + self.goals
    }

    fn rows_without_messages(&self) -> usize {
        self.expenses + self.goals + self.goal_contributions + self.months + self.approvals()
    }

    /// Every exported row.
    pub(crate) fn rows(&self) -> usize {
        self.rows_without_messages() + self.messages
    }
}

/// Rows per exported table, in export order (`expenses`, `goals`, `goal_contributions`,
/// `contributions`, `approval_requests`, `messages`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts(pub(crate) [usize; 6]);

/// The exported tables' names, in export order.
pub(crate) const TABLES: [&str; 6] = [
    "expenses",
    "goals",
    "goal_contributions",
    "contributions",
    "approval_requests",
    "messages",
];

impl Counts {
    /// What a document holds, table by table.
    pub(crate) fn of_document(d: &DocumentState) -> Counts {
        Counts([
            d.expenses.len(),
            d.goals.len(),
            d.goal_contributions.len(),
            d.contributions.len(),
            d.approvals.len(),
            d.messages.len(),
        ])
    }

    pub(crate) fn total(&self) -> usize {
        self.0.iter().sum()
    }
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = TABLES
            .iter()
            .zip(self.0)
            .map(|(t, n)| format!("{t} {n}"))
            .collect();
        write!(f, "{} ({} rows)", parts.join(", "), self.total())
    }
}

/// A seeded couple: whom to export as, and what the export must hold.
pub(crate) struct Couple {
    pub(crate) pid: Uuid,
    /// The first partner's access token.
    pub(crate) token: String,
    pub(crate) counts: Counts,
    /// Every entity id of the couple (and its months, `YYYY-MM`), as strings.
    pub(crate) ids: BTreeSet<String>,
    /// The document's changes, and the stored snapshot's size.
    pub(crate) changes: usize,
    pub(crate) snapshot_bytes: usize,
}

/// A built document, split as the server stores it.
struct Built {
    snapshot: NewSnapshot,
    tail: Vec<NewChange>,
    actors: [String; 2],
    counts: Counts,
    ids: BTreeSet<String>,
    changes: usize,
}

/// Creates a couple of `entries` rows through the store (`tag` makes its e-mails unique), its
/// rows materialized and checked by `server_bin` on `database_url`.
pub(crate) async fn couple(
    store: &dyn Store,
    keys: &TokenKeys,
    server_bin: &Path,
    database_url: &str,
    tag: &str,
    entries: usize,
    seed: u64,
) -> Result<Couple> {
    let now = Utc::now();
    let password_hash = password_hash()?;
    let mut users = Vec::with_capacity(2);
    for (side, income) in [("a", 300_000i64), ("b", 600_000)] {
        let record = store
            .create_user(NewUser {
                id: Uuid::now_v7(),
                email: format!("export-{tag}-{side}@loadgen.invalid"),
                password_hash: password_hash.clone(),
                name: format!("Export {tag} {side}"),
                currency: "EUR".into(),
                country: None,
                income: Some(Decimal::new(income, 2)),
                payday: None,
                avatar_url: None,
                personal_allowance: None,
            })
            .await?;
        users.push((record, income));
    }
    let id = Uuid::now_v7();
    store
        .create_invitation(NewInvitation {
            id,
            inviter_id: users[0].0.id,
            invitee_email: users[1].0.email.clone(),
            currency: "EUR".into(),
            approval_threshold: Decimal::new(THRESHOLD_MINOR, 2),
            now,
        })
        .await?;
    let currency = Currency::parse("EUR").map_err(|e| LoadError::Doc(e.to_string()))?;
    let member = |k: usize| NewMember {
        user_id: UserId(users[k].0.id),
        name: users[k].0.name.clone(),
        income: Some(MinorUnits(users[k].1)),
        slot: k as u8 + 1,
    };
    let new = NewPartnership {
        id: PartnershipId(id),
        currency,
        approval_threshold: MinorUnits(THRESHOLD_MINOR),
        members: [member(0), member(1)],
        created_at: Millis(0),
    };
    let partners = [UserId(users[0].0.id), UserId(users[1].0.id)];
    let built = tokio::task::spawn_blocking(move || build(new, partners, entries, seed, now))
        .await
        .map_err(|e| LoadError::Doc(e.to_string()))??;
    let snapshot_bytes = built.snapshot.bytes.len();
    store
        .accept_invitation(AcceptInvitation {
            partnership_id: id,
            user_id: users[1].0.id,
            email: users[1].0.email.clone(),
            snapshot: built.snapshot,
            now,
        })
        .await?;
    for (actor, (user, _)) in built.actors.iter().zip(&users) {
        store.bind_actor(id, actor, user.id, now).await?;
    }
    store.append_changes(id, &built.tail, now).await?;
    // The server's own code writes the rows (what every merge commit materializes) and checks
    // them, and every change's author, against the stored document.
    admin(server_bin, database_url, "rebuild-rows", id)?;
    admin(server_bin, database_url, "rebuild-history", id)?;
    admin(server_bin, database_url, "check", id)?;
    let token = keys
        .issue_access_token(
            users[0].0.id,
            Some(id),
            users[0].0.token_version,
            Utc::now(),
        )
        .map_err(|e| LoadError::Doc(e.to_string()))?
        .token;
    Ok(Couple {
        pid: id,
        token,
        counts: built.counts,
        ids: built.ids,
        changes: built.changes,
        snapshot_bytes,
    })
}

/// An argon2id hash nobody logs in with (the tokens are signed here).
fn password_hash() -> Result<String> {
    use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
    let salt = SaltString::generate(&mut OsRng);
    Ok(argon2::Argon2::default()
        .hash_password(b"loadgen password, never used to log in", &salt)
        .map_err(|e| LoadError::Doc(e.to_string()))?
        .to_string())
}

/// Runs `splitsave <command> --partnership <id>` on the database; its last line of output
/// must say the partnership is clean.
fn admin(server_bin: &Path, database_url: &str, command: &str, id: Uuid) -> Result<()> {
    let out = Command::new(server_bin)
        .arg(command)
        .arg("--partnership")
        .arg(id.to_string())
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", "warn")
        .current_dir(std::env::temp_dir())
        .output()
        .map_err(|e| LoadError::Server(format!("cannot run {command}: {e}")))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or("").to_string();
    if !out.status.success() {
        return Err(LoadError::Server(format!(
            "splitsave {command} exited with {}: {}{}",
            out.status,
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    println!("  splitsave {command}: {last}");
    Ok(())
}

/// One thing a partner does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Event {
    /// The n-th expense.
    Expense(usize),
    /// A goal proposed, and approved by the partner.
    Goal,
    /// A contribution logged to an active goal.
    Contribution,
    /// A message, maybe read by the partner.
    Message,
}

/// The document's author while it is built: the partners' device actors and a server actor.
struct Author {
    actors: [ActorId; 2],
    server: ActorId,
    partners: [UserId; 2],
}

/// Builds the couple's document: the partnership as the server creates it, then every event
/// as the partner (or the server) would make it, one change each, in simulated time from
/// [`MONTHS`] months before `now`.
fn build(
    p: NewPartnership,
    partners: [UserId; 2],
    entries: usize,
    seed: u64,
    now: DateTime<Utc>,
) -> Result<Built> {
    let mix = Mix::of(entries);
    let mut rng = StdRng::seed_from_u64(seed);
    // The months: the current one and the ones before it.
    let mut months = vec![Month::from_unix_millis(now.timestamp_millis())];
    while months.len() < mix.months {
        let Some(before) = months[0].previous() else {
            break;
        };
        months.insert(0, before);
    }
    let start = months[0].start_unix_millis();
    let mut doc = new_partnership_document(&NewPartnership {
        created_at: Millis(start),
        ..p
    })
    .map_err(doc_err)?;
    let author = Author {
        actors: [ActorId::random(), ActorId::random()],
        server: server_actor(rand::random()),
        partners,
    };

    let mut events: Vec<Event> = Vec::with_capacity(mix.rows());
    events.extend((0..mix.expenses).map(Event::Expense));
    events.extend(std::iter::repeat_n(Event::Goal, mix.goals));
    events.extend(std::iter::repeat_n(
        Event::Contribution,
        mix.goal_contributions,
    ));
    events.extend(std::iter::repeat_n(Event::Message, mix.messages));
    events.shuffle(&mut rng);
    // A goal first, so that every contribution has one to go to.
    if let Some(first_goal) = events.iter().position(|e| *e == Event::Goal) {
        events.swap(0, first_goal);
    }

    let mut goals: Vec<EntityId> = Vec::new();
    let per_month = events.len().div_ceil(months.len()).max(1);
    for (m, (month, these)) in months
        .iter()
        .zip(events.chunks(per_month).chain(std::iter::repeat(&[][..])))
        .enumerate()
    {
        let begin = month.start_unix_millis();
        let end = month
            .next()
            .map_or(begin + 28 * DAY_MS, |n| n.start_unix_millis())
            .min(now.timestamp_millis());
        // The server writes the month on its first read, from the split as it is then.
        as_server(&mut doc, &author, begin, |tx| {
            split_doc::server_ensure_month(tx, *month)
        })?;
        // Spread over the month's first 28 days (the current month: until now).
        let step = ((end - begin).min(28 * DAY_MS) / these.len().max(1) as i64).max(1);
        for (k, event) in these.iter().enumerate() {
            let t = begin + k as i64 * step;
            let side = rng.gen_range(0..2usize);
            play(
                &mut doc, &author, *event, side, t, &mix, &mut goals, &mut rng,
            )?;
        }
        // Both partners pay their share before the month ends; in the current month only the
        // first has so far.
        let payers = if m + 1 == months.len() { 1 } else { 2 };
        for side in 0..payers {
            paid(&mut doc, &author, side, *month, (end - DAY_MS).max(begin))?;
        }
    }

    let state = read_document(&doc).map_err(doc_err)?;
    if !state.malformed.is_empty() {
        return Err(LoadError::Doc(format!(
            "the built document has {} malformed entities",
            state.malformed.len()
        )));
    }
    let counts = Counts::of_document(&state);
    let ids = ids_of(&state);
    stored_form(&doc, &author, counts, ids)
}

/// One event, by partner `side` at simulated time `t` (the partner's answer an hour or two
/// later).
#[allow(clippy::too_many_arguments)]
fn play(
    doc: &mut Automerge,
    author: &Author,
    event: Event,
    side: usize,
    t: i64,
    mix: &Mix,
    goals: &mut Vec<EntityId>,
    rng: &mut StdRng,
) -> Result<()> {
    match event {
        Event::Expense(n) => expense(doc, author, side, n, mix, t, rng)?,
        Event::Goal => {
            let input = NewGoal {
                name: pick(GOAL_NAMES, rng).to_string(),
                target_amount: MinorUnits(rng.gen_range(50..2_000) * 10_000),
                goal_type: *GoalType::ALL.choose(rng).unwrap_or(&GoalType::ALL[0]),
                priority: *Priority::ALL.choose(rng).unwrap_or(&Priority::Medium),
            };
            let outcome = as_partner(doc, author, side, t, |tx, ctx| {
                ops::add_goal(tx, ctx, &input)
            })?;
            if let Outcome::ApprovalRequested {
                request_id,
                target_id,
            } = outcome
            {
                as_partner(doc, author, 1 - side, t + 3_600_000, |tx, ctx| {
                    ops::approve(tx, ctx, request_id)
                })?;
                goals.push(target_id);
            }
        }
        Event::Contribution => {
            let goal = *goals
                .choose(rng)
                .ok_or_else(|| LoadError::Doc("no goal to contribute to".into()))?;
            let amount = MinorUnits(rng.gen_range(1..40) * 2_500);
            as_partner(doc, author, side, t, |tx, ctx| {
                ops::contribute_to_goal(tx, ctx, goal, amount)
            })?;
        }
        Event::Message => {
            let text = message_text(rng);
            let outcome = as_partner(doc, author, side, t, |tx, ctx| {
                ops::send_message(tx, ctx, &text)
            })?;
            if let (Outcome::Applied { id }, true) = (outcome, rng.gen_ratio(4, 5)) {
                as_partner(doc, author, 1 - side, t + 600_000, |tx, ctx| {
                    ops::mark_read(tx, ctx, id)
                })?;
            }
        }
    }
    Ok(())
}

/// Every entity id of the document, and its months.
pub(crate) fn ids_of(d: &DocumentState) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    ids.extend(d.expenses.iter().map(|e| e.id.to_string()));
    ids.extend(d.goals.iter().map(|g| g.id.to_string()));
    ids.extend(d.goal_contributions.iter().map(|c| c.id.to_string()));
    ids.extend(d.approvals.iter().map(|a| a.id.to_string()));
    ids.extend(d.messages.iter().map(|m| m.id.to_string()));
    ids.extend(d.contributions.iter().map(|m| m.month.to_string()));
    ids
}

/// The document as the server stores it: a snapshot of all but the last [`TAIL`] changes, and
/// those changes, each with the user its actor is bound to (none for the server's).
fn stored_form(
    doc: &Automerge,
    author: &Author,
    counts: Counts,
    ids: BTreeSet<String>,
) -> Result<Built> {
    let changes = doc.get_changes(&[]);
    let cut = changes.len().saturating_sub(TAIL);
    // Every change was made on top of the one before: the history is a line, and the snapshot
    // at the change before the cut holds exactly the changes before it.
    let snapshot_doc = match cut.checked_sub(1).map(|i| changes[i].hash()) {
        Some(head) => doc.fork_at(&[head]).map_err(doc_err)?,
        None => Automerge::new(),
    };
    let snapshot = NewSnapshot {
        version: 0,
        heads: snapshot_doc
            .get_heads()
            .iter()
            .map(ChangeHash::to_string)
            .collect(),
        change_count: i64::try_from(cut).unwrap_or(i64::MAX),
        bytes: snapshot_doc.save(),
    };
    let owner: HashMap<ActorId, Uuid> = author
        .actors
        .iter()
        .cloned()
        .zip(author.partners.iter().map(|u| u.0))
        .collect();
    let tail = changes[cut..]
        .iter()
        .map(|c| NewChange {
            hash: c.hash().to_string(),
            actor: c.actor_id().to_hex_string(),
            seq: i64::try_from(c.seq()).unwrap_or(i64::MAX),
            user_id: owner.get(c.actor_id()).copied(),
            bytes: c.raw_bytes().to_vec(),
        })
        .collect();
    Ok(Built {
        snapshot,
        tail,
        actors: [
            author.actors[0].to_hex_string(),
            author.actors[1].to_hex_string(),
        ],
        counts,
        ids,
        changes: changes.len(),
    })
}

fn doc_err(e: impl std::fmt::Display) -> LoadError {
    LoadError::Doc(e.to_string())
}

/// One change by partner `side` at simulated time `t`.
fn as_partner<O>(
    doc: &mut Automerge,
    author: &Author,
    side: usize,
    t: i64,
    op: impl FnOnce(&mut Transaction<'_>, &Ctx) -> OpResult<O>,
) -> Result<O> {
    doc.set_actor(author.actors[side].clone());
    let ctx = Ctx {
        user: author.partners[side],
        now: Millis(t),
    };
    doc.transact_with(
        |_| CommitOptions::default().with_time(t / 1000),
        |tx| op(tx, &ctx),
    )
    .map(|s| s.result)
    .map_err(|f| doc_err(f.error))
}

/// One change by the server at simulated time `t`.
fn as_server(
    doc: &mut Automerge,
    author: &Author,
    t: i64,
    op: impl FnOnce(&mut Transaction<'_>) -> OpResult<()>,
) -> Result<()> {
    doc.set_actor(author.server.clone());
    doc.transact_with(|_| CommitOptions::default().with_time(t / 1000), op)
        .map(|s| s.result)
        .map_err(|f| doc_err(f.error))
}

/// Partner `side` marks their share of `month` paid.
fn paid(doc: &mut Automerge, author: &Author, side: usize, month: Month, t: i64) -> Result<()> {
    as_partner(doc, author, side, t, |tx, ctx| {
        ops::mark_paid(tx, ctx, month)
    })
    .map(|_| ())
}

/// The n-th expense: under the threshold it applies at once, over it the partner answers the
/// request (approves, or one time in eight declines); every `edit_every`-th is then edited
/// through an approved edit request.
fn expense(
    doc: &mut Automerge,
    author: &Author,
    side: usize,
    n: usize,
    mix: &Mix,
    t: i64,
    rng: &mut StdRng,
) -> Result<()> {
    let over = n % mix.over_threshold_every == mix.over_threshold_every - 1;
    // Halfway between two over-threshold ones, so an edited expense is always a direct one.
    let edited = !over && n % mix.edit_every == mix.edit_every / 2;
    let amount = if over {
        rng.gen_range(THRESHOLD_MINOR + 100..THRESHOLD_MINOR * 12)
    } else {
        rng.gen_range(150..THRESHOLD_MINOR)
    };
    let (name, category) = *EXPENSES.choose(rng).unwrap_or(&EXPENSES[0]);
    let input = NewExpense {
        name: format!("{name} #{n}"),
        amount: MinorUnits(amount),
        category,
        frequency: *Frequency::ALL.choose(rng).unwrap_or(&Frequency::Monthly),
    };
    let outcome = as_partner(doc, author, side, t, |tx, ctx| {
        ops::add_expense(tx, ctx, &input)
    })?;
    match outcome {
        Outcome::ApprovalRequested { request_id, .. } => {
            let decline = (n / mix.over_threshold_every) % 8 == 7;
            as_partner(doc, author, 1 - side, t + 7_200_000, |tx, ctx| {
                if decline {
                    ops::decline(tx, ctx, request_id)
                } else {
                    ops::approve(tx, ctx, request_id)
                }
            })?;
        }
        Outcome::Applied { id } if edited => {
            let fields = ExpenseFields {
                amount: Some(MinorUnits(amount + 100)),
                ..ExpenseFields::default()
            };
            let edit = as_partner(doc, author, side, t + 60_000, |tx, ctx| {
                ops::edit_expense(tx, ctx, id, &fields, Some("the price went up, \"again\""))
            })?;
            if let Outcome::ApprovalRequested { request_id, .. } = edit {
                as_partner(doc, author, 1 - side, t + 3_600_000, |tx, ctx| {
                    ops::approve(tx, ctx, request_id)
                })?;
            }
        }
        Outcome::Applied { .. } => {}
    }
    Ok(())
}

fn pick<'a>(names: &[&'a str], rng: &mut StdRng) -> &'a str {
    names.choose(rng).copied().unwrap_or("")
}

/// A message as couples write them: a few words to a few sentences, some with commas, quotes
/// or a line break (what CSV must quote).
fn message_text(rng: &mut StdRng) -> String {
    let sentences = rng.gen_range(1..4);
    let mut text = Vec::with_capacity(sentences);
    for _ in 0..sentences {
        text.push(pick(MESSAGES, rng));
    }
    text.join(if rng.gen_ratio(1, 10) { "\n" } else { " " })
}

const EXPENSES: &[(&str, Category)] = &[
    ("Groceries, weekly shop", Category::Groceries),
    ("Farmers market", Category::Groceries),
    ("Rent share", Category::Housing),
    ("Electricity", Category::Utilities),
    ("Internet \"fiber\" plan", Category::Utilities),
    ("Train tickets", Category::Transport),
    ("Fuel", Category::Transport),
    ("Car insurance", Category::Insurance),
    ("Pharmacy", Category::Health),
    ("Daycare", Category::Childcare),
    ("Streaming", Category::Subscriptions),
    ("Dinner out", Category::Dining),
    ("Cinema", Category::Entertainment),
    ("Loan repayment", Category::Debt),
    ("Vet visit", Category::Pets),
    ("Birthday present", Category::Other),
];

const GOAL_NAMES: &[&str] = &[
    "Emergency fund",
    "Summer in Portugal",
    "New car",
    "Flat deposit",
    "Wedding",
    "Evening classes",
];

const MESSAGES: &[&str] = &[
    "Paid the electricity, it went up again.",
    "Can you approve the sofa?",
    "I moved 50 to the holiday goal, just so you know",
    "Dinner at Rosa's on Friday? My treat, \"really\".",
    "Groceries are in the fridge",
    "Did the rent go out?",
    "Love you. Also, the vet bill is in.",
    "Let's keep the car goal at high priority, ok?",
    "Who cancelled the streaming plan?",
    "Thanks!",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_adds_up_to_the_entries_asked_for() {
        let mix = Mix::of(20_000);
        assert_eq!(mix.rows(), 20_000);
        assert_eq!(mix.expenses, 12_000);
        assert_eq!(mix.goals, 40);
        assert_eq!(mix.goal_contributions, 2_000);
        assert_eq!(mix.months, 36);
        assert_eq!(mix.approvals(), 800 + 200 + 40);
        assert_eq!(mix.messages, 20_000 - 12_000 - 40 - 2_000 - 36 - 1_040);
        // Small couples still have a goal and a month.
        let small = Mix::of(50);
        assert_eq!((small.goals, small.months), (1, 1));
        assert_eq!(small.rows(), 50);
    }

    #[test]
    fn a_built_document_holds_the_mix_and_its_tail_follows_its_snapshot() {
        let users = [UserId(Uuid::now_v7()), UserId(Uuid::now_v7())];
        let member = |k: usize| NewMember {
            user_id: users[k],
            name: format!("u{k}"),
            income: Some(MinorUnits(300_000 * (k as i64 + 1))),
            slot: k as u8 + 1,
        };
        let p = NewPartnership {
            id: PartnershipId(Uuid::now_v7()),
            currency: Currency::parse("EUR").expect("EUR"),
            approval_threshold: MinorUnits(THRESHOLD_MINOR),
            members: [member(0), member(1)],
            created_at: Millis(0),
        };
        let built = build(p, users, 1_000, 7, Utc::now()).expect("built");
        let mix = Mix::of(1_000);
        assert_eq!(
            built.counts,
            Counts([
                mix.expenses,
                mix.goals,
                mix.goal_contributions,
                mix.months,
                mix.approvals(),
                mix.messages
            ])
        );
        assert_eq!(built.counts.total(), 1_000);
        assert_eq!(built.ids.len(), 1_000);
        assert_eq!(built.tail.len(), TAIL);
        let mut doc = Automerge::load(&built.snapshot.bytes).expect("snapshot loads");
        let tail: Vec<automerge::Change> = built
            .tail
            .iter()
            .map(|c| automerge::Change::from_bytes(c.bytes.clone()).expect("change"))
            .collect();
        doc.apply_changes(tail).expect("tail applies");
        assert_eq!(doc.get_changes(&[]).len(), built.changes);
        let state = read_document(&doc).expect("reads");
        assert_eq!(Counts::of_document(&state), built.counts);
        // Only the partners' and the server's actors wrote; the partners' are bound.
        assert!(built.tail.iter().all(|c| c.user_id.is_some()
            || c.actor.starts_with(&hex::encode(
                splitsave_sync_core::document::SERVER_ACTOR_PREFIX
            ))));
    }
}
