//! The TypeScript package's schema file (`client-sdk/js/src/generated/schema.ts`) is generated
//! from sync-core's own tables ([`fields`], the vocabularies, the derived-id namespace, the
//! schema version, the limits and the currency table), and this test fails when the committed
//! file differs from what the tables give now: a field, a vocabulary value or a limit changed in
//! Rust cannot be forgotten in the JS client.
//!
//! `SPLITSAVE_UPDATE_GENERATED=1 cargo test -p splitsave-sync-core --test integration js_schema`
//! rewrites the file.

use std::fmt::Write as _;
use std::path::PathBuf;

use splitsave_sync_core::fields::{self, Field, FieldType, Vocabulary};
use splitsave_sync_core::ids::DERIVED_NAMESPACE;
use splitsave_sync_core::money::Currency;
use splitsave_sync_core::policy::{limits, DEFAULT_APPROVAL_THRESHOLD_MAJOR};
use splitsave_sync_core::schema::SCHEMA_VERSION;

/// Every table of the schema: its key in the document, the TS interface name, the name of the
/// key field an entity carries when read (the map key), and its fields.
const TABLES: &[(&str, &str, Option<&str>, &[Field])] = &[
    ("partnership", "Partnership", None, fields::PARTNERSHIP),
    ("members", "Member", Some("user_id"), fields::MEMBER),
    ("expenses", "Expense", Some("id"), fields::EXPENSE),
    ("goals", "Goal", Some("id"), fields::GOAL),
    (
        "goal_contributions",
        "GoalContribution",
        Some("id"),
        fields::GOAL_CONTRIBUTION,
    ),
    ("approvals", "Approval", Some("id"), fields::APPROVAL),
    ("messages", "Message", Some("id"), fields::MESSAGE),
    (
        "contributions",
        "MonthContribution",
        Some("month"),
        fields::MONTH,
    ),
];

const TARGET: &str = "../client-sdk/js/src/generated/schema.ts";
const UPDATE_VAR: &str = "SPLITSAVE_UPDATE_GENERATED";

fn pascal(snake: &str) -> String {
    snake
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_uppercase().chain(c).collect::<String>(),
                None => String::new(),
            }
        })
        .collect()
}

fn upper(snake: &str) -> String {
    snake.to_uppercase()
}

/// The nested map type's interface name (schema 1 has one: `request_data`).
fn map_name(fs: &[Field]) -> &'static str {
    assert_eq!(
        fs,
        fields::REQUEST_DATA,
        "a new nested map type: give it a name in js_schema.rs"
    );
    "RequestData"
}

/// The read type of a value of `ty` (plain JS values: strings, numbers, booleans).
fn ts_type(ty: &FieldType) -> String {
    match ty {
        FieldType::Text { .. } | FieldType::Id => "string".into(),
        FieldType::Currency => "CurrencyCode".into(),
        FieldType::Enum(v) => pascal(v.name()),
        FieldType::MinorUnits | FieldType::Time | FieldType::Counter | FieldType::Int => {
            "number".into()
        }
        FieldType::Bool => "boolean".into(),
        FieldType::PerUser(inner) => format!("Record<string, {}>", per_user_value(inner)),
        FieldType::Map(fs) => map_name(fs).into(),
    }
}

/// A per-user time (`contributions.<month>.paid.<user>`) is null until the user marks it: the
/// one nullable value inside a per-user map.
fn per_user_nullable(inner: &FieldType) -> bool {
    matches!(inner, FieldType::Time)
}

fn per_user_value(inner: &FieldType) -> String {
    if per_user_nullable(inner) {
        format!("{} | null", ts_type(inner))
    } else {
        ts_type(inner)
    }
}

fn spec(ty: &FieldType, nullable: bool, indent: usize) -> String {
    let null = if nullable { ", nullable: true" } else { "" };
    let pad = "  ".repeat(indent + 1);
    match ty {
        FieldType::Text { max } => format!("{{ kind: \"text\", max: {max}{null} }}"),
        FieldType::Id => format!("{{ kind: \"id\"{null} }}"),
        FieldType::Currency => format!("{{ kind: \"currency\"{null} }}"),
        FieldType::Enum(v) => format!("{{ kind: \"enum\", vocabulary: \"{}\"{null} }}", v.name()),
        FieldType::MinorUnits => format!("{{ kind: \"minor_units\"{null} }}"),
        FieldType::Time => format!("{{ kind: \"time\"{null} }}"),
        FieldType::Counter => format!("{{ kind: \"counter\"{null} }}"),
        FieldType::Bool => format!("{{ kind: \"bool\"{null} }}"),
        FieldType::Int => format!("{{ kind: \"int\"{null} }}"),
        FieldType::PerUser(inner) => format!(
            "{{ kind: \"per_user\", value: {}{null} }}",
            spec(inner, per_user_nullable(inner), indent)
        ),
        FieldType::Map(fs) => {
            let mut s = String::from("{\n");
            writeln!(s, "{pad}kind: \"map\",").unwrap();
            writeln!(s, "{pad}fields: {{").unwrap();
            for f in fs.iter() {
                writeln!(
                    s,
                    "{pad}  {}: {},",
                    f.name,
                    spec(&f.ty, f.nullable, indent + 2)
                )
                .unwrap();
            }
            writeln!(s, "{pad}}},").unwrap();
            if nullable {
                writeln!(s, "{pad}nullable: true,").unwrap();
            }
            write!(s, "{}}}", "  ".repeat(indent)).unwrap();
            s
        }
    }
}

/// Every currency sync-core accepts, with its exponent. The table is private to `money.rs`,
/// so it is recovered through the public parser: every three-letter upper-case code is tried.
fn currencies() -> Vec<(String, u32)> {
    let mut out: Vec<(String, u32)> = Currency::all()
        .map(|c| (c.code().to_string(), c.exponent()))
        .collect();
    out.sort();
    out
}

fn generate() -> String {
    let mut s = String::new();
    let w = &mut s;
    writeln!(
        w,
        "// GENERATED from sync-core (splitsave_sync_core::fields, enums, ids, schema, policy, money)"
    )
    .unwrap();
    writeln!(
        w,
        "// by sync-core/tests/integration/js_schema.rs. DO NOT EDIT: a hand edit fails that test."
    )
    .unwrap();
    writeln!(w, "// Regenerate from the repository root with:").unwrap();
    writeln!(
        w,
        "//   {UPDATE_VAR}=1 cargo test -p splitsave-sync-core --test integration js_schema"
    )
    .unwrap();
    writeln!(w).unwrap();
    writeln!(
        w,
        "/** The schema version this package writes and fully understands. */"
    )
    .unwrap();
    writeln!(w, "export const SCHEMA_VERSION = {SCHEMA_VERSION}").unwrap();
    writeln!(w).unwrap();
    writeln!(
        w,
        "/** UUID namespace of derived ids (v5 of the parts joined by U+001F), as `EntityId::derived`. */"
    )
    .unwrap();
    writeln!(
        w,
        "export const DERIVED_NAMESPACE = \"{}\"",
        DERIVED_NAMESPACE.hyphenated()
    )
    .unwrap();
    writeln!(w).unwrap();
    writeln!(
        w,
        "/** Limits on text fields, in characters (Unicode scalar values). */"
    )
    .unwrap();
    writeln!(w, "export const LIMITS = {{").unwrap();
    writeln!(w, "  NAME_MAX: {},", limits::NAME_MAX).unwrap();
    writeln!(w, "  MESSAGE_MAX: {},", limits::MESSAGE_MAX).unwrap();
    writeln!(w, "}} as const").unwrap();
    writeln!(w).unwrap();
    writeln!(
        w,
        "/** The default approval threshold in major units of the partnership currency. */"
    )
    .unwrap();
    writeln!(
        w,
        "export const DEFAULT_APPROVAL_THRESHOLD_MAJOR = {DEFAULT_APPROVAL_THRESHOLD_MAJOR}"
    )
    .unwrap();
    writeln!(w).unwrap();

    writeln!(w, "// Vocabularies: stored as scalar strings.").unwrap();
    writeln!(w).unwrap();
    for v in Vocabulary::ALL {
        let values = v
            .values()
            .iter()
            .map(|x| format!("\"{x}\""))
            .collect::<Vec<_>>()
            .join(", ");
        writeln!(
            w,
            "export const {}_VALUES = [{values}] as const",
            upper(v.name())
        )
        .unwrap();
        writeln!(
            w,
            "export type {} = (typeof {}_VALUES)[number]",
            pascal(v.name()),
            upper(v.name())
        )
        .unwrap();
    }
    writeln!(w).unwrap();
    writeln!(w, "/** Every vocabulary by its name. */").unwrap();
    writeln!(w, "export const VOCABULARIES = {{").unwrap();
    for v in Vocabulary::ALL {
        writeln!(w, "  {}: {}_VALUES,", v.name(), upper(v.name())).unwrap();
    }
    writeln!(w, "}} as const").unwrap();
    writeln!(w, "export type VocabularyName = keyof typeof VOCABULARIES").unwrap();
    writeln!(w).unwrap();

    writeln!(
        w,
        "/** Every ISO 4217 currency sync-core accepts, with its exponent (decimals of the minor unit). */"
    )
    .unwrap();
    writeln!(w, "export const CURRENCIES = {{").unwrap();
    for (code, exponent) in currencies() {
        writeln!(w, "  {code}: {exponent},").unwrap();
    }
    writeln!(w, "}} as const").unwrap();
    writeln!(w, "export type CurrencyCode = keyof typeof CURRENCIES").unwrap();
    writeln!(w).unwrap();

    writeln!(
        w,
        "// Entities as read: plain JS values (strings, numbers of minor units and Unix"
    )
    .unwrap();
    writeln!(w, "// milliseconds, booleans, null where nullable).").unwrap();
    writeln!(w).unwrap();
    writeln!(
        w,
        "/** `approvals.<id>.request_data`: the proposed fields, each present only when proposed. */"
    )
    .unwrap();
    writeln!(w, "export interface RequestData {{").unwrap();
    for f in fields::REQUEST_DATA {
        writeln!(w, "  {}?: {}", f.name, ts_type(&f.ty)).unwrap();
    }
    writeln!(w, "}}").unwrap();
    for (coll, iface, key, fs) in TABLES {
        writeln!(w).unwrap();
        match key {
            Some(k) => writeln!(w, "/** `{coll}.<{k}>`. */").unwrap(),
            None => writeln!(w, "/** `{coll}`. */").unwrap(),
        }
        writeln!(w, "export interface {iface} {{").unwrap();
        if let Some(k) = key {
            writeln!(w, "  {k}: string").unwrap();
        }
        for f in fs.iter() {
            let t = ts_type(&f.ty);
            if f.nullable {
                writeln!(w, "  {}: {t} | null", f.name).unwrap();
            } else {
                writeln!(w, "  {}: {t}", f.name).unwrap();
            }
        }
        writeln!(w, "}}").unwrap();
    }
    writeln!(w).unwrap();

    writeln!(
        w,
        "/** What a field holds and how it is stored (`fields::FieldType`). */"
    )
    .unwrap();
    writeln!(w, "export type FieldSpec =").unwrap();
    writeln!(
        w,
        "  | {{ kind: \"text\"; max: number; nullable?: boolean }}"
    )
    .unwrap();
    for k in [
        "id",
        "currency",
        "minor_units",
        "time",
        "counter",
        "bool",
        "int",
    ] {
        writeln!(w, "  | {{ kind: \"{k}\"; nullable?: boolean }}").unwrap();
    }
    writeln!(
        w,
        "  | {{ kind: \"enum\"; vocabulary: VocabularyName; nullable?: boolean }}"
    )
    .unwrap();
    writeln!(
        w,
        "  | {{ kind: \"per_user\"; value: FieldSpec; nullable?: boolean }}"
    )
    .unwrap();
    writeln!(
        w,
        "  | {{ kind: \"map\"; fields: Readonly<Record<string, FieldSpec>>; nullable?: boolean }}"
    )
    .unwrap();
    writeln!(w).unwrap();
    writeln!(
        w,
        "/** How a string field is stored: free text as Text, ids and enums as scalar strings. */"
    )
    .unwrap();
    writeln!(w, "export type StringKind = \"text\" | \"scalar\"").unwrap();
    writeln!(w).unwrap();
    writeln!(
        w,
        "/** The stored type of every field of every table, keyed by the table's document key. */"
    )
    .unwrap();
    writeln!(w, "export const FIELDS = {{").unwrap();
    for (coll, _, _, fs) in TABLES {
        writeln!(w, "  {coll}: {{").unwrap();
        for f in fs.iter() {
            writeln!(w, "    {}: {},", f.name, spec(&f.ty, f.nullable, 2)).unwrap();
        }
        writeln!(w, "  }},").unwrap();
    }
    writeln!(
        w,
        "}} as const satisfies Readonly<Record<string, Readonly<Record<string, FieldSpec>>>>"
    )
    .unwrap();
    writeln!(w, "export type TableName = keyof typeof FIELDS").unwrap();
    writeln!(w).unwrap();
    writeln!(
        w,
        "/** The entity collections (maps keyed by id, user id or month) and the key each entity is read with. */"
    )
    .unwrap();
    writeln!(w, "export const COLLECTION_KEYS = {{").unwrap();
    for (coll, _, key, _) in TABLES {
        if let Some(k) = key {
            writeln!(w, "  {coll}: \"{k}\",").unwrap();
        }
    }
    writeln!(w, "}} as const").unwrap();
    writeln!(
        w,
        "export type CollectionName = keyof typeof COLLECTION_KEYS"
    )
    .unwrap();
    s
}

#[test]
fn the_typescript_schema_is_generated_from_the_rust_tables() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(TARGET);
    let wanted = generate();
    if std::env::var_os(UPDATE_VAR).is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &wanted).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == wanted,
        "{} is out of date with sync-core's tables (fields, enums, ids, schema, policy, money). \
         Regenerate it from the repository root with:\n  \
         {UPDATE_VAR}=1 cargo test -p splitsave-sync-core --test integration js_schema\n\
         and commit the result.",
        path.display()
    );
}

#[test]
fn the_generated_schema_covers_every_field_and_vocabulary() {
    let ts = generate();
    for (coll, _, _, fs) in TABLES {
        for f in fs.iter() {
            assert!(
                ts.contains(&format!("    {}: {{", f.name)),
                "{coll}.{}",
                f.name
            );
        }
    }
    for v in Vocabulary::ALL {
        for value in v.values() {
            assert!(
                ts.contains(&format!("\"{value}\"")),
                "{}: {value}",
                v.name()
            );
        }
    }
    assert!(ts.contains("  USD: 2,") && ts.contains("  JPY: 0,") && ts.contains("  KWD: 3,"));
}
