//! Transactional email through an outbox.
//!
//! A service that needs to send an email calls [`enqueue`] inside its own
//! transaction, so the email exists exactly when the change that caused it
//! commits: a rolled-back registration sends nothing, and a committed one
//! cannot lose its verification email to an SMTP hiccup. A background
//! worker ([`spawn_worker`]) claims due rows with `FOR UPDATE SKIP LOCKED`,
//! so any number of instances can run it, and delivers them over SMTP with
//! retries and exponential backoff. Without `SMTP_URL` the worker writes
//! each email to the log instead, so a developer can follow its links.

mod model;
pub mod templates;
mod transport;
mod worker;

use chrono::{DateTime, Utc};
use diesel::QueryResult;
use diesel_async::AsyncPgConnection;
use tokio::sync::Notify;
use uuid::Uuid;

pub use model::MailStatus;
pub use worker::spawn_worker;

/// An email to send: one recipient, a plain-text and an HTML version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    /// The recipient's address.
    pub to: String,
    /// The subject line.
    pub subject: String,
    /// The plain-text part; carries every link in full.
    pub text: String,
    /// The HTML part.
    pub html: String,
    /// What the email is for (`verify_email`, `reset_password`, ...); stored
    /// for support and metrics.
    pub kind: &'static str,
}

/// Adds `email` to the outbox, due at once, and returns its id.
///
/// Run it inside the transaction of the change that causes the email: the
/// worker only sees the row once that transaction commits. Call [`wake`]
/// after the commit to have it delivered without waiting for the next poll.
pub async fn enqueue(conn: &mut AsyncPgConnection, email: &Email, now: DateTime<Utc>) -> QueryResult<Uuid> {
    model::insert(conn, email, now).await
}

/// Nudges the delivery workers of this process to look at the outbox now
/// rather than at their next poll. Cheap and optional: without it, an
/// email still goes out within the poll interval.
pub fn wake() {
    NUDGE.notify_waiters();
}

/// Shared by every worker of the process (tests run several apps in one
/// process; waking them all costs one extra empty poll each).
static NUDGE: Notify = Notify::const_new();
