//! The container image and the compose stack (`Dockerfile`, `deploy/`, `.env.example`), checked
//! without a container engine, which CI does not have: the stack gives the server only
//! variables its configuration reads and every one production requires, in values the
//! configuration accepts; `.env.example` names every variable the server reads; nginx in the
//! stack is the tested `deploy/nginx.conf` pointed at the stack's nodes; the Dockerfile's steps
//! are the ones CI runs; and the image's health check tells a ready server from none.
//!
//! The variables the server reads are found by asking it: [`Config::from_lookup`] is run with
//! a lookup that records every name it is asked for, so a variable added to the configuration
//! is expected in the stack and in `.env.example` without anyone listing it here.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use splitsave_server::config::{Config, ConfigError};
use yaml_rust2::Yaml;

use crate::common::Backend;
use crate::real_server::{free_port, RealServer};

mod compose;

use compose::{
    address, compose, environment, interpolate, nodes, service, services, splitsave_services,
    strings, Interpolated,
};

/// Variables the binary reads outside `Config` (so `from_lookup` never asks for them): the log
/// filter, read by `main.rs` when it sets up logging.
const OUTSIDE_CONFIG: &[&str] = &["RUST_LOG"];

const BINARY: &str = env!("CARGO_BIN_EXE_splitsave");

/// A file of the repository.
fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

// ---- What the server reads ---------------------------------------------------------------

/// Every variable `Config::from_lookup` asks for when given `base` with each optional feature
/// switched on (FCM, Web Push, metrics, OTLP export), since a feature's own variables are read only when it
/// is on. A variable read only behind another switch needs that switch turned on here.
fn variables_config_reads(base: &BTreeMap<String, String>) -> BTreeSet<String> {
    let dir = tempfile::tempdir().expect("temp dir");
    let account = dir.path().join("service-account.json");
    let service_account = serde_json::json!({
        "type": "service_account",
        "project_id": "splitsave-deploy-test",
        "private_key_id": "test-only",
        "private_key": crate::push_standins::test_only_key::TEST_ONLY_PRIVATE_KEY_PEM,
        "client_email": "push@splitsave-deploy-test.iam.gserviceaccount.com",
        "token_uri": "https://oauth2.googleapis.com/token",
    });
    std::fs::write(&account, service_account.to_string()).expect("write the service account");
    let vapid = splitsave_server::push::generate_vapid_keys();
    let mut values = base.clone();
    for (name, value) in [
        ("FCM_SERVICE_ACCOUNT_FILE", account.display().to_string()),
        ("VAPID_PRIVATE_KEY", vapid.private_key),
        ("VAPID_PUBLIC_KEY", vapid.public_key),
        ("VAPID_SUBJECT", "mailto:ops@example.com".to_string()),
        ("METRICS_ADDR", "127.0.0.1:0".to_string()),
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://127.0.0.1:4318".to_string(),
        ),
    ] {
        values.insert(name.to_string(), value);
    }
    let asked = RefCell::new(BTreeSet::new());
    let config = Config::from_lookup(|name| {
        asked.borrow_mut().insert(name.to_string());
        values.get(name).cloned()
    });
    if let Err(err) = config {
        panic!("the stack's environment with every feature on is refused: {err}");
    }
    let asked = asked.into_inner();
    for name in [
        "DATABASE_URL",
        "JWT_SECRET",
        "FCM_TOKEN_URI",
        "VAPID_SUBJECT",
    ] {
        assert!(
            asked.contains(name),
            "recording the lookups missed {name}: {asked:?}"
        );
    }
    asked
}

/// The variables a node may be given: those `Config` reads and [`OUTSIDE_CONFIG`].
fn known_variables(config_reads: &BTreeSet<String>) -> BTreeSet<String> {
    let main = read("server/src/main.rs");
    let mut known = config_reads.clone();
    for name in OUTSIDE_CONFIG {
        assert!(
            main.contains(&format!("\"{name}\"")),
            "main.rs no longer reads {name}: drop it from OUTSIDE_CONFIG"
        );
        known.insert(name.to_string());
    }
    known
}

// ---- .env.example ----------------------------------------------------------------------

/// `.env.example`'s variables in order: a `NAME=value` line gives its value, a commented
/// `# NAME=default` line names the variable and keeps the default (`None`).
fn env_example() -> Vec<(String, Option<String>)> {
    let mut named = Vec::new();
    for line in read(".env.example").lines() {
        let (commented, rest) = match line.strip_prefix('#') {
            Some(rest) => (true, rest.trim_start()),
            None => (false, line.trim()),
        };
        let Some((name, value)) = rest.split_once('=') else {
            continue;
        };
        let is_name = !name.is_empty()
            && name.starts_with(|c: char| c.is_ascii_uppercase())
            && name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if is_name {
            named.push((name.to_string(), (!commented).then(|| value.to_string())));
        }
    }
    named
}

/// The values an operator's `.env` holds: `.env.example`'s, with every blank variable the
/// compose file refuses to run without filled in as its comments say (a random hex secret).
fn operator_env(compose: &Yaml) -> BTreeMap<String, String> {
    let mut values: BTreeMap<String, String> = env_example()
        .into_iter()
        .filter_map(|(name, value)| value.map(|v| (name, v)))
        .collect();
    let mut seen = Interpolated::default();
    for (_, service) in services(compose) {
        for value in environment(service).values() {
            let _ = interpolate(value, &BTreeMap::new(), &mut seen);
        }
    }
    for name in seen.required {
        let value = values.entry(name).or_default();
        if value.is_empty() {
            *value = hex::encode(rand::random::<[u8; 32]>());
        }
    }
    values
}

/// A service's environment after interpolation from `values`.
fn resolved_environment(
    service: &Yaml,
    values: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    environment(service)
        .into_iter()
        .map(|(name, raw)| {
            let value = interpolate(&raw, values, &mut Interpolated::default())
                .unwrap_or_else(|missing| panic!("compose refuses to start: {missing}"));
            (name, value)
        })
        .collect()
}

/// Every variable the compose file interpolates, anywhere in it.
fn compose_interpolates() -> BTreeSet<String> {
    let text = read("deploy/docker-compose.yml");
    let mut seen = Interpolated::default();
    for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
        let _ = interpolate(line, &BTreeMap::new(), &mut seen);
    }
    seen.read
}

// ---- The tests ----------------------------------------------------------------------------

#[test]
fn env_example_names_every_variable_the_server_reads_and_nothing_else() {
    let compose = compose();
    let (_, node) = nodes(&compose).into_iter().next().expect("a node");
    let config_reads = variables_config_reads(&resolved_environment(node, &operator_env(&compose)));
    let known = known_variables(&config_reads);
    let example = env_example();
    let named: BTreeSet<String> = example.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(named.len(), example.len(), "a variable is named twice");

    let missing: Vec<_> = known.difference(&named).collect();
    assert!(
        missing.is_empty(),
        ".env.example does not name {missing:?}, which the server reads"
    );
    // The rest are the stack's own: the compose file reads them, the server does not.
    let stack_reads = compose_interpolates();
    let unknown: Vec<_> = named
        .difference(&known)
        .filter(|name| !stack_reads.contains(*name))
        .collect();
    assert!(
        unknown.is_empty(),
        ".env.example names {unknown:?}, read by neither the server nor the compose file"
    );
    let undocumented: Vec<_> = stack_reads.difference(&named).collect();
    assert!(
        undocumented.is_empty(),
        "the compose file reads {undocumented:?} from .env, which .env.example does not name"
    );
}

#[test]
fn compose_gives_the_nodes_every_variable_the_server_reads_and_no_other() {
    let compose = compose();
    let values = operator_env(&compose);
    let nodes = nodes(&compose);
    assert!(nodes.len() >= 2, "the stack runs several nodes");
    let config_reads = variables_config_reads(&resolved_environment(nodes[0].1, &values));
    let known = known_variables(&config_reads);
    for (name, service) in splitsave_services(&compose) {
        let keys: BTreeSet<String> = environment(service).into_keys().collect();
        let unknown: Vec<_> = keys.difference(&known).collect();
        assert!(
            unknown.is_empty(),
            "{name} is given {unknown:?}, which the server does not read"
        );
    }
    let first = environment(nodes[0].1);
    for (name, service) in &nodes {
        let keys: BTreeSet<String> = environment(service).into_keys().collect();
        // So that whatever an operator sets in .env reaches the server.
        let not_passed: Vec<_> = known.difference(&keys).collect();
        assert!(
            not_passed.is_empty(),
            "{name} is not given {not_passed:?}: a value in .env would not reach it"
        );
        // One configuration for all: a token one node issues must be good on the others.
        assert_eq!(
            environment(service),
            first,
            "{name} differs from {}",
            nodes[0].0
        );
    }
}

#[test]
fn compose_nodes_start_in_production_with_what_env_example_and_its_secrets_give() {
    let compose = compose();
    let values = operator_env(&compose);
    let (node_name, node) = nodes(&compose).into_iter().next().expect("a node");
    let env = resolved_environment(node, &values);
    let config = Config::from_lookup(|name| env.get(name).cloned())
        .unwrap_or_else(|e| panic!("{node_name}'s environment is refused: {e}"));
    assert!(config.is_production(), "the stack runs in production");
    assert!(config.uses_postgres(), "several nodes need PostgreSQL");
    assert!(config.redis_url.is_some(), "the nodes share Redis");
    assert!(
        !config.trusted_proxies.is_empty(),
        "the nodes believe nginx's X-Forwarded-For"
    );

    // What production refuses to start without, found by leaving each variable out in turn.
    let required: Vec<String> = env
        .keys()
        .filter(|left_out| {
            let without = |name: &str| match name == left_out.as_str() {
                true => None,
                false => env.get(name).cloned(),
            };
            matches!(
                Config::from_lookup(without),
                Err(ConfigError::MissingInProduction(missing)) if missing == left_out.as_str()
            )
        })
        .cloned()
        .collect();
    assert!(
        required.contains(&"DATABASE_URL".to_string()),
        "production requires a database: {required:?}"
    );
    let raw = environment(node);
    for name in &required {
        let written = &raw[name];
        let mut seen = Interpolated::default();
        let _ = interpolate(written, &BTreeMap::new(), &mut seen);
        // Fixed by the stack, or refused by Compose before anything starts when .env lacks it
        // (rather than nodes that start and stop again).
        let fixed_or_refused = seen.read.iter().all(|v| seen.required.contains(v));
        assert!(
            fixed_or_refused,
            "{name} = {written}: production requires it, so write ${{NAME:?message}}"
        );
    }

    // The migration job reaches the same database, in production, with nothing it need not hold.
    let migrate = splitsave_services(&compose)
        .into_iter()
        .find(|(_, s)| strings(&s["command"]) == ["migrate"])
        .map(|(_, s)| s)
        .expect("a service that runs `splitsave migrate`");
    let migrate_env = resolved_environment(migrate, &values);
    assert_eq!(migrate_env.get("DATABASE_URL"), env.get("DATABASE_URL"));
    assert_eq!(
        migrate_env.get("SPLITSAVE_ENV").map(String::as_str),
        Some("production")
    );
    assert!(
        !migrate_env.contains_key("JWT_SECRET"),
        "the migration needs no secret"
    );
    for (name, service) in nodes(&compose) {
        let condition = &service["depends_on"]["migrate"]["condition"];
        assert_eq!(
            condition.as_str(),
            Some("service_completed_successfully"),
            "{name} starts after the migration"
        );
    }
}

#[test]
fn stack_nginx_runs_the_tested_config_pointed_at_the_stack_nodes() {
    let compose = compose();
    let nginx = service(&compose, "nginx");
    let mounts = strings(&nginx["volumes"]);
    for mount in [
        "./nginx.conf:/etc/splitsave/nginx.conf",
        "./nginx-start.sh:",
    ] {
        assert!(
            mounts.iter().any(|m| m.starts_with(mount)),
            "nginx mounts {mount}: {mounts:?}"
        );
    }
    assert!(strings(&nginx["command"])
        .join(" ")
        .contains("nginx-start.sh"));

    // Every node behind nginx, at its address and port, and nothing else.
    let values = operator_env(&compose);
    let upstreams = environment(nginx)["SPLITSAVE_UPSTREAMS"].clone();
    let targets: BTreeSet<String> = upstreams
        .split_whitespace()
        .map(|pair| pair.split_once('=').expect("from=to").1.to_string())
        .collect();
    let node_addresses: BTreeSet<String> = nodes(&compose)
        .iter()
        .map(|(_, node)| {
            let port = &resolved_environment(node, &values)["PORT"];
            format!("{}:{port}", address(node))
        })
        .collect();
    assert_eq!(targets, node_addresses, "nginx's upstreams are the nodes");

    // The nodes trust exactly nginx.
    for (name, node) in nodes(&compose) {
        assert_eq!(
            resolved_environment(node, &values)["TRUSTED_PROXIES"],
            address(nginx),
            "{name} trusts nginx's X-Forwarded-For"
        );
    }

    // The rendered configuration: the shipped one with only the upstream addresses replaced.
    let rendered = Command::new("sh")
        .arg(repo("deploy/nginx-start.sh"))
        .args(["render", &repo("deploy/nginx.conf").display().to_string()])
        .env("SPLITSAVE_UPSTREAMS", &upstreams)
        .output()
        .expect("run nginx-start.sh");
    let stderr = String::from_utf8_lossy(&rendered.stderr);
    assert!(rendered.status.success(), "render failed: {stderr}");
    let rendered = String::from_utf8(rendered.stdout).expect("text");
    let shipped = read("deploy/nginx.conf");
    // `server ADDRESS ...;` lines (not `server {`).
    let is_upstream = |line: &str| line.trim().starts_with("server ") && line.ends_with(';');
    let servers = |conf: &str| -> Vec<String> {
        conf.lines()
            .filter(|l| is_upstream(l))
            .filter_map(|l| l.split_whitespace().nth(1).map(str::to_owned))
            .collect()
    };
    assert_eq!(
        servers(&rendered).into_iter().collect::<BTreeSet<_>>(),
        targets
    );
    let others = |conf: &str| -> Vec<String> {
        conf.lines()
            .filter(|l| !is_upstream(l))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(others(&rendered), others(&shipped), "only upstreams change");

    // The published port is the one nginx listens on.
    let listen = shipped
        .lines()
        .find_map(|l| l.trim().strip_prefix("listen "))
        .map(|l| l.trim_end_matches(';').to_string())
        .expect("a listen line");
    let published = strings(&nginx["ports"]);
    assert!(
        published.iter().any(|p| p.ends_with(&format!(":{listen}"))),
        "nginx publishes its listen port {listen}: {published:?}"
    );

    // And nginx takes it (where nginx is installed; .ci/run installs it).
    let Some(binary) = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| Path::new(p).exists())
    else {
        eprintln!("skipped nginx -t: nginx is not installed (.ci/run installs it)");
        return;
    };
    let prefix = tempfile::tempdir().expect("nginx prefix");
    for dir in ["logs", "tmp"] {
        std::fs::create_dir_all(prefix.path().join(dir)).expect("nginx dirs");
    }
    let conf = prefix.path().join("nginx.conf");
    std::fs::write(&conf, &rendered).expect("write nginx.conf");
    let test = Command::new(binary)
        .arg("-t")
        .arg("-p")
        .arg(format!("{}/", prefix.path().display()))
        .arg("-c")
        .arg(&conf)
        .output()
        .expect("run nginx -t");
    assert!(
        test.status.success(),
        "nginx -t: {}",
        String::from_utf8_lossy(&test.stderr)
    );
}

#[test]
fn image_runs_as_non_root_with_a_health_check_and_the_build_steps_ci_runs() {
    let dockerfile = read("Dockerfile");
    let compose = compose();
    let (_, node) = nodes(&compose).into_iter().next().expect("a node");
    let known = known_variables(&variables_config_reads(&resolved_environment(
        node,
        &operator_env(&compose),
    )));
    // Dockerfile instructions, continuation lines joined.
    let instructions: Vec<String> = dockerfile
        .replace("\\\n", " ")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    let runtime_stage = instructions
        .iter()
        .rposition(|l| l.starts_with("FROM "))
        .expect("a FROM");
    let runtime = &instructions[runtime_stage..];

    for line in runtime.iter().filter(|l| l.starts_with("ENV ")) {
        for assignment in line["ENV ".len()..].split_whitespace() {
            let name = assignment.split_once('=').expect("ENV NAME=value").0;
            assert!(
                known.contains(name),
                "the image sets {name}, unknown to the server"
            );
        }
    }
    let user = runtime
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("the runtime stage names its user");
    assert!(
        !matches!(user.split(':').next(), Some("root" | "0")),
        "the image runs as {user}"
    );
    let healthcheck = runtime
        .iter()
        .find(|l| l.starts_with("HEALTHCHECK "))
        .expect("a HEALTHCHECK");
    assert!(healthcheck.contains("\"healthcheck\""), "{healthcheck}");

    // Every build step is the script, with the subcommands .ci/run runs too.
    let ci = read(".ci/run");
    let steps: Vec<&String> = instructions
        .iter()
        .filter(|l| l.starts_with("RUN "))
        .collect();
    assert!(!steps.is_empty(), "the image has build steps");
    for step in steps {
        let call = step
            .split_whitespace()
            .skip_while(|w| *w != "deploy/image-build.sh")
            .nth(1)
            .unwrap_or_else(|| panic!("a build step outside deploy/image-build.sh: {step}"));
        assert!(
            ci.contains(&format!("deploy/image-build.sh {call} ")),
            "CI does not run `image-build.sh {call}`, which the Dockerfile runs"
        );
    }
}

#[tokio::test]
async fn healthcheck_command_tells_a_ready_server_from_none() {
    let probe = |port: u16| {
        let dir = tempfile::tempdir().expect("temp dir");
        Command::new(BINARY)
            .arg("healthcheck")
            .env_clear()
            .current_dir(dir.path())
            .env("PORT", port.to_string())
            .output()
            .expect("run splitsave healthcheck")
    };
    let nobody = free_port();
    let output = probe(nobody);
    assert!(!output.status.success(), "healthy with nothing listening");
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.contains(&format!("127.0.0.1:{nobody}")), "{said}");

    let server = RealServer::start(Backend::Sqlite, &[])
        .await
        .expect("SQLite needs nothing");
    let output = probe(server.port);
    assert!(
        output.status.success(),
        "a ready server is unhealthy: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
