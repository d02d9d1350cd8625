//! `splitsave`: the SplitSave server binary. `splitsave serve` (the default) runs the server,
//! `splitsave migrate` applies the database migrations and exits, `splitsave vapid-keys` prints
//! a new Web Push key pair; `splitsave check` and `splitsave rebuild-rows` verify and repair the
//! rows derived from the documents (`docs/operations.md`); `splitsave healthcheck` asks a server
//! on this machine whether it is ready (the container image's probe, `docs/deploy.md`).
//! Configuration comes from the environment and an optional `.env` file (see the README's
//! configuration table).

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use splitsave_server::admin::{self, Task};
use splitsave_server::app::AppState;
use splitsave_server::config::Config;
use splitsave_server::telemetry::{Otlp, OtlpSettings};
use tracing_subscriber::EnvFilter;

/// jemalloc: with Automerge's many small allocations it keeps a hot 200-item document in
/// about 138 KiB of resident memory where glibc's malloc took 177-227 KiB (and mimalloc more),
/// with the same or slightly better throughput (README, "Sync load generator").
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read before `main`: one arena. The default (four per core) spreads a
/// document's allocations over arenas that each keep partly used pages; with one, an idle
/// connection costs 15.6 KiB instead of 16.2 and throughput is unchanged on two cores.
/// `_RJEM_MALLOC_CONF` in the environment still overrides it.
#[cfg(not(target_env = "msvc"))]
#[export_name = "_rjem_malloc_conf"]
static MALLOC_CONF: Option<&'static u8> = Some(&b"narenas:1\0"[0]);

/// SplitSave: an offline-first sync server for couples' shared money.
#[derive(Debug, Parser)]
#[command(name = "splitsave", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (the default): apply migrations, then serve HTTP on PORT.
    Serve,
    /// Apply the database migrations and exit.
    Migrate,
    /// Print a new VAPID key pair for Web Push (VAPID_PRIVATE_KEY and VAPID_PUBLIC_KEY lines,
    /// ready for the environment or .env) and exit.
    VapidKeys,
    /// Check the database: every stored document loads, its rows equal what materializing it
    /// writes, every change's author is bound. Prints each problem; exits 0 when clean, 1 when
    /// something is wrong, 2 when it cannot run.
    Check(AdminArgs),
    /// Rewrite the rows that differ from their partnership's document (one transaction per
    /// partnership; safe while servers run). Exits 0 when done, 1 when a partnership could not
    /// be rebuilt, 2 when it cannot run.
    RebuildRows(AdminArgs),
    /// Write every partnership's history entries again from its document (one transaction per
    /// partnership; safe while servers run). Exits 0 when done, 1 when a partnership could not
    /// be rebuilt, 2 when it cannot run.
    RebuildHistory(AdminArgs),
    /// Ask the server on this machine (127.0.0.1:PORT) whether it is ready (`/readyz`): exits 0
    /// when it answers 200, 1 otherwise. The container image's HEALTHCHECK, which has no curl.
    Healthcheck,
}

/// The options of `check`, `rebuild-rows` and `rebuild-history`.
#[derive(Debug, clap::Args)]
struct AdminArgs {
    /// Only this partnership (its id); every partnership otherwise.
    #[arg(long, value_name = "UUID")]
    partnership: Option<uuid::Uuid>,
}

/// What the chosen command runs with.
enum Plan {
    /// Serve with the full configuration.
    Serve(Box<Config>),
    /// Migrate the database at this URL.
    Migrate(String),
}

/// Logs to `stream`: stdout for the server, stderr for the commands whose report is stdout;
/// with `otlp`, spans are exported too (the returned exporter is flushed at exit).
fn init_tracing<S>(production: bool, stream: fn() -> S, otlp: Option<&OtlpSettings>) -> Option<Otlp>
where
    S: std::io::Write + IsTerminal + 'static,
{
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::Layer as _;

    let filter = EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"));
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(stream().is_terminal())
        .with_writer(stream);
    let fmt = if production {
        fmt.json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .boxed()
    } else {
        fmt.boxed()
    };
    let (exporter, export) = match otlp.map(Otlp::start) {
        Some(Ok((exporter, layer))) => (Some(exporter), Some(layer)),
        Some(Err(err)) => {
            eprintln!("splitsave: traces will not be exported: {err}");
            (None, None)
        }
        None => (None, None),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(export)
        .init();
    exporter
}

/// `splitsave vapid-keys`: a new key pair as environment lines.
fn print_vapid_keys() -> ExitCode {
    let keys = splitsave_server::push::generate_vapid_keys();
    println!("VAPID_PRIVATE_KEY={}", keys.private_key);
    println!("VAPID_PUBLIC_KEY={}", keys.public_key);
    ExitCode::SUCCESS
}

/// `splitsave healthcheck`. It reads `PORT` alone rather than the whole configuration: that
/// would need the secrets in production and write generated ones in development, for a probe
/// that runs every few seconds. A raw HTTP/1.1 request on a std socket keeps it free of a
/// runtime; the probe gives up after three seconds (Docker's timeout is longer).
fn healthcheck() -> ExitCode {
    use std::io::{BufRead, BufReader, Write};
    const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);
    let port = std::env::var("PORT")
        .ok()
        .filter(|p| !p.trim().is_empty())
        .unwrap_or_else(|| "3000".into());
    let Ok(port) = port.trim().parse::<u16>() else {
        eprintln!("splitsave: PORT is not a port number: {port:?}");
        return ExitCode::FAILURE;
    };
    let probe = || -> std::io::Result<String> {
        let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let mut stream = std::net::TcpStream::connect_timeout(&address, TIMEOUT)?;
        stream.set_read_timeout(Some(TIMEOUT))?;
        stream.set_write_timeout(Some(TIMEOUT))?;
        write!(
            stream,
            "GET /readyz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
        )?;
        let mut status_line = String::new();
        BufReader::new(stream).read_line(&mut status_line)?;
        Ok(status_line)
    };
    match probe() {
        Ok(line) if line.split_whitespace().nth(1) == Some("200") => ExitCode::SUCCESS,
        Ok(line) => {
            eprintln!("splitsave: not ready: {}", line.trim_end());
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("splitsave: no answer on 127.0.0.1:{port}: {err}");
            ExitCode::FAILURE
        }
    }
}

/// `splitsave check` and `rebuild-rows` on the database `migrate` would use; every failure to
/// start is exit code 2, as the admin module documents.
fn run_admin(task: Task, args: &AdminArgs, explicit_database: Option<String>) -> ExitCode {
    let database_url = match explicit_database {
        Some(url) => url,
        None => match Config::from_env() {
            Ok(config) => config.database_url,
            Err(err) => {
                eprintln!("splitsave: invalid configuration: {err}");
                return ExitCode::from(admin::EXIT_CANNOT_RUN);
            }
        },
    };
    match tokio::runtime::Runtime::new() {
        Ok(runtime) => {
            ExitCode::from(runtime.block_on(admin::run(task, &database_url, args.partnership)))
        }
        Err(err) => {
            eprintln!("splitsave: cannot start the runtime: {err}");
            ExitCode::from(admin::EXIT_CANNOT_RUN)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A missing .env is normal; a malformed one is worth saying (before logging is set up).
    if let Err(err) = dotenvy::dotenv() {
        if !err.not_found() {
            eprintln!("splitsave: cannot read .env: {err}");
            return ExitCode::FAILURE;
        }
    }
    let production =
        std::env::var("SPLITSAVE_ENV").is_ok_and(|v| v.trim().eq_ignore_ascii_case("production"));
    let command = cli.command.unwrap_or(Command::Serve);
    // Read before logging starts (Config logs while it reads), with the function Config uses.
    let otlp = match OtlpSettings::from_lookup(&|name| std::env::var(name).ok()) {
        Ok(otlp) => otlp,
        Err(err) => {
            eprintln!("splitsave: invalid configuration: {err}");
            return ExitCode::FAILURE;
        }
    };
    let exporter = if matches!(
        command,
        Command::Check(_) | Command::RebuildRows(_) | Command::RebuildHistory(_)
    ) {
        init_tracing(production, std::io::stderr, None)
    } else {
        init_tracing(production, std::io::stdout, otlp.as_ref())
    };
    let code = run(command);
    if let Some(exporter) = exporter {
        exporter.shutdown();
    }
    code
}

/// Runs the chosen command once logging is set up.
fn run(command: Command) -> ExitCode {
    // `migrate` needs only the database: a deployment's migration job need not hold the JWT
    // secrets. Without DATABASE_URL it takes the configuration's default (or refuses, in
    // production, like `serve`).
    let explicit_database = std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| !u.trim().is_empty());
    let plan = match (command, explicit_database) {
        (Command::Migrate, Some(url)) => Ok(Plan::Migrate(url)),
        (Command::Migrate, None) => Config::from_env().map(|c| Plan::Migrate(c.database_url)),
        (Command::Serve, _) => Config::from_env().map(|c| Plan::Serve(Box::new(c))),
        // Needs no configuration at all.
        (Command::VapidKeys, _) => return print_vapid_keys(),
        (Command::Healthcheck, _) => return healthcheck(),
        (Command::Check(args), url) => return run_admin(Task::Check, &args, url),
        (Command::RebuildRows(args), url) => return run_admin(Task::RebuildRows, &args, url),
        (Command::RebuildHistory(args), url) => return run_admin(Task::RebuildHistory, &args, url),
    };
    let plan = match plan {
        Ok(plan) => plan,
        Err(err) => {
            tracing::error!(error = %err, "invalid configuration");
            eprintln!("splitsave: invalid configuration: {err}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("splitsave: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match plan {
            Plan::Migrate(database_url) => {
                splitsave_server::store::migrate(&database_url)
                    .await
                    .map_err(|e| e.to_string())?;
                tracing::info!("migrations applied");
                Ok(())
            }
            Plan::Serve(config) => {
                let state = AppState::from_config(*config)
                    .await
                    .map_err(|e| e.to_string())?;
                splitsave_server::serve(state)
                    .await
                    .map_err(|e| format!("server: {e}"))
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "stopped");
            eprintln!("splitsave: {err}");
            ExitCode::FAILURE
        }
    }
}
