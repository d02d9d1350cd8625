//! The server's configuration: read once from the environment (and `.env`) at start-up into one
//! typed struct, with development defaults and hard failures for missing production secrets.
//!
//! Every variable is listed in the README's configuration table.

use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::ratelimit::TrustedProxies;
use crate::sync::SyncLimits;

use rand::RngCore;

/// Which kind of deployment this is: it decides the log format and whether missing secrets are
/// generated (development) or refused (production).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Environment {
    /// A developer's machine: generated secrets, SQLite by default, human-readable logs.
    Development,
    /// A real deployment: secrets and database are required, logs are JSON lines.
    Production,
}

/// Argon2id cost parameters for password hashing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Argon2Params {
    /// Memory cost in KiB (OWASP minimum: 19456, i.e. 19 MiB).
    pub memory_kib: u32,
    /// Number of passes (OWASP minimum with 19 MiB: 2).
    pub iterations: u32,
    /// Degree of parallelism (OWASP: 1).
    pub parallelism: u32,
}

impl Argon2Params {
    /// OWASP's recommended minimum for argon2id, the production default.
    pub const OWASP: Argon2Params = Argon2Params {
        memory_kib: 19456,
        iterations: 2,
        parallelism: 1,
    };
}

/// The whole configuration of one server process. Its `Debug` never shows a secret: the JWT
/// keys print as `<redacted>`, and the passwords of the database, Redis and SMTP URLs as `***`.
#[derive(Clone)]
pub struct Config {
    /// `SPLITSAVE_ENV`: `development` (default) or `production`.
    pub env: Environment,
    /// `PORT`, default 3000.
    pub port: u16,
    /// `SPLITSAVE_DATA_DIR`, default `./data`: the SQLite file and development secrets live here.
    pub data_dir: PathBuf,
    /// `DATABASE_URL`; default `sqlite://<data_dir>/splitsave.db` (created on first start).
    pub database_url: String,
    /// `REDIS_URL`, optional: several nodes sharing a PostgreSQL database tell each other what
    /// they committed over it (without it they poll the database; see `docs/operations.md`).
    pub redis_url: Option<String>,
    /// `REDIS_PREFIX`, default `splitsave:`: the prefix of every Redis key and channel, so
    /// several deployments (or test runs) can share one Redis.
    pub redis_prefix: String,
    /// `JWT_SECRET`: HMAC key of access tokens.
    pub jwt_secret: String,
    /// `JWT_REFRESH_SECRET`: HMAC key (pepper) for refresh and reset token hashes.
    pub jwt_refresh_secret: String,
    /// `CORS_ORIGIN`, comma-separated origins allowed to call the API from a browser.
    /// Development default `http://localhost:3000`; production default: none.
    pub cors_origins: Vec<String>,
    /// `API_RATE_LIMIT`: requests per 15 minutes per client IP, default 1000.
    pub api_rate_limit: u32,
    /// `LOGIN_RATE_LIMIT`: failed logins per minute per account and IP before 429, default 5.
    pub login_max_failures_per_minute: u32,
    /// `EXPORT_RATE_LIMIT`: data exports (`GET /api/export`) a user may start per hour, default 5.
    pub export_rate_limit: u32,
    /// `IMPORT_RATE_LIMIT`: data imports (`POST /api/import`) a user may attempt per hour,
    /// default 10.
    pub import_rate_limit: u32,
    /// `TRUSTED_PROXIES`: comma-separated addresses and CIDR blocks of the reverse proxies whose
    /// `X-Forwarded-For` names the client (for the rate limits); default none, which ignores
    /// the header.
    pub trusted_proxies: TrustedProxies,
    /// `SMTP_URL` (e.g. `smtp://user:pass@host:587`); unset means mails are written to the log.
    pub smtp_url: Option<String>,
    /// `MAIL_FROM`, default `SplitSave <no-reply@splitsave.local>`.
    pub mail_from: String,
    /// `PUBLIC_URL`, the base of links in mails, default `http://localhost:<port>`.
    pub public_url: String,
    /// `ARGON2_MEMORY_KIB` / `ARGON2_ITERATIONS`; never below OWASP's minimum outside tests.
    pub argon2: Argon2Params,
    /// `HASH_CONCURRENCY`: password hashes computed at once, default 2, so a login flood
    /// cannot take every core away from sync traffic.
    pub max_concurrent_hashes: usize,
    /// `BODY_LIMIT_BYTES`: largest accepted request body, default 256 KiB.
    pub body_limit_bytes: usize,
    /// `IMPORT_BODY_LIMIT_BYTES`: largest body of `POST /api/import` (a whole JSON export),
    /// default 64 MiB; every other route keeps `BODY_LIMIT_BYTES`.
    pub import_body_limit_bytes: usize,
    /// `REQUEST_TIMEOUT_SECS`: longest a REST request may take, default 30 s.
    pub request_timeout: Duration,
    /// `IMPORT_TIMEOUT_SECS`: longest `POST /api/import` may take, default 300 s (writing a
    /// 20,000-entry couple's export is seconds of document work, more on a busy node).
    pub import_timeout: Duration,
    /// Limits and timings of `/sync`: `SYNC_MAX_MESSAGE_BYTES` (default 8 MiB),
    /// `SYNC_MAX_MESSAGE_CHANGES` (100,000 changes per message), `SYNC_MAX_MESSAGE_OPS`
    /// (1,000,000 operations per message), `SYNC_MAX_CHANGES` (5,000 changes per merge: a
    /// larger backlog is taken in several), `SYNC_MAX_OPS` (100,000 operations per merge),
    /// `SYNC_MAX_VALUE_BYTES` (16 KiB per value), `SYNC_MESSAGES_PER_SECOND` (50, bursts of 100), `SYNC_IDLE_EVICTION_SECS` (120),
    /// `SYNC_COMPACT_AFTER` (500 changes), `SYNC_REVALIDATE_SECS` (15).
    pub sync: SyncLimits,
    /// Push notifications (docs/push.md): `FCM_SERVICE_ACCOUNT_FILE`, `FCM_ENDPOINT`,
    /// `FCM_TOKEN_URI`, `VAPID_PRIVATE_KEY`, `VAPID_PUBLIC_KEY`, `VAPID_SUBJECT`. With neither
    /// FCM nor Web Push configured, no notification is derived or queued.
    pub push: crate::push::PushConfig,
    /// `PUSH_GIVE_UP_AFTER_SECS`: how long a queued notification is still worth sending,
    /// default one day.
    pub push_give_up_after: Duration,
    /// `METRICS_ADDR`, unset by default (metrics off): where the Prometheus metrics are served,
    /// an IP address and a port (`127.0.0.1:9100`; port 0 takes a free one). An address other
    /// machines can reach is refused unless `METRICS_ALLOW_REMOTE=true` says it is meant: the
    /// figures must never become public by accident (docs/observability.md).
    pub metrics_addr: Option<SocketAddr>,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` and `OTEL_SERVICE_NAME`: where spans are exported over
    /// OTLP/HTTP, unset by default (no export, no cost). The binary reads these before logging
    /// starts, with the same function (docs/observability.md).
    pub otlp: Option<crate::telemetry::OtlpSettings>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const REDACTED: &str = "<redacted>";
        f.debug_struct("Config")
            .field("env", &self.env)
            .field("port", &self.port)
            .field("data_dir", &self.data_dir)
            .field("database_url", &redact_url(&self.database_url))
            .field("redis_url", &self.redis_url.as_deref().map(redact_url))
            .field("redis_prefix", &self.redis_prefix)
            .field("jwt_secret", &REDACTED)
            .field("jwt_refresh_secret", &REDACTED)
            .field("cors_origins", &self.cors_origins)
            .field("api_rate_limit", &self.api_rate_limit)
            .field(
                "login_max_failures_per_minute",
                &self.login_max_failures_per_minute,
            )
            .field("export_rate_limit", &self.export_rate_limit)
            .field("import_rate_limit", &self.import_rate_limit)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("smtp_url", &self.smtp_url.as_deref().map(redact_url))
            .field("mail_from", &self.mail_from)
            .field("public_url", &self.public_url)
            .field("argon2", &self.argon2)
            .field("push", &self.push)
            .field("push_give_up_after", &self.push_give_up_after)
            .field("max_concurrent_hashes", &self.max_concurrent_hashes)
            .field("body_limit_bytes", &self.body_limit_bytes)
            .field("import_body_limit_bytes", &self.import_body_limit_bytes)
            .field("request_timeout", &self.request_timeout)
            .field("import_timeout", &self.import_timeout)
            .field("sync", &self.sync)
            .field("metrics_addr", &self.metrics_addr)
            .field("otlp", &self.otlp)
            .finish()
    }
}

/// A URL with the password of its user info replaced by `***` (`postgres://app:***@db/x`); the
/// query string, which may carry one too (`?password=`), is dropped.
pub fn redact_url(url: &str) -> String {
    let url = url.split_once('?').map_or(url, |(base, _)| base);
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((user_info, host)) => {
            let user = user_info.split_once(':').map_or(user_info, |(u, _)| u);
            format!("{scheme}://{user}:***@{host}{}", &rest[authority_end..])
        }
        None => url.to_string(),
    }
}

/// Why the configuration cannot be used; the server refuses to start with it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A variable production requires is unset.
    #[error("{0} must be set when SPLITSAVE_ENV=production")]
    MissingInProduction(&'static str),
    /// A variable is set to something unusable.
    #[error("{var} is invalid: {reason}")]
    Invalid {
        /// The environment variable.
        var: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The data directory or the development secrets file could not be prepared.
    #[error("cannot prepare {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Minimum length of the JWT secrets: 256 bits, the size of the HS256 key.
const MIN_SECRET_BYTES: usize = 32;
/// File in the data directory that keeps generated development secrets across restarts.
const SECRETS_FILE: &str = "secrets";
const DEFAULT_MAIL_FROM: &str = "SplitSave <no-reply@splitsave.local>";
/// Default `REDIS_PREFIX`.
pub const DEFAULT_REDIS_PREFIX: &str = "splitsave:";
const DEV_CORS_ORIGIN: &str = "http://localhost:3000";

impl Config {
    /// Reads the configuration from the process environment (call `dotenvy::dotenv()` first to
    /// honour a `.env` file). In development it creates the data directory and generates the JWT
    /// secrets into `<data_dir>/secrets` when they are not set.
    pub fn from_env() -> Result<Config, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`Config::from_env`] with variables taken from `lookup`, so tests need not touch the
    /// process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let var = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let env = match var("SPLITSAVE_ENV").as_deref().map(str::to_ascii_lowercase) {
            None => Environment::Development,
            Some(v) if v == "development" || v == "dev" => Environment::Development,
            Some(v) if v == "production" || v == "prod" => Environment::Production,
            Some(v) => {
                return Err(ConfigError::Invalid {
                    var: "SPLITSAVE_ENV",
                    reason: format!("expected production or development, got {v:?}"),
                })
            }
        };
        let production = env == Environment::Production;
        let port = parse_or(var("PORT"), "PORT", 3000u16)?;
        let data_dir = PathBuf::from(var("SPLITSAVE_DATA_DIR").unwrap_or_else(|| "./data".into()));

        let database_url = match var("DATABASE_URL") {
            Some(url) => url,
            None if production => return Err(ConfigError::MissingInProduction("DATABASE_URL")),
            None => {
                create_dir(&data_dir)?;
                format!("sqlite://{}", data_dir.join("splitsave.db").display())
            }
        };
        if !(database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://")
            || database_url.starts_with("sqlite:"))
        {
            return Err(ConfigError::Invalid {
                var: "DATABASE_URL",
                reason: "expected a postgres:// or sqlite:// URL".into(),
            });
        }

        let (jwt_secret, jwt_refresh_secret) = match (var("JWT_SECRET"), var("JWT_REFRESH_SECRET"))
        {
            (Some(a), Some(b)) => (a, b),
            (None, _) if production => return Err(ConfigError::MissingInProduction("JWT_SECRET")),
            (_, None) if production => {
                return Err(ConfigError::MissingInProduction("JWT_REFRESH_SECRET"))
            }
            (a, b) => {
                let generated = development_secrets(&data_dir)?;
                (a.unwrap_or(generated.0), b.unwrap_or(generated.1))
            }
        };
        for (name, secret) in [
            ("JWT_SECRET", &jwt_secret),
            ("JWT_REFRESH_SECRET", &jwt_refresh_secret),
        ] {
            if secret.len() < MIN_SECRET_BYTES {
                return Err(ConfigError::Invalid {
                    var: name,
                    reason: format!("must be at least {MIN_SECRET_BYTES} bytes"),
                });
            }
        }
        if jwt_secret == jwt_refresh_secret {
            return Err(ConfigError::Invalid {
                var: "JWT_REFRESH_SECRET",
                reason: "must differ from JWT_SECRET".into(),
            });
        }

        let cors_origins = match var("CORS_ORIGIN") {
            Some(list) => list
                .split(',')
                .map(|o| o.trim().trim_end_matches('/').to_string())
                .filter(|o| !o.is_empty())
                .collect(),
            None if production => Vec::new(),
            None => vec![DEV_CORS_ORIGIN.to_string()],
        };
        for origin in &cors_origins {
            if origin != "*" && !(origin.starts_with("http://") || origin.starts_with("https://")) {
                return Err(ConfigError::Invalid {
                    var: "CORS_ORIGIN",
                    reason: format!("{origin:?} is not an http(s) origin"),
                });
            }
        }

        let argon2 = Argon2Params {
            memory_kib: parse_or(
                var("ARGON2_MEMORY_KIB"),
                "ARGON2_MEMORY_KIB",
                Argon2Params::OWASP.memory_kib,
            )?,
            iterations: parse_or(
                var("ARGON2_ITERATIONS"),
                "ARGON2_ITERATIONS",
                Argon2Params::OWASP.iterations,
            )?,
            parallelism: Argon2Params::OWASP.parallelism,
        };
        if argon2.memory_kib < Argon2Params::OWASP.memory_kib {
            return Err(ConfigError::Invalid {
                var: "ARGON2_MEMORY_KIB",
                reason: format!(
                    "must be at least {} (OWASP)",
                    Argon2Params::OWASP.memory_kib
                ),
            });
        }
        if argon2.iterations < Argon2Params::OWASP.iterations {
            return Err(ConfigError::Invalid {
                var: "ARGON2_ITERATIONS",
                reason: format!(
                    "must be at least {} (OWASP)",
                    Argon2Params::OWASP.iterations
                ),
            });
        }

        let api_rate_limit = positive(
            parse_or(var("API_RATE_LIMIT"), "API_RATE_LIMIT", 1000u32)?,
            "API_RATE_LIMIT",
        )?;
        let login_max_failures_per_minute = positive(
            parse_or(var("LOGIN_RATE_LIMIT"), "LOGIN_RATE_LIMIT", 5u32)?,
            "LOGIN_RATE_LIMIT",
        )?;
        let export_rate_limit = positive(
            parse_or(
                var("EXPORT_RATE_LIMIT"),
                "EXPORT_RATE_LIMIT",
                crate::ratelimit::EXPORTS_PER_HOUR,
            )?,
            "EXPORT_RATE_LIMIT",
        )?;
        let import_rate_limit = positive(
            parse_or(
                var("IMPORT_RATE_LIMIT"),
                "IMPORT_RATE_LIMIT",
                crate::ratelimit::IMPORTS_PER_HOUR,
            )?,
            "IMPORT_RATE_LIMIT",
        )?;
        let trusted_proxies = match var("TRUSTED_PROXIES") {
            Some(list) => TrustedProxies::parse(&list).map_err(|reason| ConfigError::Invalid {
                var: "TRUSTED_PROXIES",
                reason,
            })?,
            None => TrustedProxies::none(),
        };
        let max_concurrent_hashes = positive(
            parse_or(var("HASH_CONCURRENCY"), "HASH_CONCURRENCY", 2usize)?,
            "HASH_CONCURRENCY",
        )?;
        let body_limit_bytes = positive(
            parse_or(var("BODY_LIMIT_BYTES"), "BODY_LIMIT_BYTES", 256 * 1024usize)?,
            "BODY_LIMIT_BYTES",
        )?;
        let import_body_limit_bytes = positive(
            parse_or(
                var("IMPORT_BODY_LIMIT_BYTES"),
                "IMPORT_BODY_LIMIT_BYTES",
                crate::routes::import::DEFAULT_BODY_LIMIT_BYTES,
            )?,
            "IMPORT_BODY_LIMIT_BYTES",
        )?;
        let timeout_secs = positive(
            parse_or(var("REQUEST_TIMEOUT_SECS"), "REQUEST_TIMEOUT_SECS", 30u64)?,
            "REQUEST_TIMEOUT_SECS",
        )?;
        let import_timeout_secs = positive(
            parse_or(
                var("IMPORT_TIMEOUT_SECS"),
                "IMPORT_TIMEOUT_SECS",
                crate::routes::import::DEFAULT_TIMEOUT.as_secs(),
            )?,
            "IMPORT_TIMEOUT_SECS",
        )?;

        Ok(Config {
            env,
            port,
            public_url: var("PUBLIC_URL")
                .map(|u| u.trim_end_matches('/').to_string())
                .unwrap_or_else(|| format!("http://localhost:{port}")),
            data_dir,
            database_url,
            redis_url: var("REDIS_URL"),
            redis_prefix: var("REDIS_PREFIX").unwrap_or_else(|| DEFAULT_REDIS_PREFIX.to_string()),
            jwt_secret,
            jwt_refresh_secret,
            cors_origins,
            api_rate_limit,
            login_max_failures_per_minute,
            export_rate_limit,
            import_rate_limit,
            trusted_proxies,
            smtp_url: var("SMTP_URL"),
            mail_from: var("MAIL_FROM").unwrap_or_else(|| DEFAULT_MAIL_FROM.to_string()),
            argon2,
            max_concurrent_hashes,
            body_limit_bytes,
            import_body_limit_bytes,
            request_timeout: Duration::from_secs(timeout_secs),
            import_timeout: Duration::from_secs(import_timeout_secs),
            sync: sync_limits_from_env(&var)?,
            push: crate::push::PushConfig {
                public_endpoints_only: production,
                ..crate::push::PushConfig::from_lookup(&|name: &str| lookup(name))?
            },
            push_give_up_after: Duration::from_secs(
                parse_or(
                    var("PUSH_GIVE_UP_AFTER_SECS"),
                    "PUSH_GIVE_UP_AFTER_SECS",
                    86_400u64,
                )?
                .max(1),
            ),
            metrics_addr: metrics_addr(&var, port)?,
            otlp: crate::telemetry::OtlpSettings::from_lookup(&|name: &str| lookup(name))?,
        })
    }

    /// A development configuration for tests: the given data directory and database, fixed
    /// random secrets, generous rate limits and fast argon2 parameters (1 MiB, one pass) that
    /// exist only here, so test suites do not spend minutes hashing.
    pub fn for_tests(data_dir: impl Into<PathBuf>, database_url: impl Into<String>) -> Config {
        Config {
            env: Environment::Development,
            port: 0,
            data_dir: data_dir.into(),
            database_url: database_url.into(),
            redis_url: None,
            redis_prefix: DEFAULT_REDIS_PREFIX.to_string(),
            jwt_secret: random_secret(),
            jwt_refresh_secret: random_secret(),
            cors_origins: vec![DEV_CORS_ORIGIN.to_string()],
            api_rate_limit: 1000,
            login_max_failures_per_minute: 5,
            export_rate_limit: crate::ratelimit::EXPORTS_PER_HOUR,
            import_rate_limit: crate::ratelimit::IMPORTS_PER_HOUR,
            trusted_proxies: TrustedProxies::none(),
            smtp_url: None,
            mail_from: DEFAULT_MAIL_FROM.to_string(),
            public_url: "http://localhost:3000".to_string(),
            argon2: Argon2Params {
                memory_kib: 1024,
                iterations: 1,
                parallelism: 1,
            },
            max_concurrent_hashes: 2,
            body_limit_bytes: 256 * 1024,
            import_body_limit_bytes: crate::routes::import::DEFAULT_BODY_LIMIT_BYTES,
            request_timeout: Duration::from_secs(30),
            import_timeout: crate::routes::import::DEFAULT_TIMEOUT,
            sync: SyncLimits::default(),
            push: crate::push::PushConfig::default(),
            push_give_up_after: Duration::from_secs(86_400),
            metrics_addr: None,
            otlp: None,
        }
    }

    /// True in production: JSON logs, no generated secrets.
    pub fn is_production(&self) -> bool {
        self.env == Environment::Production
    }

    /// True when the database is PostgreSQL rather than the embedded SQLite file.
    pub fn uses_postgres(&self) -> bool {
        self.database_url.starts_with("postgres://")
            || self.database_url.starts_with("postgresql://")
    }
}

fn parse_or<T: std::str::FromStr>(
    value: Option<String>,
    var: &'static str,
    default: T,
) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match value {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|e: T::Err| ConfigError::Invalid {
            var,
            reason: e.to_string(),
        }),
    }
}

fn positive<T: PartialEq + Default>(value: T, var: &'static str) -> Result<T, ConfigError> {
    if value == T::default() {
        Err(ConfigError::Invalid {
            var,
            reason: "must be greater than zero".into(),
        })
    } else {
        Ok(value)
    }
}

fn create_dir(dir: &Path) -> Result<(), ConfigError> {
    fs::create_dir_all(dir).map_err(|source| ConfigError::Io {
        path: dir.to_path_buf(),
        source,
    })
}

fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Loads the development secrets from `<data_dir>/secrets`, generating and saving them (mode
/// 0600) on first use so sessions survive restarts. Production never comes here.
fn development_secrets(data_dir: &Path) -> Result<(String, String), ConfigError> {
    create_dir(data_dir)?;
    let path = data_dir.join(SECRETS_FILE);
    let io_err = |source| ConfigError::Io {
        path: path.clone(),
        source,
    };
    if let Ok(text) = fs::read_to_string(&path) {
        let value = |key: &str| {
            text.lines()
                .filter_map(|l| l.split_once('='))
                .find(|(k, _)| k.trim() == key)
                .map(|(_, v)| v.trim().to_string())
        };
        if let (Some(a), Some(b)) = (value("JWT_SECRET"), value("JWT_REFRESH_SECRET")) {
            tracing::warn!(path = %path.display(), "using development JWT secrets from the data directory; set JWT_SECRET and JWT_REFRESH_SECRET in production");
            return Ok((a, b));
        }
    }
    let (a, b) = (random_secret(), random_secret());
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&path).map_err(io_err)?;
    writeln!(file, "# Generated development secrets. Do not use in production.\nJWT_SECRET={a}\nJWT_REFRESH_SECRET={b}")
        .map_err(io_err)?;
    tracing::warn!(path = %path.display(), "generated development JWT secrets into the data directory; set JWT_SECRET and JWT_REFRESH_SECRET in production");
    Ok((a, b))
}

/// Reads `METRICS_ADDR` (with `METRICS_ALLOW_REMOTE`): an explicit IP address and port, on
/// loopback unless remote scrapes are allowed, and not the API's `port`.
fn metrics_addr(
    var: &dyn Fn(&str) -> Option<String>,
    port: u16,
) -> Result<Option<SocketAddr>, ConfigError> {
    let Some(value) = var("METRICS_ADDR") else {
        return Ok(None);
    };
    let invalid = |reason: String| ConfigError::Invalid {
        var: "METRICS_ADDR",
        reason,
    };
    let addr: SocketAddr = value.trim().parse().map_err(|_| {
        invalid(format!(
            "expected an IP address and a port, such as 127.0.0.1:9100, got {value:?}"
        ))
    })?;
    let remote_allowed = match var("METRICS_ALLOW_REMOTE").map(|v| v.trim().to_ascii_lowercase()) {
        None => false,
        Some(v) if v == "true" || v == "1" => true,
        Some(v) if v == "false" || v == "0" => false,
        Some(v) => {
            return Err(ConfigError::Invalid {
                var: "METRICS_ALLOW_REMOTE",
                reason: format!("expected true or false, got {v:?}"),
            })
        }
    };
    if !addr.ip().is_loopback() && !remote_allowed {
        return Err(invalid(format!(
            "{addr} can be reached from other machines: use a loopback address \
             (127.0.0.1:<port>), or set METRICS_ALLOW_REMOTE=true if that is meant"
        )));
    }
    if addr.port() != 0 && addr.port() == port {
        return Err(invalid(format!(
            "port {port} is the API's (PORT): metrics need a port of their own"
        )));
    }
    Ok(Some(addr))
}

/// A duration in whole milliseconds.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Reads the `SYNC_*` (and `CLUSTER_*`) variables over the defaults.
fn sync_limits_from_env(var: &dyn Fn(&str) -> Option<String>) -> Result<SyncLimits, ConfigError> {
    let d = SyncLimits::default();
    let num = |name: &'static str, default: u64| -> Result<u64, ConfigError> {
        positive(parse_or(var(name), name, default)?, name)
    };
    let size = |name: &'static str, default: usize| -> Result<usize, ConfigError> {
        usize::try_from(num(name, default as u64)?).map_err(|_| ConfigError::Invalid {
            var: name,
            reason: "too large".into(),
        })
    };
    let rate = |name: &'static str, default: u32| -> Result<u32, ConfigError> {
        u32::try_from(num(name, u64::from(default))?).map_err(|_| ConfigError::Invalid {
            var: name,
            reason: "too large".into(),
        })
    };
    Ok(SyncLimits {
        max_message_bytes: size("SYNC_MAX_MESSAGE_BYTES", d.max_message_bytes)?,
        max_changes_per_message: size("SYNC_MAX_MESSAGE_CHANGES", d.max_changes_per_message)?,
        max_ops_per_message: size("SYNC_MAX_MESSAGE_OPS", d.max_ops_per_message)?,
        max_changes_per_merge: size("SYNC_MAX_CHANGES", d.max_changes_per_merge)?,
        max_ops_per_merge: size("SYNC_MAX_OPS", d.max_ops_per_merge)?,
        max_value_bytes: size("SYNC_MAX_VALUE_BYTES", d.max_value_bytes)?,
        messages_per_second: rate("SYNC_MESSAGES_PER_SECOND", d.messages_per_second)?,
        message_burst: rate("SYNC_MESSAGE_BURST", d.message_burst)?,
        idle_eviction: Duration::from_secs(num(
            "SYNC_IDLE_EVICTION_SECS",
            d.idle_eviction.as_secs(),
        )?),
        compact_after_changes: size("SYNC_COMPACT_AFTER", d.compact_after_changes)?,
        revalidate_every: Duration::from_secs(num(
            "SYNC_REVALIDATE_SECS",
            d.revalidate_every.as_secs(),
        )?),
        cluster_poll: Duration::from_millis(num("CLUSTER_POLL_MS", millis(d.cluster_poll))?),
        cluster_safety_poll: Duration::from_millis(num(
            "CLUSTER_SAFETY_POLL_MS",
            millis(d.cluster_safety_poll),
        )?),
        presence_ttl: Duration::from_secs(num("PRESENCE_TTL_SECS", d.presence_ttl.as_secs())?),
        ..d
    })
}

/// An environment made of `vars`, for the configuration readers' tests.
#[cfg(test)]
pub(crate) fn test_lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: std::collections::HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_a_config_shows_no_secret() {
        let vars = [
            ("SPLITSAVE_ENV", "production"),
            (
                "DATABASE_URL",
                "postgres://app:db-pass-9f2c@db.internal:5432/splitsave",
            ),
            ("REDIS_URL", "redis://:redis-pass-77aa@cache:6379"),
            ("JWT_SECRET", "jwt-secret-0123456789abcdef0123456789abcdef"),
            (
                "JWT_REFRESH_SECRET",
                "refresh-secret-0123456789abcdef0123456789ab",
            ),
            (
                "SMTP_URL",
                "smtp://mailer:smtp-pass-31b0@mail:587?password=query-pass-5e",
            ),
            ("CORS_ORIGIN", "https://app.example"),
        ];
        let config = Config::from_lookup(lookup(&vars)).expect("valid configuration");
        let shown = format!("{config:?} {config:#?}");
        for secret in [
            "db-pass-9f2c",
            "redis-pass-77aa",
            "jwt-secret-0123456789abcdef",
            "refresh-secret-0123456789abcdef",
            "smtp-pass-31b0",
            "query-pass-5e",
        ] {
            assert!(!shown.contains(secret), "{secret} is printed: {shown}");
        }
        assert!(
            shown.contains("postgres://app:***@db.internal:5432/splitsave"),
            "{shown}"
        );
        assert!(
            shown.contains("https://app.example"),
            "the rest still shows: {shown}"
        );
    }

    use super::test_lookup as lookup;

    #[test]
    fn production_refuses_to_start_without_secrets_or_database() {
        let err = Config::from_lookup(lookup(&[
            ("SPLITSAVE_ENV", "production"),
            ("DATABASE_URL", "postgres://x/y"),
        ]))
        .unwrap_err();
        assert!(
            matches!(err, ConfigError::MissingInProduction("JWT_SECRET")),
            "{err}"
        );
        let secret_a = "a".repeat(32);
        let secret_b = "b".repeat(32);
        let err = Config::from_lookup(lookup(&[
            ("SPLITSAVE_ENV", "production"),
            ("JWT_SECRET", &secret_a),
            ("JWT_REFRESH_SECRET", &secret_b),
        ]))
        .unwrap_err();
        assert!(
            matches!(err, ConfigError::MissingInProduction("DATABASE_URL")),
            "{err}"
        );
    }

    #[test]
    fn production_refuses_short_secrets() {
        let err = Config::from_lookup(lookup(&[
            ("SPLITSAVE_ENV", "production"),
            ("DATABASE_URL", "postgres://x/y"),
            ("JWT_SECRET", "short"),
            ("JWT_REFRESH_SECRET", &"b".repeat(32)),
        ]))
        .unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::Invalid {
                    var: "JWT_SECRET",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn development_generates_secrets_once_and_defaults_to_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let data_str = data.display().to_string();
        let first = Config::from_lookup(lookup(&[("SPLITSAVE_DATA_DIR", &data_str)])).unwrap();
        assert_eq!(first.env, Environment::Development);
        assert_eq!(first.port, 3000);
        assert_eq!(
            first.database_url,
            format!("sqlite://{}/splitsave.db", data_str)
        );
        assert_eq!(
            first.cors_origins,
            vec!["http://localhost:3000".to_string()]
        );
        assert_eq!(first.argon2, Argon2Params::OWASP);
        assert!(data.join("secrets").exists());
        let second = Config::from_lookup(lookup(&[("SPLITSAVE_DATA_DIR", &data_str)])).unwrap();
        assert_eq!(first.jwt_secret, second.jwt_secret);
        assert_eq!(first.jwt_refresh_secret, second.jwt_refresh_secret);
        assert_ne!(first.jwt_secret, first.jwt_refresh_secret);
    }

    #[test]
    fn weak_argon2_parameters_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let data_str = dir.path().display().to_string();
        let err = Config::from_lookup(lookup(&[
            ("SPLITSAVE_DATA_DIR", &data_str),
            ("ARGON2_MEMORY_KIB", "1024"),
        ]))
        .unwrap_err();
        assert!(matches!(
            err,
            ConfigError::Invalid {
                var: "ARGON2_MEMORY_KIB",
                ..
            }
        ));
    }

    #[test]
    fn trusted_proxies_are_parsed_and_a_bad_entry_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let data_str = dir.path().display().to_string();
        let cfg = Config::from_lookup(lookup(&[("SPLITSAVE_DATA_DIR", &data_str)])).unwrap();
        assert!(
            cfg.trusted_proxies.is_empty(),
            "nobody is trusted by default"
        );
        let cfg = Config::from_lookup(lookup(&[
            ("SPLITSAVE_DATA_DIR", &data_str),
            ("TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8,fd00::/8"),
        ]))
        .unwrap();
        assert_eq!(
            format!("{:?}", cfg.trusted_proxies),
            "[127.0.0.1/32, 10.0.0.0/8, fd00::/8]"
        );
        assert!(format!("{cfg:?}").contains("10.0.0.0/8"));
        for bad in ["10.0.0.0/33", "10.0.0.1/8", "nginx", "10.0.0.0/8, 1.2.3"] {
            let err = Config::from_lookup(lookup(&[
                ("SPLITSAVE_DATA_DIR", &data_str),
                ("TRUSTED_PROXIES", bad),
            ]))
            .unwrap_err();
            assert!(
                matches!(
                    err,
                    ConfigError::Invalid {
                        var: "TRUSTED_PROXIES",
                        ..
                    }
                ),
                "{bad}: {err}"
            );
            assert!(
                err.to_string().starts_with("TRUSTED_PROXIES is invalid"),
                "{err}"
            );
        }
    }

    #[test]
    fn metrics_are_off_by_default_and_stay_on_loopback_unless_remote_is_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let data_str = dir.path().display().to_string();
        let with = |vars: &[(&str, &str)]| {
            let mut all = vec![("SPLITSAVE_DATA_DIR", data_str.as_str())];
            all.extend_from_slice(vars);
            Config::from_lookup(lookup(&all))
        };
        assert_eq!(with(&[]).unwrap().metrics_addr, None);
        let on = with(&[("METRICS_ADDR", "127.0.0.1:9100")]).unwrap();
        assert_eq!(on.metrics_addr, Some("127.0.0.1:9100".parse().unwrap()));
        assert!(format!("{on:?}").contains("127.0.0.1:9100"));
        assert!(with(&[("METRICS_ADDR", "[::1]:0")]).is_ok());

        let refused = |vars: &[(&str, &str)], var: &str| {
            let err = with(vars).unwrap_err();
            assert!(
                matches!(&err, ConfigError::Invalid { var: v, .. } if *v == var),
                "{vars:?}: {err}"
            );
            err.to_string()
        };
        // Not an explicit address.
        for bad in [":9100", "localhost:9100", "9100", "127.0.0.1"] {
            refused(&[("METRICS_ADDR", bad)], "METRICS_ADDR");
        }
        // Reachable from other machines, without saying so.
        for remote in ["0.0.0.0:9100", "[::]:9100", "10.1.2.3:9100"] {
            let why = refused(&[("METRICS_ADDR", remote)], "METRICS_ADDR");
            assert!(why.contains("METRICS_ALLOW_REMOTE=true"), "{why}");
            let allowed = with(&[("METRICS_ADDR", remote), ("METRICS_ALLOW_REMOTE", "true")]);
            assert_eq!(allowed.unwrap().metrics_addr, Some(remote.parse().unwrap()));
        }
        refused(
            &[
                ("METRICS_ADDR", "0.0.0.0:9100"),
                ("METRICS_ALLOW_REMOTE", "yes please"),
            ],
            "METRICS_ALLOW_REMOTE",
        );
        // The API's own port.
        refused(
            &[("METRICS_ADDR", "127.0.0.1:8080"), ("PORT", "8080")],
            "METRICS_ADDR",
        );
    }

    #[test]
    fn cors_origins_are_split_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let data_str = dir.path().display().to_string();
        let cfg = Config::from_lookup(lookup(&[
            ("SPLITSAVE_DATA_DIR", &data_str),
            ("CORS_ORIGIN", "https://a.example, https://b.example/"),
        ]))
        .unwrap();
        assert_eq!(
            cfg.cors_origins,
            vec!["https://a.example", "https://b.example"]
        );
        let err = Config::from_lookup(lookup(&[
            ("SPLITSAVE_DATA_DIR", &data_str),
            ("CORS_ORIGIN", "ftp://x"),
        ]))
        .unwrap_err();
        assert!(matches!(
            err,
            ConfigError::Invalid {
                var: "CORS_ORIGIN",
                ..
            }
        ));
    }
}
