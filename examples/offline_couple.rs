//! Two partners with the client SDK: they register and pair, go offline, each edits on their own
//! phone (one adds an expense over the approval threshold, both contribute to a goal), come back
//! online, and the example prints the converged split, the pending approval and the goal's
//! progress as both phones see them.
//!
//! ```sh
//! cargo run --example offline_couple                               # starts its own server
//! cargo run --example offline_couple -- --url http://127.0.0.1:3000  # or uses yours
//! ```
//!
//! The lines starting with `SUMMARY` are what `tests/examples.rs` checks.

#[path = "support/mod.rs"]
mod support;

use std::time::Duration;

use splitsave_client::api::Registration;
use splitsave_client::enums::{
    ApprovalStatus, Category, Frequency, GoalType, ItemStatus, Priority,
};
use splitsave_client::money::MinorUnits;
use splitsave_client::ops::{NewExpense, NewGoal, Outcome};
use splitsave_client::{Client, ClientConfig};
use tempfile::TempDir;

const WAIT: Duration = Duration::from_secs(30);

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

#[tokio::main]
async fn main() {
    if let Err(err) = run().await {
        eprintln!("offline_couple failed: {err}");
        std::process::exit(1);
    }
}

/// Renders minor units of a two-decimal currency.
fn money(m: MinorUnits) -> String {
    let sign = if m.0 < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", m.0.abs() / 100, m.0.abs() % 100)
}

async fn partner(
    url: &str,
    name: &str,
    income: i64,
    run_id: &str,
) -> Result<(Client, TempDir, String)> {
    let dir = TempDir::new()?;
    let client = Client::open(ClientConfig::new(url, dir.path()))?;
    let email = format!("{}-{run_id}@example.com", name.to_lowercase());
    client
        .register(&Registration {
            email: email.clone(),
            password: "correct horse battery".into(),
            name: name.into(),
            currency: Some("USD".into()),
            income: Some(income.into()),
        })
        .await?;
    println!(
        "{name} registered as {email} (income {income}.00 a month); store in {}",
        dir.path().display()
    );
    Ok((client, dir, email))
}

async fn run() -> Result<()> {
    let (url, _server) = support::server_url().await;
    println!("server: {url}");
    let run_id = uuid::Uuid::new_v4().simple().to_string();

    // 1. Register, pair, sync once.
    let (ann, _ann_dir, _) = partner(&url, "Ann", 4000, &run_id).await?;
    let (bob, _bob_dir, bob_email) = partner(&url, "Bob", 2000, &run_id).await?;
    ann.invite(&bob_email).await?;
    let invitation = *bob
        .received_invitations()
        .await?
        .first()
        .ok_or("no invitation")?;
    bob.accept_invitation(invitation).await?;
    println!("Bob accepted Ann's invitation");
    for (name, c) in [("Ann", &ann), ("Bob", &bob)] {
        c.start_sync().await?;
        c.wait_until(WAIT, |d| d.members.len() == 2).await?;
        c.wait_until_synced(WAIT).await?;
        println!("{name}: synced ({:?})", c.sync_state().status);
    }
    // A shared goal both will save for (goals need the partner's approval).
    let Outcome::ApprovalRequested {
        request_id,
        target_id: goal,
    } = ann.add_goal(NewGoal {
        name: "Holiday in Lisbon".into(),
        target_amount: MinorUnits(300_000),
        goal_type: GoalType::Vacation,
        priority: Priority::High,
    })?
    else {
        return Err("a new goal should need approval".into());
    };
    bob.wait_until(WAIT, |d| d.approvals.iter().any(|a| a.id == request_id))
        .await?;
    bob.approve(request_id)?;
    for c in [&ann, &bob] {
        c.wait_until(WAIT, |d| {
            d.goals
                .iter()
                .any(|g| g.id == goal && g.status == ItemStatus::Active)
        })
        .await?;
        c.wait_until_synced(WAIT).await?;
    }
    println!("goal \"Holiday in Lisbon\" (target 3000.00) approved by Bob");

    // 2. Both phones go offline.
    ann.stop_sync().await;
    bob.stop_sync().await;
    println!("\n-- both offline --");

    // 3. Offline edits.
    let rent = ann.add_expense(NewExpense {
        name: "Rent".into(),
        amount: MinorUnits(90_000),
        category: Category::Housing,
        frequency: Frequency::Monthly,
    })?;
    println!("Ann adds Rent 900.00 monthly -> {}", describe(&rent));
    let groceries = bob.add_expense(NewExpense {
        name: "Groceries".into(),
        amount: MinorUnits(6_000),
        category: Category::Groceries,
        frequency: Frequency::Monthly,
    })?;
    println!(
        "Bob adds Groceries 60.00 monthly -> {}",
        describe(&groceries)
    );
    ann.contribute(goal, MinorUnits(15_000))?;
    println!("Ann puts 150.00 into the holiday goal");
    bob.contribute(goal, MinorUnits(7_500))?;
    println!("Bob puts 75.00 into the holiday goal");
    println!(
        "offline views: Ann sees {} expense(s), Bob sees {}",
        ann.expenses()?.len(),
        bob.expenses()?.len()
    );

    // 4. Back online: both converge.
    println!("\n-- both online again --");
    ann.start_sync().await?;
    bob.start_sync().await?;
    for c in [&ann, &bob] {
        c.wait_until(WAIT, |d| {
            d.expenses.len() == 2
                && d.goals
                    .iter()
                    .any(|g| g.id == goal && g.saved_amount == MinorUnits(22_500))
        })
        .await?;
    }
    for c in [&ann, &bob] {
        c.wait_until_synced(WAIT).await?;
    }

    // 5. What both phones show.
    for (name, c) in [("Ann", &ann), ("Bob", &bob)] {
        let split = c.split()?;
        let pending = c.pending_approvals()?;
        let g = c
            .goals()?
            .into_iter()
            .find(|g| g.id == goal)
            .ok_or("goal missing")?;
        println!(
            "{name} sees: monthly total {} = Ann {} ({}%) + Bob {} ({}%); {} pending approval(s); goal {} of {}",
            money(split.split.monthly_total),
            money(split.split.share_1),
            split.split.ratio_1,
            money(split.split.share_2),
            split.split.ratio_2,
            pending.len(),
            money(g.saved_amount),
            money(g.target_amount),
        );
    }
    let doc_a = ann.document()?;
    let doc_b = bob.document()?;
    if doc_a != doc_b {
        return Err("the two phones did not converge".into());
    }
    let split = ann.split()?.split;
    let pending = ann.pending_approvals()?;
    let rent_pending = pending
        .iter()
        .find(|a| a.status == ApprovalStatus::Pending)
        .ok_or("Rent should wait for Bob's approval")?;
    let rent_name = ann
        .expenses()?
        .into_iter()
        .find(|e| e.id == rent_pending.target_id)
        .map(|e| e.name)
        .unwrap_or_default();
    let saved = ann
        .goals()?
        .into_iter()
        .find(|g| g.id == goal)
        .ok_or("goal")?
        .saved_amount;
    println!();
    println!("SUMMARY converged=true");
    println!(
        "SUMMARY split monthly_total={} share_ann={} share_bob={} ratio_ann={} ratio_bob={}",
        money(split.monthly_total),
        money(split.share_1),
        money(split.share_2),
        split.ratio_1,
        split.ratio_2
    );
    println!(
        "SUMMARY pending_approvals={} pending_for={rent_name}",
        pending.len()
    );
    println!(
        "SUMMARY goal_saved={} goal_target={}",
        money(saved),
        money(MinorUnits(300_000))
    );

    ann.shutdown().await;
    bob.shutdown().await;
    Ok(())
}

fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Applied { .. } => "applied".into(),
        Outcome::ApprovalRequested { .. } => "waits for the partner's approval".into(),
    }
}
