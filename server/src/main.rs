//! `splitsave`: the SplitSave server binary. `splitsave serve` (the default) runs the server,
//! `splitsave migrate` applies the database migrations and exits, `splitsave vapid-keys` prints
//! a new Web Push key pair. Configuration comes from the environment and an optional `.env`
//! file (see the README's configuration table).

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use splitsave_server::app::AppState;
use splitsave_server::config::Config;
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
}

/// What the chosen command runs with.
enum Plan {
    /// Serve with the full configuration.
    Serve(Box<Config>),
    /// Migrate the database at this URL.
    Migrate(String),
}

fn init_tracing(production: bool) {
    let filter = EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal());
    if production {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init();
    } else {
        builder.init();
    }
}

/// `splitsave vapid-keys`: a new key pair as environment lines.
fn print_vapid_keys() -> ExitCode {
    let keys = splitsave_server::push::generate_vapid_keys();
    println!("VAPID_PRIVATE_KEY={}", keys.private_key);
    println!("VAPID_PUBLIC_KEY={}", keys.public_key);
    ExitCode::SUCCESS
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
    init_tracing(production);
    // `migrate` needs only the database: a deployment's migration job need not hold the JWT
    // secrets. Without DATABASE_URL it takes the configuration's default (or refuses, in
    // production, like `serve`).
    let explicit_database = std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| !u.trim().is_empty());
    let plan = match (cli.command.unwrap_or(Command::Serve), explicit_database) {
        (Command::Migrate, Some(url)) => Ok(Plan::Migrate(url)),
        (Command::Migrate, None) => Config::from_env().map(|c| Plan::Migrate(c.database_url)),
        (Command::Serve, _) => Config::from_env().map(|c| Plan::Serve(Box::new(c))),
        // Needs no configuration at all.
        (Command::VapidKeys, _) => return print_vapid_keys(),
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
