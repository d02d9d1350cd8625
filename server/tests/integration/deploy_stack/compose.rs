//! Reading `deploy/docker-compose.yml` as Compose does: YAML with anchors, merge keys
//! (`<<: *anchor`) applied, services and their environments, and Compose's `${…}`
//! interpolation.

use std::collections::{BTreeMap, BTreeSet};

use yaml_rust2::{Yaml, YamlLoader};

/// `deploy/docker-compose.yml` with YAML merge keys (`<<: *anchor`) applied, as Compose does.
pub fn compose() -> Yaml {
    let text = super::read("deploy/docker-compose.yml");
    let mut docs = YamlLoader::load_from_str(&text).expect("docker-compose.yml is YAML");
    assert_eq!(docs.len(), 1, "one document");
    merge_keys(docs.remove(0))
}

fn merge_keys(node: Yaml) -> Yaml {
    match node {
        Yaml::Array(items) => Yaml::Array(items.into_iter().map(merge_keys).collect()),
        Yaml::Hash(hash) => {
            let merge = Yaml::String("<<".into());
            let mut own = yaml_rust2::yaml::Hash::new();
            let mut inherited = Vec::new();
            for (key, value) in hash {
                let value = merge_keys(value);
                if key == merge {
                    match value {
                        Yaml::Array(parents) => inherited.extend(parents),
                        parent => inherited.push(parent),
                    }
                } else {
                    own.insert(key, value);
                }
            }
            // The mapping's own keys win, then the first parent's.
            for parent in inherited {
                let Yaml::Hash(parent) = parent else {
                    panic!("a merge key must name a mapping");
                };
                for (key, value) in parent {
                    if !own.contains_key(&key) {
                        own.insert(key, value);
                    }
                }
            }
            Yaml::Hash(own)
        }
        other => other,
    }
}

pub fn scalar(value: &Yaml) -> String {
    match value {
        Yaml::String(s) | Yaml::Real(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Boolean(b) => b.to_string(),
        Yaml::Null => String::new(),
        other => panic!("not a scalar: {other:?}"),
    }
}

pub fn strings(value: &Yaml) -> Vec<String> {
    match value {
        Yaml::Array(items) => items.iter().map(scalar).collect(),
        Yaml::BadValue => Vec::new(),
        single => vec![scalar(single)],
    }
}

/// A service's `environment`, as written (before interpolation).
pub fn environment(service: &Yaml) -> BTreeMap<String, String> {
    match &service["environment"] {
        Yaml::Hash(hash) => hash.iter().map(|(k, v)| (scalar(k), scalar(v))).collect(),
        Yaml::Array(items) => items
            .iter()
            .map(|item| {
                let item = scalar(item);
                let (k, v) = item.split_once('=').unwrap_or((&item, ""));
                (k.to_string(), v.to_string())
            })
            .collect(),
        Yaml::BadValue => BTreeMap::new(),
        other => panic!("environment is neither a mapping nor a list: {other:?}"),
    }
}

pub fn services(compose: &Yaml) -> Vec<(String, &Yaml)> {
    compose["services"]
        .as_hash()
        .expect("services")
        .iter()
        .map(|(name, service)| (scalar(name), service))
        .collect()
}

/// The services that run the SplitSave image: the ones built from the repository.
pub fn splitsave_services(compose: &Yaml) -> Vec<(String, &Yaml)> {
    services(compose)
        .into_iter()
        .filter(|(_, s)| !s["build"].is_badvalue())
        .collect()
}

/// The SplitSave services that serve (no command, or `serve`): the nodes.
pub fn nodes(compose: &Yaml) -> Vec<(String, &Yaml)> {
    splitsave_services(compose)
        .into_iter()
        .filter(|(_, s)| {
            let command = strings(&s["command"]);
            command.is_empty() || command == ["serve"]
        })
        .collect()
}

pub fn service<'a>(compose: &'a Yaml, name: &str) -> &'a Yaml {
    let found = &compose["services"][name];
    assert!(!found.is_badvalue(), "no service {name}");
    found
}

/// A service's fixed address on the stack's network.
pub fn address(service: &Yaml) -> String {
    scalar(&service["networks"]["default"]["ipv4_address"])
}

/// What an interpolation left to the environment: the variables it read, and those it refuses
/// to run without (`${NAME:?message}`).
#[derive(Default)]
pub struct Interpolated {
    /// Every variable read.
    pub read: BTreeSet<String>,
    /// The variables written `${NAME:?message}` or `${NAME?message}`.
    pub required: BTreeSet<String>,
}

/// Compose's interpolation of `text` (`$$`, `${NAME}`, `${NAME:-default}`, `${NAME-default}`,
/// `${NAME:?message}`, `${NAME?message}`) from `values`.
pub fn interpolate(
    text: &str,
    values: &BTreeMap<String, String>,
    seen: &mut Interpolated,
) -> Result<String, String> {
    let mut out = String::new();
    let mut missing = None;
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
            continue;
        }
        let Some(body) = rest.strip_prefix('{') else {
            panic!("write ${{NAME}}, not $NAME: {text}");
        };
        let end = body.find('}').expect("an unclosed ${");
        let expression = &body[..end];
        rest = &body[end + 1..];
        let name_end = expression
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(expression.len());
        let (name, operator) = expression.split_at(name_end);
        seen.read.insert(name.to_string());
        let value = values.get(name);
        let blank = value.is_none_or(|v| v.is_empty());
        let resolved = match operator {
            "" => value.cloned().unwrap_or_default(),
            o if o.starts_with(":-") => match blank {
                true => o[2..].to_string(),
                false => value.cloned().unwrap_or_default(),
            },
            o if o.starts_with('-') => value.cloned().unwrap_or_else(|| o[1..].to_string()),
            o if o.starts_with(":?") || o.starts_with('?') => {
                seen.required.insert(name.to_string());
                let absent = if o.starts_with(':') {
                    blank
                } else {
                    value.is_none()
                };
                if absent {
                    missing.get_or_insert(format!("{name}: {}", o.trim_start_matches([':', '?'])));
                }
                value.cloned().unwrap_or_default()
            }
            other => panic!("interpolation {other:?} is not one this test knows: {text}"),
        };
        out.push_str(&resolved);
    }
    out.push_str(rest);
    match missing {
        None => Ok(out),
        Some(missing) => Err(missing),
    }
}
