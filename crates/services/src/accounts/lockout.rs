//! Login lockout per email: after too many wrong passwords an email is
//! locked for a while, whether or not an account has it (so the lockout
//! does not reveal which emails are registered).
//!
//! An attempt is reserved *before* the password is checked, in one atomic
//! statement, so parallel logins can never verify more passwords than the
//! threshold allows. A wrong password then leaves the count as it is; a
//! right one calls [`clear`].

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use diesel::{
    prelude::*,
    sql_types::{Integer, Interval, Text, Timestamptz},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use tollgate_db::schema::login_attempts;

/// Whether a login may check its password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// Go ahead: this attempt is counted.
    Allowed,
    /// The email is locked: answer ACCOUNT_LOCKED without checking.
    Locked {
        /// Seconds until the lock ends: at least 1, at most the window
        /// (rounded up to whole seconds).
        retry_after_secs: u64,
    },
}

/// Reserves one attempt. The right-hand sides of `DO UPDATE SET` all read
/// the row as it was, so each branch below decides from the old state:
/// a lock still running changes nothing; a window that has passed starts a
/// new one at this attempt; otherwise the attempt is added. Exceeding the
/// threshold locks the email for one window from now.
///
/// $1 email, $2 now, $3 threshold, $4 window.
const TAKE_ATTEMPT: &str = "
INSERT INTO login_attempts AS la (email, attempts, window_started_at, locked_until, updated_at)
VALUES ($1, 1, $2, CASE WHEN 1 > $3 THEN $2 + $4 END, $2)
ON CONFLICT (email) DO UPDATE SET
    attempts = CASE
        WHEN la.locked_until > $2 THEN la.attempts
        WHEN la.window_started_at + $4 <= $2 THEN 1
        ELSE la.attempts + 1
    END,
    window_started_at = CASE
        WHEN la.locked_until > $2 THEN la.window_started_at
        WHEN la.window_started_at + $4 <= $2 THEN $2
        ELSE la.window_started_at
    END,
    locked_until = CASE
        WHEN la.locked_until > $2 THEN la.locked_until
        WHEN la.window_started_at + $4 <= $2 THEN CASE WHEN 1 > $3 THEN $2 + $4 END
        WHEN la.attempts + 1 > $3 THEN $2 + $4
    END,
    updated_at = $2
RETURNING locked_until
";

#[derive(QueryableByName)]
#[diesel(table_name = login_attempts, check_for_backend(diesel::pg::Pg))]
struct Reserved {
    locked_until: Option<DateTime<Utc>>,
}

/// Reserves a login attempt for `email` (already normalized, see
/// [`normalize_email`](super::email::normalize_email)) before its password
/// is checked.
///
/// Semantics: up to `threshold` attempts are allowed within `window` of
/// the first one; after `threshold` wrong passwords within the window,
/// further attempts get [`Attempt::Locked`] (ACCOUNT_LOCKED) for `window`
/// from the first refused one. Attempts while locked do not extend the
/// lock. When the lock (or an unlocked window) has run out, counting
/// starts afresh. `now` comes from the application clock.
pub async fn take_attempt(
    conn: &mut AsyncPgConnection,
    email: &str,
    now: DateTime<Utc>,
    threshold: u32,
    window: Duration,
) -> QueryResult<Attempt> {
    let length = TimeDelta::from_std(window).map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?;
    // Thresholds beyond i32 are "never lock" in practice.
    let threshold = i32::try_from(threshold).unwrap_or(i32::MAX);
    let reserved: Reserved = diesel::sql_query(TAKE_ATTEMPT)
        .bind::<Text, _>(email)
        .bind::<Timestamptz, _>(now)
        .bind::<Integer, _>(threshold)
        .bind::<Interval, _>(length)
        .get_result(conn)
        .await?;
    Ok(match reserved.locked_until {
        Some(until) if until > now => {
            let window_secs = window.as_millis().div_ceil(1000).max(1);
            let window_secs = u64::try_from(window_secs).unwrap_or(u64::MAX);
            let left_ms = (until - now).num_milliseconds().max(0).unsigned_abs();
            Attempt::Locked {
                retry_after_secs: left_ms.div_ceil(1000).clamp(1, window_secs),
            }
        }
        _ => Attempt::Allowed,
    })
}

/// Forgets the attempts of `email`; called after a successful login.
pub async fn clear(conn: &mut AsyncPgConnection, email: &str) -> QueryResult<()> {
    diesel::delete(login_attempts::table.filter(login_attempts::email.eq(email)))
        .execute(conn)
        .await?;
    Ok(())
}

/// Deletes rows whose window and lock have both run out: they no longer
/// change any decision, and emails that never log in successfully would
/// otherwise stay forever. Returns how many were deleted. For a periodic
/// job; `window` must be the one [`take_attempt`] is called with.
pub async fn prune(conn: &mut AsyncPgConnection, now: DateTime<Utc>, window: Duration) -> QueryResult<usize> {
    let length = TimeDelta::from_std(window).map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?;
    let Some(window_start) = now.checked_sub_signed(length) else {
        return Ok(0);
    };
    diesel::delete(
        login_attempts::table
            .filter(login_attempts::window_started_at.le(window_start))
            .filter(
                login_attempts::locked_until
                    .is_null()
                    .or(login_attempts::locked_until.le(now)),
            ),
    )
    .execute(conn)
    .await
}
