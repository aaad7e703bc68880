//! Accounts at identity providers linked to users, and `unlinkIdentity`.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use tollgate_auth::{AppState, users as model, users::UserRow};
use tollgate_core::error::{AppError, AppResult};
use tollgate_core::request::RequestMeta;
use tollgate_db::schema::identities;
use tollgate_platform::audit::{self, AuditEntry};

/// A row of `identities`.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = identities, check_for_backend(diesel::pg::Pg))]
pub struct IdentityRow {
    /// Row id.
    pub id: Uuid,
    /// The user it signs in.
    pub user_id: Uuid,
    /// The provider's key.
    pub provider: String,
    /// The provider's id of the person.
    pub subject: String,
    /// The address the provider last reported.
    pub email: Option<String>,
    /// When it was linked.
    pub created_at: DateTime<Utc>,
    /// The last sign-in through it.
    pub last_used_at: Option<DateTime<Utc>>,
}

/// The identity with this provider and subject, if linked.
pub async fn find(conn: &mut AsyncPgConnection, provider: &str, subject: &str) -> QueryResult<Option<IdentityRow>> {
    identities::table
        .filter(identities::provider.eq(provider))
        .filter(identities::subject.eq(subject))
        .select(IdentityRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// A user's identities, oldest first.
pub async fn of_user(conn: &mut AsyncPgConnection, user_id: Uuid) -> QueryResult<Vec<IdentityRow>> {
    identities::table
        .filter(identities::user_id.eq(user_id))
        .order(identities::created_at.asc())
        .select(IdentityRow::as_select())
        .load(conn)
        .await
}

/// Links a provider's account to `user_id`.
pub async fn insert(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    provider: &str,
    subject: &str,
    email: Option<&str>,
    now: DateTime<Utc>,
) -> QueryResult<IdentityRow> {
    diesel::insert_into(identities::table)
        .values((
            identities::id.eq(Uuid::now_v7()),
            identities::user_id.eq(user_id),
            identities::provider.eq(provider),
            identities::subject.eq(subject),
            identities::email.eq(email),
            identities::created_at.eq(now),
            identities::last_used_at.eq(now),
        ))
        .returning(IdentityRow::as_returning())
        .get_result(conn)
        .await
}

/// Stamps a sign-in through an identity, with the address the provider
/// reports now.
pub async fn touch(conn: &mut AsyncPgConnection, id: Uuid, email: Option<&str>, now: DateTime<Utc>) -> QueryResult<()> {
    diesel::update(identities::table.find(id))
        .set((identities::last_used_at.eq(now), identities::email.eq(email)))
        .execute(conn)
        .await
        .map(|_| ())
}

/// Forgets every identity of a user (account deleted): the provider
/// account may sign up anew.
pub async fn delete_of_user(conn: &mut AsyncPgConnection, user_id: Uuid) -> QueryResult<usize> {
    diesel::delete(identities::table.filter(identities::user_id.eq(user_id)))
        .execute(conn)
        .await
}

/// `unlinkIdentity`: removes the caller's identity at `provider`, unless
/// it is their last way to sign in (CONFLICT): no password and no other
/// identity. NOT_FOUND when that provider is not linked.
pub async fn unlink(app: &AppState, user_id: Uuid, provider: &str, meta: &RequestMeta) -> AppResult<UserRow> {
    let now = app.now();
    let ip = Some(meta.client_ip.to_string());
    let mut conn = app.db().await?;
    conn.transaction::<_, AppError, _>(async |conn| {
        // The lock makes two unlinks of one account take turns, so they
        // cannot both see the other identity as the way that remains.
        let user = model::lock_live(conn, user_id)
            .await?
            .ok_or_else(AppError::unauthenticated)?;
        let linked = of_user(conn, user_id).await?;
        let identity = linked
            .iter()
            .find(|i| i.provider == provider)
            .ok_or_else(|| AppError::not_found("identity"))?;
        let other_ways = usize::from(user.password_hash.is_some()) + linked.len() - 1;
        if other_ways == 0 {
            return Err(AppError::conflict(
                "this is your last way to sign in: set a password (requestPasswordReset) or link another provider first",
            ));
        }
        diesel::delete(identities::table.find(identity.id)).execute(conn).await?;
        let entry = AuditEntry::new("identity.unlinked", Some(user_id), ip)
            .target("user", user_id)
            .metadata(serde_json::json!({ "provider": identity.provider }));
        audit::record(conn, entry, now).await?;
        Ok(user)
    })
    .await
}
