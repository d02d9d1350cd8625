//! A tour of the SplitSave REST API, end to end, with plain HTTP calls (no SDK), printing every
//! request and answer so the API can be learnt by reading the output.
//!
//! Two partners, Ann and Ben, register and enter their incomes (4000 and 2000 a month), pair
//! up, add a small expense (added at once) and a rent above the approval threshold (which Ben
//! approves), look at the split, agree on a savings goal and both put money in it, exchange
//! messages, and Ben pays his share of this month. The last block prints `SUMMARY` lines read
//! from the server's answers, which `tests/examples.rs` checks.
//!
//! ```sh
//! cargo run --example rest_tour                                 # starts its own server
//! cargo run --example rest_tour -- --url http://127.0.0.1:3000  # or talks to a running one
//! ```
//!
//! The process exits non-zero as soon as an answer has another status than the API documents.

#[path = "support/mod.rs"]
mod support;

use std::process::ExitCode;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Monthly incomes: Ann earns twice what Ben earns, so the split is 2:1.
const ANN_INCOME: &str = "4000.00";
const BEN_INCOME: &str = "2000.00";
/// At or under the default approval threshold (100): active at once.
const SMALL_EXPENSE: (&str, &str) = ("Internet", "60.00");
/// Above the threshold: waits for the partner's approval.
const BIG_EXPENSE: (&str, &str) = ("Rent", "1200.00");
/// The savings goal and what each partner puts in.
const GOAL: (&str, &str) = ("Emergency fund", "3000.00");
const ANN_CONTRIBUTION: &str = "150.00";
const BEN_CONTRIBUTION: &str = "75.50";
/// Both partners' password (10 characters at least).
const PASSWORD: &str = "correct horse battery staple";

/// Why the tour stopped.
type Failure = String;

#[tokio::main]
async fn main() -> ExitCode {
    let (url, _server) = support::server_url().await;
    println!("SplitSave REST tour against {url}");
    match tour(&url).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("\nrest_tour failed: {failure}");
            ExitCode::FAILURE
        }
    }
}

/// A signed-in partner.
struct Partner {
    name: &'static str,
    email: String,
    token: String,
}

async fn tour(base: &str) -> Result<(), Failure> {
    let mut api = Rest::new(base)?;
    // A suffix keeps the emails unique, so the tour also runs against a server with data.
    let run = uuid::Uuid::new_v4().simple().to_string()[..10].to_string();

    api.section("Is the server up?");
    api.call(None, Method::GET, "/healthz", None, 200).await?;

    api.section("Ann and Ben register");
    let ann = register(&mut api, "Ann", &format!("ann.{run}@example.com")).await?;
    let ben = register(&mut api, "Ben", &format!("ben.{run}@example.com")).await?;

    api.section("They enter their monthly incomes");
    for (who, income) in [(&ann, ANN_INCOME), (&ben, BEN_INCOME)] {
        let body = json!({ "income": income });
        api.call(
            Some(who),
            Method::PUT,
            "/api/users/update-income",
            Some(body),
            200,
        )
        .await?;
    }

    api.section("Ann invites Ben; Ben finds the invitation and accepts it");
    let body = json!({ "email": ben.email });
    api.call(
        Some(&ann),
        Method::POST,
        "/api/partnerships/invite",
        Some(body),
        201,
    )
    .await?;
    let invitations = api
        .call(
            Some(&ben),
            Method::GET,
            "/api/partnerships/invitations",
            None,
            200,
        )
        .await?;
    let invitation = items(&invitations, "/received")?
        .iter()
        .find(|i| i.pointer("/inviter/email") == Some(&json!(ann.email)))
        .ok_or("Ben's invitations do not include Ann's")?;
    let invitation_id = text(invitation, "/id")?;
    let path = format!("/api/partnerships/accept/{invitation_id}");
    let partnership = api.call(Some(&ben), Method::POST, &path, None, 200).await?;
    expect_eq(&partnership, "/status", "active")?;

    api.section("Ann adds a small expense: under the approval threshold, it is active at once");
    let expense = api
        .call(
            Some(&ann),
            Method::POST,
            "/api/expenses",
            Some(expense_body(SMALL_EXPENSE, "utilities")),
            201,
        )
        .await?;
    expect_eq(&expense, "/status", "active")?;

    api.section("Ann adds the rent: above the threshold, it needs Ben's approval (202)");
    let request = api
        .call(
            Some(&ann),
            Method::POST,
            "/api/expenses",
            Some(expense_body(BIG_EXPENSE, "housing")),
            202,
        )
        .await?;
    let rent_request = text(&request, "/id")?;

    api.section("Ben lists the pending approvals and approves the rent");
    let pending = api
        .call(Some(&ben), Method::GET, "/api/approvals", None, 200)
        .await?;
    if !items(&pending, "/items")?
        .iter()
        .any(|a| a.pointer("/id") == Some(&json!(rent_request)))
    {
        return Err("the rent's approval request is not among Ben's pending approvals".into());
    }
    let path = format!("/api/approvals/{rent_request}/approve");
    let approved = api.call(Some(&ben), Method::POST, &path, None, 200).await?;
    expect_eq(&approved, "/status", "approved")?;

    api.section("The split: both expenses, in proportion to the incomes");
    api.call(
        Some(&ann),
        Method::GET,
        "/api/expenses/split-calculation",
        None,
        200,
    )
    .await?;

    api.section("Ann proposes a savings goal (always 202: a goal needs both); Ben approves");
    let body = json!({ "name": GOAL.0, "target_amount": GOAL.1, "goal_type": "emergency_fund" });
    let request = api
        .call(Some(&ann), Method::POST, "/api/goals", Some(body), 202)
        .await?;
    let goal_request = text(&request, "/id")?;
    let goal_id = text(&request, "/target_id")?;
    let path = format!("/api/approvals/{goal_request}/approve");
    api.call(Some(&ben), Method::POST, &path, None, 200).await?;

    api.section("Both contribute to the goal (contributions add up)");
    let path = format!("/api/goals/{goal_id}/contribution");
    for (who, amount) in [(&ann, ANN_CONTRIBUTION), (&ben, BEN_CONTRIBUTION)] {
        let body = json!({ "amount": amount });
        api.call(Some(who), Method::PUT, &path, Some(body), 200)
            .await?;
    }

    api.section("Messages: each writes one; Ann reads hers and marks Ben's read");
    let body = json!({ "text": "Rent is in; I put 150 in the emergency fund." });
    api.call(Some(&ann), Method::POST, "/api/messages", Some(body), 201)
        .await?;
    let body = json!({ "text": "Approved, and 75.50 from me." });
    let from_ben = api
        .call(Some(&ben), Method::POST, "/api/messages", Some(body), 201)
        .await?;
    let from_ben = text(&from_ben, "/id")?;
    api.call(Some(&ann), Method::GET, "/api/messages?limit=20", None, 200)
        .await?;
    let path = format!("/api/messages/{from_ben}/read");
    let read = api.call(Some(&ann), Method::PUT, &path, None, 200).await?;
    if read.pointer("/read_by_recipient") != Some(&json!(true)) {
        return Err("Ben's message is not marked read".into());
    }

    api.section("This month's contributions; Ben pays his share");
    api.call(
        Some(&ann),
        Method::GET,
        "/api/contributions/current",
        None,
        200,
    )
    .await?;
    api.call(
        Some(&ben),
        Method::POST,
        "/api/contributions/mark-paid",
        None,
        200,
    )
    .await?;

    summary(&mut api, &ann, &ben, &goal_id).await
}

/// Reads the final state back and prints it, once for people and once as `SUMMARY` lines.
async fn summary(
    api: &mut Rest,
    ann: &Partner,
    ben: &Partner,
    goal_id: &str,
) -> Result<(), Failure> {
    api.section("Where the couple stands");
    let split = api
        .call(
            Some(ben),
            Method::GET,
            "/api/expenses/split-calculation",
            None,
            200,
        )
        .await?;
    let expenses = api
        .call(
            Some(ann),
            Method::GET,
            "/api/expenses?status=active",
            None,
            200,
        )
        .await?;
    let approvals = api
        .call(
            Some(ann),
            Method::GET,
            "/api/approvals?status=pending",
            None,
            200,
        )
        .await?;
    let goals = api
        .call(Some(ben), Method::GET, "/api/goals", None, 200)
        .await?;
    let messages = api
        .call(Some(ben), Method::GET, "/api/messages", None, 200)
        .await?;
    let month = api
        .call(
            Some(ann),
            Method::GET,
            "/api/contributions/current",
            None,
            200,
        )
        .await?;

    let share_of = |slot: u64| -> Result<String, Failure> {
        let partner = items(&split, "/partners")?
            .iter()
            .find(|p| p.pointer("/slot").and_then(Value::as_u64) == Some(slot))
            .ok_or_else(|| format!("the split has no partner in slot {slot}"))?;
        text(partner, "/share")
    };
    let goal = items(&goals, "/items")?
        .iter()
        .find(|g| g.pointer("/id") == Some(&json!(goal_id)))
        .ok_or("the goal is not listed")?;
    let messages = items(&messages, "/items")?;
    let read = messages
        .iter()
        .filter(|m| m.pointer("/read_by_recipient") == Some(&json!(true)))
        .count();
    let shares = items(&month, "/shares")?;
    let paid = shares
        .iter()
        .filter(|s| s.pointer("/paid") == Some(&json!(true)))
        .count();

    println!();
    println!(
        "{} and {} share {} {} a month: {} pays {}, {} pays {}.",
        ann.name,
        ben.name,
        text(&split, "/monthly_total")?,
        text(&split, "/currency")?,
        ann.name,
        share_of(1)?,
        ben.name,
        share_of(2)?,
    );
    println!(
        "Their goal \"{}\" holds {} of {}.",
        text(goal, "/name")?,
        text(goal, "/saved_amount")?,
        text(goal, "/target_amount")?,
    );
    println!();
    println!(
        "SUMMARY split monthly_total={} share_1={} share_2={} basis={}",
        text(&split, "/monthly_total")?,
        share_of(1)?,
        share_of(2)?,
        text(&split, "/basis")?,
    );
    println!(
        "SUMMARY expenses_active={}",
        items(&expenses, "/items")?.len()
    );
    println!(
        "SUMMARY approvals_pending={}",
        items(&approvals, "/items")?.len()
    );
    println!(
        "SUMMARY goal_saved={} goal_target={} goal_status={}",
        text(goal, "/saved_amount")?,
        text(goal, "/target_amount")?,
        text(goal, "/status")?,
    );
    println!("SUMMARY messages={} read={read}", messages.len());
    println!(
        "SUMMARY month total_required={} paid={paid} shares={}",
        text(&month, "/total_required")?,
        shares.len(),
    );
    Ok(())
}

async fn register(api: &mut Rest, name: &'static str, email: &str) -> Result<Partner, Failure> {
    let body = json!({ "email": email, "password": PASSWORD, "name": name, "currency": "USD" });
    let session = api
        .call(None, Method::POST, "/api/auth/register", Some(body), 201)
        .await?;
    Ok(Partner {
        name,
        email: email.to_string(),
        token: text(&session, "/access_token")?,
    })
}

fn expense_body((name, amount): (&str, &str), category: &str) -> Value {
    json!({ "name": name, "amount": amount, "category": category, "frequency": "monthly" })
}

/// The string at `pointer` in an answer.
fn text(value: &Value, pointer: &str) -> Result<String, Failure> {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| format!("the answer has no string at {pointer}"))
}

/// The array at `pointer` in an answer.
fn items<'a>(value: &'a Value, pointer: &str) -> Result<&'a Vec<Value>, Failure> {
    value
        .pointer(pointer)
        .and_then(Value::as_array)
        .ok_or_else(|| format!("the answer has no array at {pointer}"))
}

fn expect_eq(value: &Value, pointer: &str, expected: &str) -> Result<(), Failure> {
    let found = text(value, pointer)?;
    if found == expected {
        Ok(())
    } else {
        Err(format!("{pointer} is {found:?}, expected {expected:?}"))
    }
}

/// Plain HTTP calls that print themselves.
struct Rest {
    http: reqwest::Client,
    base: String,
    section: usize,
}

impl Rest {
    fn new(base: &str) -> Result<Rest, Failure> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Rest {
            http,
            base: base.trim_end_matches('/').to_string(),
            section: 0,
        })
    }

    fn section(&mut self, title: &str) {
        self.section += 1;
        println!("\n== {}. {title}", self.section);
    }

    /// Sends one request (as `who` when given), prints it and its answer, and returns the
    /// answer's JSON body; any status but `expected` stops the tour.
    async fn call(
        &mut self,
        who: Option<&Partner>,
        method: Method,
        path: &str,
        body: Option<Value>,
        expected: u16,
    ) -> Result<Value, Failure> {
        let by = who.map(|p| format!("  ({})", p.name)).unwrap_or_default();
        println!("\n-> {method} {path}{by}");
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(who) = who {
            request = request.bearer_auth(&who.token);
        }
        if let Some(body) = &body {
            println!("{}", indent(&pretty(&redacted(body))));
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("{method} {path}: no answer: {}", error_chain(&e)))?;
        let status = response.status();
        let raw = response
            .text()
            .await
            .map_err(|e| format!("{method} {path}: answer cut short: {e}"))?;
        let answer: Value = serde_json::from_str(&raw).unwrap_or(Value::Null);
        println!("<- {}", status_line(status));
        if answer.is_null() {
            if !raw.is_empty() {
                println!("{}", indent(&raw));
            }
        } else {
            println!("{}", indent(&pretty(&redacted(&answer))));
        }
        if status.as_u16() != expected {
            return Err(format!(
                "{method} {path} answered {}, expected {expected}",
                status_line(status)
            ));
        }
        Ok(answer)
    }
}

fn status_line(status: StatusCode) -> String {
    format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or_default()
    )
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("   {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A copy for printing: tokens shortened (they are long and secret), passwords hidden.
fn redacted(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, v)| {
                    let shown = match v {
                        Value::String(s) if key == "password" => json!("*".repeat(s.len().min(8))),
                        Value::String(s) if key.ends_with("token") && s.chars().count() > 16 => {
                            let head: String = s.chars().take(12).collect();
                            json!(format!("{head}…"))
                        }
                        other => redacted(other),
                    };
                    (key.clone(), shown)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redacted).collect()),
        other => other.clone(),
    }
}

fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    message
}
