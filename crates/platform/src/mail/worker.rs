//! The delivery loop: claim due emails, send them, record the outcome.

use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use futures_util::future::join_all;

use super::{
    NUDGE,
    model::{self, ClaimedEmail},
    transport::{Mailer, SendFailure},
};
use crate::state::Platform;

/// How often an idle worker looks for due emails.
const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// Pause after the database could not be reached, so an outage is not
/// logged twice a second.
const ERROR_PAUSE: Duration = Duration::from_secs(5);
/// Emails claimed (and sent concurrently) at once.
const BATCH_SIZE: usize = 10;
/// How long a claim keeps other workers off a row. Far longer than a batch
/// takes (each SMTP exchange times out after 30 s), and the price of a
/// worker dying mid-send: its emails go out this much later.
const CLAIM_LEASE: chrono::Duration = chrono::Duration::minutes(5);
/// Attempts before an email is marked FAILED.
const MAX_ATTEMPTS: i32 = 8;
/// Wait before the first retry; doubled for each further one.
const FIRST_RETRY: chrono::Duration = chrono::Duration::seconds(5);
/// Longest wait between two attempts.
const MAX_RETRY: chrono::Duration = chrono::Duration::minutes(10);
/// `last_error` keeps this many characters of the failure.
const MAX_ERROR_CHARS: usize = 1000;

/// Starts the outbox worker of `app`. It runs until the app's shutdown
/// signal, and is tracked so shutdown waits for the batch in hand.
pub fn spawn_worker(app: &Platform) {
    let mailer = Mailer::from_config(app.config());
    let state = app.clone();
    app.tasks().spawn(tollgate_db::hold::scoped(run(state, mailer)));
}

async fn run(app: Platform, mailer: Mailer) {
    let shutdown = app.shutdown_signal().clone();
    while !shutdown.is_cancelled() {
        // Listening before the claim, so a nudge sent while this round
        // claims or sends is not lost.
        let nudged = NUDGE.notified();
        tokio::pin!(nudged);
        nudged.as_mut().enable();

        let pause = match deliver_due(&app, &mailer).await {
            // A full batch: more may be due, go on at once.
            Ok(claimed) if claimed == BATCH_SIZE => continue,
            Ok(_) => POLL_INTERVAL,
            Err(e) => {
                tracing::warn!(error = ?e, "email outbox: delivery round failed");
                ERROR_PAUSE
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(pause) => {}
            () = &mut nudged => {}
        }
    }
}

/// One round: claims a batch of due emails, sends them concurrently and
/// records each outcome. Returns how many were claimed.
async fn deliver_due(app: &Platform, mailer: &Mailer) -> anyhow::Result<usize> {
    let claimed = {
        let mut conn = app.jobs_pool().get().await.context("getting a connection")?;
        let now = app.now();
        model::claim_due(&mut conn, now, now + CLAIM_LEASE, BATCH_SIZE as i64)
            .await
            .context("claiming due emails")?
        // The connection goes back to the pool while SMTP talks.
    };
    if claimed.is_empty() {
        return Ok(0);
    }
    let outcomes = join_all(claimed.iter().map(|email| mailer.send(email))).await;

    let mut conn = app.jobs_pool().get().await.context("getting a connection")?;
    for (email, outcome) in claimed.iter().zip(outcomes) {
        // A row whose outcome cannot be written stays claimed and is sent
        // again when its lease runs out: at least once, never lost.
        record(&mut conn, email, outcome, app.now())
            .await
            .with_context(|| format!("recording the delivery of email {}", email.id))?;
    }
    Ok(claimed.len())
}

async fn record(
    conn: &mut AsyncPgConnection,
    email: &ClaimedEmail,
    outcome: Result<(), SendFailure>,
    now: DateTime<Utc>,
) -> diesel::QueryResult<()> {
    let failure = match outcome {
        Ok(()) => {
            tracing::debug!(id = %email.id, kind = %email.kind, attempts = email.attempts, "email sent");
            return model::mark_sent(conn, email, now).await;
        }
        Err(failure) => failure,
    };
    let give_up = failure.permanent || email.attempts >= MAX_ATTEMPTS;
    let retry_at = (!give_up).then(|| now + retry_delay(email.attempts));
    let error: String = failure.message.chars().take(MAX_ERROR_CHARS).collect();
    model::record_failure(conn, email, &error, retry_at).await?;
    match retry_at {
        Some(at) => tracing::warn!(
            id = %email.id, kind = %email.kind, attempts = email.attempts, retry_at = %at, %error,
            "email delivery failed, will retry"
        ),
        None => tracing::error!(
            id = %email.id, kind = %email.kind, attempts = email.attempts, %error,
            "email delivery failed, giving up"
        ),
    }
    Ok(())
}

/// Wait after the `attempts`-th failed attempt: 5 s, 10 s, 20 s, ...
/// capped at [`MAX_RETRY`].
fn retry_delay(attempts: i32) -> chrono::Duration {
    // Clamped so the shift cannot overflow; the cap is reached long before.
    let doublings = attempts.saturating_sub(1).clamp(0, 16);
    (FIRST_RETRY * (1 << doublings)).min(MAX_RETRY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_up_to_a_cap() {
        let secs: Vec<i64> = (1..=MAX_ATTEMPTS).map(|n| retry_delay(n).num_seconds()).collect();
        assert_eq!(secs, [5, 10, 20, 40, 80, 160, 320, 600]);
        assert_eq!(retry_delay(1000), MAX_RETRY);
        assert_eq!(retry_delay(0), FIRST_RETRY);
    }
}
