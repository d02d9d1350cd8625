//! Runs a scripted list of operations through the SDK's [`Client`] for the partners of one
//! couple, then prints the partnership document as JSON, every value tagged with the type it is
//! stored as. The JS package's tests (`client-sdk/js/test/rust-parity.test.ts`) run the same
//! script through the TypeScript package and compare the two documents.
//!
//! ```sh
//! cargo run -p splitsave-client --example script -- \
//!     --url http://127.0.0.1:3000 \
//!     --user ann=ann@example.com:PASSWORD --user ben=ben@example.com:PASSWORD \
//!     --ops script.json            # or the operations on stdin
//! ```
//!
//! Each `--user NAME=EMAIL:PASSWORD` signs in one partner (the password is everything after the
//! first `:`). The script is a JSON array of operations, run in order, each as the partner it
//! names in `as`; entities are named by `ref` (the expense, goal, message or contribution an
//! operation creates) and `request_ref` (the approval request it files), and later operations
//! point at them by those names:
//!
//! ```json
//! [
//!   {"as": "ann", "op": "add_expense", "ref": "rent", "request_ref": "rent_add",
//!    "name": "Rent", "amount": 150000, "category": "housing", "frequency": "monthly"},
//!   {"as": "ben", "op": "approve", "request": "rent_add"},
//!   {"as": "ann", "op": "edit_expense", "expense": "rent", "fields": {"amount": 160000},
//!    "message": "it went up", "request_ref": "rent_edit"},
//!   {"as": "ben", "op": "decline", "request": "rent_edit"},
//!   {"as": "ben", "op": "archive_expense", "expense": "rent"},
//!   {"as": "ann", "op": "add_goal", "ref": "trip", "request_ref": "trip_add", "name": "Trip",
//!    "target_amount": 300000, "goal_type": "vacation", "priority": "high"},
//!   {"as": "ben", "op": "contribute", "goal": "trip", "amount": 5000},
//!   {"as": "ann", "op": "send_message", "text": "Hello"}
//! ]
//! ```
//!
//! Amounts are minor units. After every operation the acting partner syncs and the other one
//! waits until their document reads the same, so each operation sees what the previous ones
//! did, whoever made them. At the end both clients are shut down and the first partner's local
//! store is read back. Output (stdout, one JSON object):
//! `{"refs": {NAME: ID}, "outcomes": [...], "document": DUMP}` where `DUMP` is the document's
//! maps as JSON objects and every other value as `{"t": TYPE, "v": VALUE}`, `TYPE` one of
//! `text` (a Text object), `str` (a scalar string), `num`, `counter`, `timestamp`, `bool`,
//! `null`, `bytes` (hex), `list` (an array of tagged values). Progress goes to stderr.

use std::collections::BTreeMap;
use std::io::Read;
use std::time::Duration;

use automerge::{Automerge, ObjId, ObjType, ReadDoc, ScalarValue, Value, ROOT};
use serde::Deserialize;
use serde_json::{json, Map, Value as Json};
use splitsave_client::enums::{Category, Frequency, GoalType, Priority};
use splitsave_client::ids::EntityId;
use splitsave_client::money::MinorUnits;
use splitsave_client::ops::{NewExpense, NewGoal, Outcome};
use splitsave_client::schema::{ExpenseFields, GoalFields};
use splitsave_client::store::LocalStore;
use splitsave_client::{Client, ClientConfig};
use tempfile::TempDir;

/// How long one sync step may take.
const WAIT: Duration = Duration::from_secs(30);

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// One scripted operation.
#[derive(Debug, Deserialize)]
struct Step {
    /// The partner who acts (a `--user` name).
    #[serde(rename = "as")]
    actor: String,
    #[serde(flatten)]
    op: Op,
    /// The name of the entity this step creates.
    #[serde(rename = "ref")]
    target_ref: Option<String>,
    /// The name of the approval request this step files.
    request_ref: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Op {
    AddExpense {
        name: String,
        amount: i64,
        category: Category,
        frequency: Frequency,
    },
    EditExpense {
        expense: String,
        fields: ExpenseEdit,
        message: Option<String>,
    },
    ArchiveExpense {
        expense: String,
    },
    AddGoal {
        name: String,
        target_amount: i64,
        goal_type: GoalType,
        priority: Priority,
    },
    EditGoal {
        goal: String,
        fields: GoalEdit,
        message: Option<String>,
    },
    ArchiveGoal {
        goal: String,
    },
    Contribute {
        goal: String,
        amount: i64,
    },
    Approve {
        request: String,
    },
    Decline {
        request: String,
    },
    SendMessage {
        text: String,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpenseEdit {
    name: Option<String>,
    amount: Option<i64>,
    category: Option<Category>,
    frequency: Option<Frequency>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct GoalEdit {
    name: Option<String>,
    target_amount: Option<i64>,
    goal_type: Option<GoalType>,
    priority: Option<Priority>,
}

/// The command line.
struct Args {
    url: String,
    /// `(name, email, password)`, in the order given.
    users: Vec<(String, String, String)>,
    ops: Option<String>,
}

fn parse_args() -> Result<Args> {
    let mut url = None;
    let mut users = Vec::new();
    let mut ops = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--url" => url = Some(value()?),
            "--ops" => ops = Some(value()?),
            "--user" => {
                let spec = value()?;
                let (name, login) = spec
                    .split_once('=')
                    .ok_or("--user takes NAME=EMAIL:PASSWORD")?;
                let (email, password) = login
                    .split_once(':')
                    .ok_or("--user takes NAME=EMAIL:PASSWORD")?;
                users.push((name.to_string(), email.to_string(), password.to_string()));
            }
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let url = url.ok_or("--url is required")?;
    if users.is_empty() {
        return Err("at least one --user is required".into());
    }
    Ok(Args { url, users, ops })
}

#[tokio::main]
async fn main() {
    match run().await {
        Ok(out) => println!("{out}"),
        Err(err) => {
            eprintln!("script failed: {err}");
            std::process::exit(1);
        }
    }
}

/// A signed-in, syncing partner.
struct Partner {
    name: String,
    client: Client,
    dir: TempDir,
}

async fn run() -> Result<Json> {
    let args = parse_args()?;
    let text = match &args.ops {
        Some(path) if path != "-" => std::fs::read_to_string(path)?,
        _ => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s)?;
            s
        }
    };
    let steps: Vec<Step> = serde_json::from_str(&text)?;

    let mut partners = Vec::new();
    for (name, email, password) in &args.users {
        let dir = TempDir::new()?;
        let client = Client::open(ClientConfig::new(&args.url, dir.path()))?;
        client.login(email, password).await?;
        client.start_sync().await?;
        // The document arrives with the first sync.
        client.wait_until(WAIT, |_| true).await?;
        eprintln!("{name} signed in as {email}");
        partners.push(Partner {
            name: name.clone(),
            client,
            dir,
        });
    }
    converge(&partners, 0).await?;

    let mut refs: BTreeMap<String, EntityId> = BTreeMap::new();
    let mut outcomes = Vec::new();
    for (n, step) in steps.iter().enumerate() {
        let actor = partners
            .iter()
            .position(|p| p.name == step.actor)
            .ok_or_else(|| format!("step {n}: no --user named {}", step.actor))?;
        let partner = &partners[actor];
        let outcome = apply(&partner.client, &step.op, &refs)
            .map_err(|e| format!("step {n} ({:?}): {e}", step.op))?;
        eprintln!("step {n}: {} {:?} -> {outcome:?}", step.actor, step.op);
        let (target, request) = match outcome {
            Outcome::Applied { id } => (id, None),
            Outcome::ApprovalRequested {
                request_id,
                target_id,
            } => (target_id, Some(request_id)),
        };
        if let Some(name) = &step.target_ref {
            refs.insert(name.clone(), target);
        }
        if let (Some(name), Some(id)) = (&step.request_ref, request) {
            refs.insert(name.clone(), id);
        }
        outcomes.push(json!({
            "as": step.actor,
            "kind": if request.is_some() { "approval_requested" } else { "applied" },
        }));
        converge(&partners, actor).await?;
    }

    let store_dir = partners[0].dir.path().to_path_buf();
    let mut dirs = Vec::new();
    for partner in partners {
        partner.client.shutdown().await;
        dirs.push(partner.dir);
    }
    let doc = LocalStore::open(&store_dir)?
        .load_document()?
        .ok_or("the local store holds no document")?;
    drop(dirs);
    let refs: Map<String, Json> = refs
        .into_iter()
        .map(|(k, v)| (k, Json::String(v.to_string())))
        .collect();
    Ok(json!({ "refs": refs, "outcomes": outcomes, "document": dump_map(&doc, &ROOT)? }))
}

/// Every partner synced and reading the document as `actor` (the one who acted last, so the
/// only one with something new) reads it once its change is on the server.
async fn converge(partners: &[Partner], actor: usize) -> Result<()> {
    let acting = &partners[actor].client;
    acting.wait_until_synced(WAIT).await?;
    let state = acting.document()?;
    for p in partners {
        p.client.wait_until(WAIT, |d| *d == state).await?;
        p.client.wait_until_synced(WAIT).await?;
    }
    Ok(())
}

fn lookup(refs: &BTreeMap<String, EntityId>, name: &str) -> Result<EntityId> {
    refs.get(name)
        .copied()
        .ok_or_else(|| format!("no entity named {name} yet").into())
}

fn apply(client: &Client, op: &Op, refs: &BTreeMap<String, EntityId>) -> Result<Outcome> {
    let outcome = match op {
        Op::AddExpense {
            name,
            amount,
            category,
            frequency,
        } => client.add_expense(NewExpense {
            name: name.clone(),
            amount: MinorUnits(*amount),
            category: *category,
            frequency: *frequency,
        })?,
        Op::EditExpense {
            expense,
            fields,
            message,
        } => client.edit_expense(
            lookup(refs, expense)?,
            ExpenseFields {
                name: fields.name.clone(),
                amount: fields.amount.map(MinorUnits),
                category: fields.category,
                frequency: fields.frequency,
            },
            message.as_deref(),
        )?,
        Op::ArchiveExpense { expense } => client.archive_expense(lookup(refs, expense)?)?,
        Op::AddGoal {
            name,
            target_amount,
            goal_type,
            priority,
        } => client.add_goal(NewGoal {
            name: name.clone(),
            target_amount: MinorUnits(*target_amount),
            goal_type: *goal_type,
            priority: *priority,
        })?,
        Op::EditGoal {
            goal,
            fields,
            message,
        } => client.edit_goal(
            lookup(refs, goal)?,
            GoalFields {
                name: fields.name.clone(),
                target_amount: fields.target_amount.map(MinorUnits),
                goal_type: fields.goal_type,
                priority: fields.priority,
            },
            message.as_deref(),
        )?,
        Op::ArchiveGoal { goal } => client.archive_goal(lookup(refs, goal)?)?,
        Op::Contribute { goal, amount } => {
            client.contribute(lookup(refs, goal)?, MinorUnits(*amount))?
        }
        Op::Approve { request } => client.approve(lookup(refs, request)?)?,
        Op::Decline { request } => client.decline(lookup(refs, request)?)?,
        Op::SendMessage { text } => client.send_message(text)?,
    };
    Ok(outcome)
}

/// A map as a JSON object of its keys' current values.
fn dump_map(doc: &Automerge, obj: &ObjId) -> Result<Json> {
    let mut out = Map::new();
    for key in doc.keys(obj) {
        if let Some((value, id)) = doc.get(obj, key.as_str())? {
            out.insert(key, dump_value(doc, value, &id)?);
        }
    }
    Ok(Json::Object(out))
}

fn tagged(t: &str, v: Json) -> Json {
    json!({ "t": t, "v": v })
}

fn dump_value(doc: &Automerge, value: Value<'_>, id: &ObjId) -> Result<Json> {
    Ok(match value {
        Value::Object(ObjType::Map) | Value::Object(ObjType::Table) => dump_map(doc, id)?,
        Value::Object(ObjType::Text) => tagged("text", Json::String(doc.text(id)?)),
        Value::Object(ObjType::List) => {
            let mut items = Vec::new();
            for i in 0..doc.length(id) {
                if let Some((v, item)) = doc.get(id, i)? {
                    items.push(dump_value(doc, v, &item)?);
                }
            }
            tagged("list", Json::Array(items))
        }
        Value::Scalar(s) => match s.as_ref() {
            ScalarValue::Str(s) => tagged("str", Json::String(s.to_string())),
            ScalarValue::Int(n) => tagged("num", json!(n)),
            ScalarValue::Uint(n) => tagged("num", json!(n)),
            ScalarValue::F64(n) => tagged("num", json!(n)),
            ScalarValue::Counter(c) => tagged("counter", json!(i64::from(c))),
            ScalarValue::Timestamp(n) => tagged("timestamp", json!(n)),
            ScalarValue::Boolean(b) => tagged("bool", json!(b)),
            ScalarValue::Null => tagged("null", Json::Null),
            ScalarValue::Bytes(b) => tagged(
                "bytes",
                Json::String(b.iter().map(|x| format!("{x:02x}")).collect()),
            ),
            ScalarValue::Unknown { .. } => tagged("unknown", Json::Null),
        },
    })
}
