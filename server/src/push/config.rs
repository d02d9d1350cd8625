//! The push services' configuration, read with the rest of the configuration at start-up (see
//! `docs/configuration.md`, "Push notifications"). Either service may be left unconfigured;
//! one that is configured but unusable (an unreadable service-account file, VAPID keys that do
//! not match) stops the server at start-up instead of failing every notification later.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::ConfigError;

use super::fcm::{ServiceAccount, DEFAULT_FCM_ENDPOINT, DEFAULT_TOKEN_URI};
use super::webpush::vapid_signing_key;
use super::DEFAULT_REQUEST_TIMEOUT;

/// How to reach the push services. Its `Debug` never shows a private key.
#[derive(Clone, Debug)]
pub struct PushConfig {
    /// FCM, when `FCM_SERVICE_ACCOUNT_FILE` is set.
    pub fcm: Option<FcmConfig>,
    /// Web Push, when the `VAPID_*` variables are set.
    pub web_push: Option<VapidConfig>,
    /// Longest one request to a push service or to the token endpoint may take
    /// ([`DEFAULT_REQUEST_TIMEOUT`], 10 s; not an environment variable).
    pub request_timeout: Duration,
    /// Web Push only to public addresses: an endpoint whose host is, or resolves to, a
    /// private, loopback or link-local address is refused (what users register must not make
    /// the server post into its own network). On in production (set by `Config`); off in
    /// development, whose push service may run on the same machine.
    pub public_endpoints_only: bool,
}

impl Default for PushConfig {
    /// Neither service configured: every send is rejected.
    fn default() -> PushConfig {
        PushConfig {
            fcm: None,
            web_push: None,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            public_endpoints_only: false,
        }
    }
}

/// Firebase Cloud Messaging (HTTP v1) for one Firebase project.
#[derive(Clone, Debug)]
pub struct FcmConfig {
    /// `FCM_SERVICE_ACCOUNT_FILE`: where the service account was read from.
    pub service_account_file: PathBuf,
    /// The service account in that file.
    pub service_account: ServiceAccount,
    /// `FCM_ENDPOINT`: base URL of the FCM API, default `https://fcm.googleapis.com`.
    pub endpoint: String,
    /// `FCM_TOKEN_URI`: Google's OAuth 2.0 token endpoint; default the file's `token_uri`, or
    /// `https://oauth2.googleapis.com/token` when the file names none.
    pub token_uri: String,
}

/// The server's VAPID identity for Web Push. Its `Debug` never shows the private key.
#[derive(Clone, PartialEq, Eq)]
pub struct VapidConfig {
    /// `VAPID_PRIVATE_KEY`: the P-256 private key, 32 bytes base64url.
    pub private_key: String,
    /// `VAPID_PUBLIC_KEY`: its public key, 65 bytes (uncompressed) base64url; browsers
    /// subscribe with it as `applicationServerKey`.
    pub public_key: String,
    /// `VAPID_SUBJECT`: a `mailto:` or `https:` contact that push services can reach the
    /// operator at.
    pub subject: String,
}

impl std::fmt::Debug for VapidConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VapidConfig")
            .field("private_key", &"<redacted>")
            .field("public_key", &self.public_key)
            .field("subject", &self.subject)
            .finish()
    }
}

impl PushConfig {
    /// Reads the push variables from the process environment.
    pub fn from_env() -> Result<PushConfig, ConfigError> {
        Self::from_lookup(&|name| std::env::var(name).ok())
    }

    /// Reads the push variables through `lookup` (blank values count as unset), reading and
    /// checking the service-account file and the VAPID keys.
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<PushConfig, ConfigError> {
        let var = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let fcm = match var("FCM_SERVICE_ACCOUNT_FILE") {
            Some(file) => Some(fcm_config(PathBuf::from(file), &var)?),
            None => None,
        };
        let web_push = vapid_config(&var)?;
        Ok(PushConfig {
            fcm,
            web_push,
            ..PushConfig::default()
        })
    }
}

fn fcm_config(
    path: PathBuf,
    var: &dyn Fn(&str) -> Option<String>,
) -> Result<FcmConfig, ConfigError> {
    let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Io {
        path: path.clone(),
        source,
    })?;
    let service_account =
        ServiceAccount::from_json(&text).map_err(|reason| ConfigError::Invalid {
            var: "FCM_SERVICE_ACCOUNT_FILE",
            reason: format!("{}: {reason}", path.display()),
        })?;
    let endpoint = http_url(
        "FCM_ENDPOINT",
        var("FCM_ENDPOINT").unwrap_or_else(|| DEFAULT_FCM_ENDPOINT.to_string()),
    )?;
    let token_uri = match var("FCM_TOKEN_URI") {
        Some(uri) => http_url("FCM_TOKEN_URI", uri)?,
        None => http_url(
            "FCM_SERVICE_ACCOUNT_FILE",
            service_account
                .token_uri
                .clone()
                .unwrap_or_else(|| DEFAULT_TOKEN_URI.to_string()),
        )?,
    };
    Ok(FcmConfig {
        service_account_file: path,
        service_account,
        endpoint: endpoint.trim_end_matches('/').to_string(),
        token_uri,
    })
}

fn vapid_config(var: &dyn Fn(&str) -> Option<String>) -> Result<Option<VapidConfig>, ConfigError> {
    let (private_key, public_key, subject) = match (
        var("VAPID_PRIVATE_KEY"),
        var("VAPID_PUBLIC_KEY"),
        var("VAPID_SUBJECT"),
    ) {
        (None, None, None) => return Ok(None),
        (Some(private), Some(public), Some(subject)) => (private, public, subject),
        (private, public, _) => {
            let missing = if private.is_none() {
                "VAPID_PRIVATE_KEY"
            } else if public.is_none() {
                "VAPID_PUBLIC_KEY"
            } else {
                "VAPID_SUBJECT"
            };
            return Err(ConfigError::Invalid {
                var: missing,
                reason: "Web Push needs VAPID_PRIVATE_KEY, VAPID_PUBLIC_KEY and VAPID_SUBJECT \
                         together (`splitsave vapid-keys` makes a key pair)"
                    .into(),
            });
        }
    };
    if !(subject.starts_with("mailto:") || subject.starts_with("https://")) {
        return Err(ConfigError::Invalid {
            var: "VAPID_SUBJECT",
            reason: "must be a mailto: or https:// contact".into(),
        });
    }
    vapid_signing_key(&private_key, &public_key).map_err(|reason| ConfigError::Invalid {
        var: if reason.starts_with("VAPID_PUBLIC_KEY") {
            "VAPID_PUBLIC_KEY"
        } else {
            "VAPID_PRIVATE_KEY"
        },
        reason,
    })?;
    Ok(Some(VapidConfig {
        private_key,
        public_key,
        subject,
    }))
}

fn http_url(var: &'static str, url: String) -> Result<String, ConfigError> {
    if url.starts_with("https://") || url.starts_with("http://") {
        Ok(url)
    } else {
        Err(ConfigError::Invalid {
            var,
            reason: format!("{url:?} is not an http(s) URL"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::push::generate_vapid_keys;

    use crate::config::test_lookup as lookup;

    #[test]
    fn nothing_set_configures_no_service() {
        let config = PushConfig::from_lookup(&lookup(&[("VAPID_SUBJECT", "  ")])).unwrap();
        assert!(config.fcm.is_none());
        assert!(config.web_push.is_none());
        assert_eq!(config.request_timeout, DEFAULT_REQUEST_TIMEOUT);
    }

    #[test]
    fn vapid_keys_are_read_checked_and_never_printed() {
        let pair = generate_vapid_keys();
        let config = PushConfig::from_lookup(&lookup(&[
            ("VAPID_PRIVATE_KEY", &pair.private_key),
            ("VAPID_PUBLIC_KEY", &pair.public_key),
            ("VAPID_SUBJECT", "mailto:ops@splitsave.example"),
        ]))
        .unwrap();
        let vapid = config.web_push.as_ref().unwrap();
        assert_eq!(vapid.public_key, pair.public_key);
        let shown = format!("{config:?} {config:#?}");
        assert!(!shown.contains(&pair.private_key), "{shown}");
        assert!(shown.contains(&pair.public_key), "{shown}");
    }

    #[test]
    fn incomplete_or_mismatched_vapid_settings_are_named() {
        let a = generate_vapid_keys();
        let b = generate_vapid_keys();
        let err = |vars: &[(&str, &str)]| PushConfig::from_lookup(&lookup(vars)).unwrap_err();
        let missing = err(&[("VAPID_PRIVATE_KEY", &a.private_key)]);
        assert!(
            matches!(
                missing,
                ConfigError::Invalid {
                    var: "VAPID_PUBLIC_KEY",
                    ..
                }
            ),
            "{missing}"
        );
        let no_subject = err(&[
            ("VAPID_PRIVATE_KEY", &a.private_key),
            ("VAPID_PUBLIC_KEY", &a.public_key),
        ]);
        assert!(
            matches!(
                no_subject,
                ConfigError::Invalid {
                    var: "VAPID_SUBJECT",
                    ..
                }
            ),
            "{no_subject}"
        );
        let bad_subject = err(&[
            ("VAPID_PRIVATE_KEY", &a.private_key),
            ("VAPID_PUBLIC_KEY", &a.public_key),
            ("VAPID_SUBJECT", "ops@splitsave.example"),
        ]);
        assert!(
            matches!(
                bad_subject,
                ConfigError::Invalid {
                    var: "VAPID_SUBJECT",
                    ..
                }
            ),
            "{bad_subject}"
        );
        let mismatch = err(&[
            ("VAPID_PRIVATE_KEY", &a.private_key),
            ("VAPID_PUBLIC_KEY", &b.public_key),
            ("VAPID_SUBJECT", "https://splitsave.example/contact"),
        ]);
        assert!(
            matches!(
                mismatch,
                ConfigError::Invalid {
                    var: "VAPID_PUBLIC_KEY",
                    ..
                }
            ),
            "{mismatch}"
        );
        assert!(!mismatch.to_string().contains(&a.private_key));
    }

    #[test]
    fn a_missing_service_account_file_stops_the_start() {
        let err = PushConfig::from_lookup(&lookup(&[(
            "FCM_SERVICE_ACCOUNT_FILE",
            "/nonexistent/splitsave-fcm.json",
        )]))
        .unwrap_err();
        assert!(matches!(err, ConfigError::Io { .. }), "{err}");
    }
}
