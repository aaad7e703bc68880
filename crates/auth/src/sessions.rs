//! Sessions: one per sign-in. Refresh tokens rotate on every use; a token
//! presented after it was rotated revokes the whole session (theft
//! detection), except within a short grace window in which two tabs
//! refreshing at once both get the current token.

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::{AppState, session_cache::Revocation};
use tollgate_core::error::{AppError, AppResult};
use tollgate_core::request::RequestMeta;
use tollgate_db::schema::{sessions, users};
use tollgate_platform::{
    announcements::{self, Recorded},
    audit::{self, AuditEntry},
};

/// How long the just-rotated refresh token is still answered (with the
/// current token) instead of being treated as stolen.
pub const REFRESH_GRACE: Duration = Duration::seconds(10);

/// A row of `sessions`.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = sessions, check_for_backend(diesel::pg::Pg))]
pub struct SessionRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub generation: i64,
    pub rotated_at: Option<DateTime<Utc>>,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    pub client_name: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoked_reason: Option<String>,
}

impl SessionRow {
    /// Neither revoked nor expired at `now`.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at > now
    }
}

/// The tokens handed to a client for a session.
#[derive(Debug, Clone)]
pub struct IssuedTokens {
    /// JWT for the Authorization header.
    pub access_token: String,
    /// Opaque token for `refreshSession`.
    pub refresh_token: String,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// The session.
    pub session: SessionRow,
}

/// Mints the tokens of a session's current generation.
pub fn tokens_for(app: &AppState, session: SessionRow) -> AppResult<IssuedTokens> {
    Ok(IssuedTokens {
        access_token: app.access_tokens().issue(session.user_id, session.id, app.now())?,
        refresh_token: app.refresh_tokens().issue(session.id, session.generation),
        expires_in: app.access_tokens().ttl_secs(),
        session,
    })
}

/// Starts a session for `user_id` (inside the caller's transaction).
pub async fn create(
    conn: &mut AsyncPgConnection,
    app: &AppState,
    user_id: Uuid,
    meta: &RequestMeta,
    client_name: Option<&str>,
) -> QueryResult<SessionRow> {
    let now = app.now();
    let ttl = Duration::from_std(app.config().refresh_token_ttl).unwrap_or(Duration::days(30));
    diesel::insert_into(sessions::table)
        .values((
            sessions::id.eq(Uuid::now_v7()),
            sessions::user_id.eq(user_id),
            sessions::user_agent.eq(meta.user_agent.as_deref()),
            sessions::ip.eq(meta.client_ip.to_string()),
            sessions::client_name.eq(client_name),
            sessions::created_at.eq(now),
            sessions::last_used_at.eq(now),
            sessions::expires_at.eq(now + ttl),
        ))
        .returning(SessionRow::as_returning())
        .get_result(conn)
        .await
}

/// What a refresh attempt came to.
enum Refresh {
    Issued(SessionRow),
    Refused,
    TheftDetected(SessionRow, Recorded),
}

/// `refreshSession`: rotates the session's refresh token.
#[tracing::instrument(skip_all)]
pub async fn refresh(app: &AppState, token: &str, meta: &RequestMeta) -> AppResult<IssuedTokens> {
    let Some((session_id, generation)) = app.refresh_tokens().parse(token) else {
        return Err(AppError::unauthenticated());
    };
    let now = app.now();
    let mut conn = app.db().await?;
    let ip = meta.client_ip.to_string();
    let outcome = conn
        .transaction::<_, diesel::result::Error, _>(async move |conn| {
            // Locks the session (and its user row, so a suspension cannot
            // slip in between); a suspended or deleted user's session is
            // not rotated at all.
            let session: Option<SessionRow> = sessions::table
                .inner_join(users::table)
                .filter(sessions::id.eq(session_id))
                .filter(users::deleted_at.is_null())
                .filter(users::suspended_at.is_null())
                .select(SessionRow::as_select())
                .for_update()
                .first(conn)
                .await
                .optional()?;
            let Some(session) = session.filter(|s| s.is_live(now)) else {
                return Ok(Refresh::Refused);
            };
            let just_rotated = session.rotated_at.is_some_and(|at| now - at <= REFRESH_GRACE);
            if generation == session.generation - 1 && just_rotated {
                return Ok(Refresh::Issued(session));
            }
            if generation != session.generation {
                let revoked = revoke_where(
                    conn,
                    Which::One(session.user_id, session.id),
                    "refresh token reused",
                    now,
                )
                .await?;
                let Some(session) = revoked.into_iter().next() else {
                    return Ok(Refresh::Refused);
                };
                let entry = AuditEntry::new("session.revoked", Some(session.user_id), Some(ip))
                    .target("session", session.id)
                    .metadata(serde_json::json!({ "reason": "refresh token reused" }));
                audit::record(conn, entry, now).await?;
                let announced = announce_ended(conn, std::slice::from_ref(&session)).await?;
                return Ok(Refresh::TheftDetected(session, announced));
            }
            let rotated = diesel::update(sessions::table.find(session.id))
                .set((
                    sessions::generation.eq(session.generation + 1),
                    sessions::rotated_at.eq(now),
                    sessions::last_used_at.eq(now),
                    sessions::ip.eq(ip),
                ))
                .returning(SessionRow::as_returning())
                .get_result(conn)
                .await?;
            Ok(Refresh::Issued(rotated))
        })
        .await?;
    drop(conn);
    match outcome {
        Refresh::Issued(session) => tokens_for(app, session),
        Refresh::Refused => Err(AppError::unauthenticated()),
        Refresh::TheftDetected(session, announced) => {
            tracing::warn!(session = %session.id, user = %session.user_id, "refresh token reuse: session revoked");
            app.announcements().committed(announced);
            Err(AppError::unauthenticated())
        }
    }
}

/// Which of one user's sessions to end. Always scoped to the user, so a
/// session id from someone else never matches.
enum Which {
    One(Uuid, Uuid),
    AllOfUserBut(Uuid, Uuid),
}

/// Revokes the live sessions `which` names in one statement; returns them
/// (a session already revoked by a concurrent call is not returned twice).
async fn revoke_where(
    conn: &mut AsyncPgConnection,
    which: Which,
    reason: &str,
    now: DateTime<Utc>,
) -> QueryResult<Vec<SessionRow>> {
    // `(id = x) = wanted`: the session x itself, or every other one. One
    // expression type for both keeps this a single statement (the user's
    // index narrows it to a handful of rows either way).
    let (user_id, id, wanted) = match which {
        Which::One(user_id, id) => (user_id, id, true),
        Which::AllOfUserBut(user_id, keep) => (user_id, keep, false),
    };
    diesel::update(
        sessions::table
            .filter(sessions::user_id.eq(user_id))
            .filter(sessions::revoked_at.is_null())
            .filter(sessions::expires_at.gt(now))
            .filter(sessions::id.eq(id).eq(wanted)),
    )
    .set((sessions::revoked_at.eq(now), sessions::revoked_reason.eq(reason)))
    .returning(SessionRow::as_returning())
    .get_results(conn)
    .await
}

/// Ends every live session of a user but `keep`; returns those ended.
pub async fn revoke_all_of_user(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    keep: Option<Uuid>,
    reason: &str,
    now: DateTime<Utc>,
) -> QueryResult<Vec<SessionRow>> {
    revoke_where(
        conn,
        Which::AllOfUserBut(user_id, keep.unwrap_or(Uuid::nil())),
        reason,
        now,
    )
    .await
}

/// Which of a user's sessions [`end`] ends.
pub enum Ending {
    /// This one.
    One(Uuid),
    /// All but this one.
    AllBut(Uuid),
}

/// Ends sessions of `user_id`, audits each as `action` and announces them,
/// in one transaction. Returns how many ended.
pub async fn end(
    app: &AppState,
    user_id: Uuid,
    which: Ending,
    action: &'static str,
    ip: Option<String>,
) -> AppResult<usize> {
    let now = app.now();
    let mut conn = app.db().await?;
    let (ended, announced) = conn
        .transaction::<_, diesel::result::Error, _>(async |conn| {
            let ended = match which {
                Ending::One(id) => revoke_where(conn, Which::One(user_id, id), action, now).await?,
                Ending::AllBut(keep) => revoke_where(conn, Which::AllOfUserBut(user_id, keep), action, now).await?,
            };
            for session in &ended {
                let entry = AuditEntry::new(action, Some(user_id), ip.clone()).target("session", session.id);
                audit::record(conn, entry, now).await?;
            }
            let announced = announce_ended(conn, &ended).await?;
            Ok((ended.len(), announced))
        })
        .await?;
    drop(conn);
    app.announcements().committed(announced);
    Ok(ended)
}

/// Announces, in the caller's transaction, that these sessions ended, so
/// their access tokens stop working at once on every instance.
pub async fn announce_ended(conn: &mut AsyncPgConnection, ended: &[SessionRow]) -> QueryResult<Recorded> {
    if ended.is_empty() {
        return Ok(Recorded::default());
    }
    let revocation = Revocation {
        sessions: ended.iter().map(|s| s.id).collect(),
        user: None,
    };
    announcements::record(conn, vec![revocation.announcement()]).await
}

/// Announces, in the caller's transaction, that the account closed
/// (suspended or deleted): every session of it ended (`ended` are those
/// that were live) and every key it created stopped working.
pub async fn announce_account_closed(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    ended: &[SessionRow],
) -> QueryResult<Recorded> {
    let revocation = Revocation {
        sessions: ended.iter().map(|s| s.id).collect(),
        user: Some(user_id),
    };
    announcements::record(conn, vec![revocation.announcement()]).await
}

/// A user's live sessions, newest first.
pub async fn live_of_user(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    now: DateTime<Utc>,
) -> QueryResult<Vec<SessionRow>> {
    sessions::table
        .filter(sessions::user_id.eq(user_id))
        .filter(sessions::revoked_at.is_null())
        .filter(sessions::expires_at.gt(now))
        .order(sessions::created_at.desc())
        .select(SessionRow::as_select())
        .load(conn)
        .await
}

/// Whether a session is live and its user may act: the check behind every
/// access token, done when the cache does not know the session.
pub async fn check_live(
    conn: &mut AsyncPgConnection,
    session_id: Uuid,
    user_id: Uuid,
    now: DateTime<Utc>,
) -> QueryResult<Option<DateTime<Utc>>> {
    sessions::table
        .inner_join(users::table)
        .filter(sessions::id.eq(session_id))
        .filter(sessions::user_id.eq(user_id))
        .filter(sessions::revoked_at.is_null())
        .filter(sessions::expires_at.gt(now))
        .filter(users::deleted_at.is_null())
        .filter(users::suspended_at.is_null())
        .select(sessions::expires_at)
        .first(conn)
        .await
        .optional()
}

/// Whether the session belongs to the user (revoked or not).
pub async fn owned_by(conn: &mut AsyncPgConnection, session_id: Uuid, user_id: Uuid) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        sessions::table
            .filter(sessions::id.eq(session_id))
            .filter(sessions::user_id.eq(user_id)),
    ))
    .get_result(conn)
    .await
}
