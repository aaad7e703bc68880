//! Outbox rows and their queries.

use chrono::{DateTime, Utc};
use diesel::{
    prelude::*,
    sql_types::{BigInt, Timestamptz},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::Email;
use tollgate_db::schema::email_outbox;
use tollgate_db::text_enum;

text_enum! {
    /// Where an outbox email is in its delivery.
    pub enum MailStatus {
        /// Waiting for (another) delivery attempt.
        Pending => "PENDING",
        /// Accepted by the SMTP server (or logged, without SMTP).
        Sent => "SENT",
        /// Given up on after too many attempts.
        Failed => "FAILED",
    }
}

/// An email about to be queued.
#[derive(Debug, Insertable)]
#[diesel(table_name = email_outbox)]
struct NewOutboxEmail<'a> {
    id: Uuid,
    to_address: &'a str,
    subject: &'a str,
    text_body: &'a str,
    html_body: &'a str,
    kind: &'a str,
    status: MailStatus,
    attempts: i32,
    next_attempt_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
}

/// What the worker needs of a claimed row to deliver it.
#[derive(Debug, Clone, QueryableByName)]
#[diesel(table_name = email_outbox, check_for_backend(diesel::pg::Pg))]
pub(super) struct ClaimedEmail {
    pub id: Uuid,
    pub to_address: String,
    pub subject: String,
    pub text_body: String,
    pub html_body: String,
    pub kind: String,
    /// Attempts including the one this claim starts.
    pub attempts: i32,
}

/// Inserts a pending email, due at `now`.
pub(super) async fn insert(conn: &mut AsyncPgConnection, email: &Email, now: DateTime<Utc>) -> QueryResult<Uuid> {
    // v7: ids sort by creation, which keeps the primary key index compact.
    let id = Uuid::now_v7();
    diesel::insert_into(email_outbox::table)
        .values(&NewOutboxEmail {
            id,
            to_address: &email.to,
            subject: &email.subject,
            text_body: &email.text,
            html_body: &email.html,
            kind: email.kind,
            status: MailStatus::Pending,
            attempts: 0,
            next_attempt_at: now,
            created_at: now,
        })
        .execute(conn)
        .await?;
    Ok(id)
}

/// Claims up to `limit` pending emails due at `now`, oldest first: counts
/// the attempt and pushes `next_attempt_at` to `lease_until`, so no other
/// worker takes them while they are being sent, and a worker that dies
/// mid-send leaves them due again once the lease runs out.
///
/// One statement: the sub-select's `FOR UPDATE SKIP LOCKED` makes
/// concurrent workers (on any instance) claim disjoint rows without
/// waiting for each other. Written in SQL so that `'PENDING'` is a literal:
/// PostgreSQL matches a partial index only against literals, and a bound
/// status would leave the cached generic plan scanning the whole history.
pub(super) async fn claim_due(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    limit: i64,
) -> QueryResult<Vec<ClaimedEmail>> {
    diesel::sql_query(
        "UPDATE email_outbox SET attempts = attempts + 1, next_attempt_at = $2 \
         WHERE id IN ( \
             SELECT id FROM email_outbox \
             WHERE status = 'PENDING' AND next_attempt_at <= $1 \
             ORDER BY next_attempt_at \
             LIMIT $3 \
             FOR UPDATE SKIP LOCKED) \
         RETURNING id, to_address, subject, text_body, html_body, kind, attempts",
    )
    .bind::<Timestamptz, _>(now)
    .bind::<Timestamptz, _>(lease_until)
    .bind::<BigInt, _>(limit)
    .get_results(conn)
    .await
}

/// Records a delivery and forgets the bodies: they hold live verification
/// and reset links, which must not sit readable in the database. Not
/// guarded by the claim, unlike
/// [`record_failure`]: a message the server accepted is sent, even if a
/// slow worker's lease ran out meanwhile.
pub(super) async fn mark_sent(
    conn: &mut AsyncPgConnection,
    claim: &ClaimedEmail,
    now: DateTime<Utc>,
) -> QueryResult<()> {
    diesel::update(email_outbox::table)
        .filter(email_outbox::id.eq(claim.id))
        .filter(email_outbox::status.eq(MailStatus::Pending))
        .set((
            email_outbox::status.eq(MailStatus::Sent),
            email_outbox::sent_at.eq(now),
            email_outbox::text_body.eq(""),
            email_outbox::html_body.eq(""),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Records a failed attempt: due again at `retry_at`, or FAILED for good
/// when `retry_at` is `None`, forgetting the bodies as [`mark_sent`] does
/// (a message given up on still holds live links). Only while the claim is
/// current (same attempt count), so a worker whose lease ran out cannot
/// push back or fail a row that another worker has since claimed.
pub(super) async fn record_failure(
    conn: &mut AsyncPgConnection,
    claim: &ClaimedEmail,
    error: &str,
    retry_at: Option<DateTime<Utc>>,
) -> QueryResult<()> {
    let target = email_outbox::table
        .filter(email_outbox::id.eq(claim.id))
        .filter(email_outbox::status.eq(MailStatus::Pending))
        .filter(email_outbox::attempts.eq(claim.attempts));
    match retry_at {
        Some(at) => {
            diesel::update(target)
                .set((email_outbox::next_attempt_at.eq(at), email_outbox::last_error.eq(error)))
                .execute(conn)
                .await?
        }
        None => {
            diesel::update(target)
                .set((
                    email_outbox::status.eq(MailStatus::Failed),
                    email_outbox::last_error.eq(error),
                    email_outbox::text_body.eq(""),
                    email_outbox::html_body.eq(""),
                ))
                .execute(conn)
                .await?
        }
    };
    Ok(())
}
