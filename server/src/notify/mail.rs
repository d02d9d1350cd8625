//! Outgoing mail (password resets, invitations) behind one [`Mailer`] trait:
//!
//! * [`SmtpMailer`] sends through an SMTP server named by `SMTP_URL`:
//!   `smtp://user:pass@host:587?tls=required` (STARTTLS), `smtps://user:pass@host:465` (TLS from
//!   the first byte), or plain `smtp://host:25` (unencrypted: only for a relay on the same host or
//!   network; a warning is logged when such a URL carries credentials);
//! * [`LogMailer`] writes the mail to the log when `SMTP_URL` is unset, so a development server
//!   needs no mail server and the reset link can be copied from its output;
//! * [`MemoryMailer`] keeps mails in memory so tests can read what a user would receive.

use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::Config;

/// One plain-text mail to one recipient.
#[derive(Clone, PartialEq, Eq)]
pub struct Mail {
    /// Recipient address.
    pub to: String,
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub body: String,
}

impl fmt::Debug for Mail {
    /// Leaves the body out: it may hold a reset token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mail")
            .field("to", &self.to)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

/// A mail as recorded by [`MemoryMailer`]: the same fields as [`Mail`].
pub type SentMail = Mail;

/// Why a mail could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// `SMTP_URL` or `MAIL_FROM` cannot be used.
    #[error("mail configuration is invalid: {0}")]
    Config(String),
    /// The recipient address or the message could not be built.
    #[error("cannot build mail: {0}")]
    Message(String),
    /// The SMTP server refused the mail or could not be reached.
    #[error("SMTP delivery failed: {0}")]
    Transport(#[from] lettre::transport::smtp::Error),
}

/// Sends mail. Shared as `Arc<dyn Mailer>` in `AppState`, so the implementation is chosen once at
/// start-up.
#[async_trait]
pub trait Mailer: Send + Sync + 'static {
    /// Sends one mail.
    async fn send(&self, mail: Mail) -> Result<(), MailError>;
}

/// The mailer the configuration asks for: SMTP when `SMTP_URL` is set, the log otherwise (in
/// production without the body, which would put reset tokens into the logs).
pub fn mailer_from_config(config: &Config) -> Result<Arc<dyn Mailer>, MailError> {
    match &config.smtp_url {
        Some(url) => Ok(Arc::new(SmtpMailer::new(url, &config.mail_from)?)),
        None if config.is_production() => {
            tracing::warn!("SMTP_URL is not set: mails are not sent, only their recipients logged");
            Ok(Arc::new(LogMailer::redacting()))
        }
        None => {
            tracing::warn!("SMTP_URL is not set: mails are written to the log instead of sent");
            Ok(Arc::new(LogMailer::revealing()))
        }
    }
}

/// Writes each mail to the log (info level) instead of sending it, for running without a mail
/// server. In development the whole mail is logged, so a reset link can be copied from the
/// server's output; in production only recipient and subject are, since the body holds
/// secrets.
#[derive(Clone, Copy, Debug)]
pub struct LogMailer {
    with_body: bool,
}

impl LogMailer {
    /// Logs whole mails, body included (development).
    pub fn revealing() -> Self {
        LogMailer { with_body: true }
    }

    /// Logs recipient and subject only (production without SMTP).
    pub fn redacting() -> Self {
        LogMailer { with_body: false }
    }
}

#[async_trait]
impl Mailer for LogMailer {
    async fn send(&self, mail: Mail) -> Result<(), MailError> {
        let body = if self.with_body {
            mail.body.as_str()
        } else {
            "<redacted>"
        };
        tracing::info!(
            to = %mail.to,
            subject = %mail.subject,
            body = %body,
            "mail not sent (SMTP_URL unset), logged instead"
        );
        Ok(())
    }
}

/// Keeps every mail in memory; tests hold a clone and read [`MemoryMailer::sent`].
#[derive(Clone, Debug, Default)]
pub struct MemoryMailer {
    sent: Arc<Mutex<Vec<SentMail>>>,
}

impl MemoryMailer {
    /// An empty mailbox.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every mail sent so far, oldest first.
    pub fn sent(&self) -> Vec<SentMail> {
        self.sent
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The mails sent so far to `to` (compared case-insensitively), oldest first.
    pub fn sent_to(&self, to: &str) -> Vec<SentMail> {
        self.sent()
            .into_iter()
            .filter(|m| m.to.eq_ignore_ascii_case(to))
            .collect()
    }
}

#[async_trait]
impl Mailer for MemoryMailer {
    async fn send(&self, mail: Mail) -> Result<(), MailError> {
        self.sent
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(mail);
        Ok(())
    }
}

/// Sends mail through an SMTP server with lettre.
#[derive(Clone)]
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl fmt::Debug for SmtpMailer {
    /// Leaves the transport out: its URL may hold the SMTP password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpMailer")
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl SmtpMailer {
    /// A mailer for `smtp_url` (see the module documentation for the forms) sending as `from`
    /// (`"Name <address>"` or a bare address). Connects lazily, on the first mail.
    pub fn new(smtp_url: &str, from: &str) -> Result<Self, MailError> {
        let unencrypted = smtp_url.starts_with("smtp://") && !smtp_url.contains("tls=");
        if unencrypted && smtp_url.contains('@') {
            tracing::warn!(
                "SMTP_URL sends credentials without TLS; add ?tls=required or use smtps://"
            );
        }
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp_url)
            .map_err(|e| MailError::Config(format!("SMTP_URL: {e}")))?
            .build();
        let from = from
            .parse::<Mailbox>()
            .map_err(|e| MailError::Config(format!("MAIL_FROM: {e}")))?;
        Ok(SmtpMailer { transport, from })
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, mail: Mail) -> Result<(), MailError> {
        let to = mail
            .to
            .parse::<Mailbox>()
            .map_err(|e| MailError::Message(format!("recipient: {e}")))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject)
            .header(ContentType::TEXT_PLAIN)
            .body(mail.body)
            .map_err(|e| MailError::Message(e.to_string()))?;
        self.transport.send(message).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail(to: &str) -> Mail {
        Mail {
            to: to.into(),
            subject: "Reset your password".into(),
            body: "secret-token".into(),
        }
    }

    #[tokio::test]
    async fn the_memory_mailer_records_mails_for_every_clone() {
        let mailer = MemoryMailer::new();
        let shared: Arc<dyn Mailer> = Arc::new(mailer.clone());
        shared.send(mail("ann@example.com")).await.expect("send");
        shared.send(mail("bob@example.com")).await.expect("send");
        assert_eq!(mailer.sent().len(), 2);
        assert_eq!(
            mailer.sent_to("ANN@example.com"),
            vec![mail("ann@example.com")]
        );
    }

    #[test]
    fn debug_output_leaves_out_the_body() {
        assert!(!format!("{:?}", mail("ann@example.com")).contains("secret-token"));
    }

    /// What `mailer` logs when it sends one mail, as text.
    async fn logged_by(mailer: LogMailer) -> String {
        #[derive(Clone, Default)]
        struct Captured(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Captured {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().expect("capture").extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        mailer.send(mail("ann@example.com")).await.expect("send");
        let bytes = captured.0.lock().expect("capture").clone();
        String::from_utf8(bytes).expect("utf-8")
    }

    #[tokio::test]
    async fn the_development_log_mailer_logs_the_whole_mail() {
        let logged = logged_by(LogMailer::revealing()).await;
        assert!(logged.contains("ann@example.com"), "{logged}");
        assert!(logged.contains("secret-token"), "{logged}");
    }

    #[tokio::test]
    async fn the_production_log_mailer_leaves_out_the_body() {
        let logged = logged_by(LogMailer::redacting()).await;
        assert!(logged.contains("ann@example.com"), "{logged}");
        assert!(!logged.contains("secret-token"), "{logged}");
    }

    #[test]
    fn an_smtp_mailer_is_built_from_a_url_without_connecting() {
        let mailer = SmtpMailer::new(
            "smtp://user:pass@127.0.0.1:2525",
            "SplitSave <no-reply@splitsave.local>",
        )
        .expect("valid configuration");
        assert!(!format!("{mailer:?}").contains("pass"));
    }

    #[test]
    fn unusable_smtp_settings_are_refused() {
        assert!(SmtpMailer::new("not a url", "no-reply@splitsave.local").is_err());
        assert!(SmtpMailer::new("smtp://127.0.0.1:2525", "not an address").is_err());
    }

    #[tokio::test]
    async fn an_unreachable_smtp_server_is_a_transport_error() {
        // Port 9 (discard) on localhost is closed: the connection is refused at once.
        let mailer = SmtpMailer::new("smtp://127.0.0.1:9", "no-reply@splitsave.local")
            .expect("valid configuration");
        assert!(matches!(
            mailer.send(mail("ann@example.com")).await,
            Err(MailError::Transport(_))
        ));
    }
}
