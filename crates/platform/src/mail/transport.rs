//! How a claimed email leaves the server: over SMTP with lettre, or into
//! the log when no `SMTP_URL` is configured.

use std::time::Duration;

use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Mailbox, MultiPart},
};
use secrecy::ExposeSecret;

use super::model::ClaimedEmail;
use tollgate_core::config::{Config, redact_url};

/// Longest wait for any one SMTP exchange (connect, a command's reply):
/// a stuck server must not hold the worker for lettre's default minute.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a delivery attempt failed.
#[derive(Debug)]
pub(super) struct SendFailure {
    /// For `last_error` and the log.
    pub message: String,
    /// Retrying cannot help (the recipient is not an address at all).
    pub permanent: bool,
}

impl SendFailure {
    fn temporary(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            permanent: false,
        }
    }
}

/// The configured way out.
pub(super) enum Mailer {
    /// SMTP, with pooled connections to the server of `SMTP_URL`.
    Smtp {
        /// The pooled transport.
        transport: AsyncSmtpTransport<Tokio1Executor>,
        /// `MAIL_FROM`.
        from: Mailbox,
    },
    /// No `SMTP_URL`: emails are written to the log and count as sent.
    Log {
        /// Bodies (with their links) are logged only in development.
        with_bodies: bool,
    },
    /// `SMTP_URL` or `MAIL_FROM` cannot be used. Emails stay queued and
    /// fail with this reason (logged once at start) rather than being
    /// dropped or logged, so a corrected configuration still sends them
    /// within the retry window.
    Misconfigured(String),
}

impl Mailer {
    /// The mailer `config` asks for.
    pub fn from_config(config: &Config) -> Self {
        let Some(url) = &config.smtp_url else {
            if !config.is_development() {
                tracing::warn!("SMTP_URL is not set: emails are written to the log instead of being sent");
            }
            return Self::Log {
                with_bodies: config.is_development(),
            };
        };
        let from = match config.mail_from.parse::<Mailbox>() {
            Ok(from) => from,
            Err(e) => return Self::misconfigured(format!("MAIL_FROM is not a valid mailbox: {e}")),
        };
        // `from_url` reads smtp:// (plain, or STARTTLS with ?tls=required or
        // ?tls=opportunistic), smtps:// (TLS from the start), credentials
        // and the EHLO name, the same URL format operators know from lettre.
        match AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose_secret()) {
            Ok(builder) => {
                tracing::info!(smtp = %redact_url(url.expose_secret()), "sending email over SMTP");
                Self::Smtp {
                    transport: builder.timeout(Some(SMTP_TIMEOUT)).build(),
                    from,
                }
            }
            // lettre's message names the problem, never the password.
            Err(e) => Self::misconfigured(format!("SMTP_URL cannot be used: {e}")),
        }
    }

    fn misconfigured(reason: String) -> Self {
        tracing::error!(%reason, "email cannot be sent until the configuration is fixed");
        Self::Misconfigured(reason)
    }

    /// Delivers one email.
    pub async fn send(&self, email: &ClaimedEmail) -> Result<(), SendFailure> {
        match self {
            Self::Log { with_bodies } => {
                // In development, at info with the text body, so a developer
                // without a mail server can follow verification and reset
                // links; elsewhere the links are secrets and stay out of logs.
                let body = if *with_bodies {
                    email.text_body.as_str()
                } else {
                    "<withheld outside development>"
                };
                tracing::info!(
                    id = %email.id,
                    kind = %email.kind,
                    to = %email.to_address,
                    subject = %email.subject,
                    body = %body,
                    "email (no SMTP_URL, logged instead of sent)"
                );
                Ok(())
            }
            Self::Misconfigured(reason) => Err(SendFailure::temporary(reason.clone())),
            Self::Smtp { transport, from } => {
                let message = build_message(from, email)?;
                transport
                    .send(message)
                    .await
                    .map(|_| ())
                    .map_err(|e| SendFailure::temporary(format!("SMTP: {e}")))
            }
        }
    }
}

/// A multipart/alternative message (plain text first, HTML preferred by
/// clients that can show it).
fn build_message(from: &Mailbox, email: &ClaimedEmail) -> Result<Message, SendFailure> {
    let to = email.to_address.parse::<Mailbox>().map_err(|e| SendFailure {
        message: format!("recipient {:?} is not an address: {e}", email.to_address),
        permanent: true,
    })?;
    Message::builder()
        // A stable id: a message resent after a lost acknowledgement is
        // recognised as a duplicate by the receiving side.
        .message_id(Some(format!("<{}@{}>", email.id, from.email.domain())))
        .from(from.clone())
        .to(to)
        .subject(email.subject.as_str())
        .multipart(MultiPart::alternative_plain_html(
            email.text_body.clone(),
            email.html_body.clone(),
        ))
        .map_err(|e| SendFailure {
            message: format!("cannot build the message: {e}"),
            permanent: true,
        })
}
