//! API key rows and their queries.

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::{
    keys::scope::{ApiKeyScope, ScopeSet},
    roles::OrgRole,
};
use tollgate_db::schema::{api_keys, memberships, users};

/// How often `last_used_at` is written per key at most.
pub const LAST_USED_RESOLUTION: Duration = Duration::minutes(1);

/// A row of `api_keys`.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = api_keys, check_for_backend(diesel::pg::Pg))]
pub struct ApiKeyRow {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub created_by: Uuid,
    pub name: String,
    pub prefix: String,
    pub secret_hash: Vec<u8>,
    pub scopes: Vec<Option<ApiKeyScope>>,
    pub allowed_models: Option<Vec<Option<String>>>,
    pub allowed_ips: Option<Vec<Option<String>>>,
    pub token_limit: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl ApiKeyRow {
    /// Its scopes, in the order they were given.
    pub fn scope_list(&self) -> Vec<ApiKeyScope> {
        self.scopes.iter().flatten().copied().collect()
    }

    /// Its scopes as a set.
    pub fn scope_set(&self) -> ScopeSet {
        self.scopes.iter().flatten().copied().collect()
    }

    /// Model names it may be authorized for; None = every enabled model.
    pub fn allowed_model_list(&self) -> Option<Vec<String>> {
        self.allowed_models
            .as_ref()
            .map(|list| list.iter().flatten().cloned().collect())
    }

    /// Addresses and ranges it may be used from; None = any.
    pub fn allowed_ip_list(&self) -> Option<Vec<String>> {
        self.allowed_ips
            .as_ref()
            .map(|list| list.iter().flatten().cloned().collect())
    }

    /// Whether it has passed its expiry at `now`.
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// Neither revoked nor expired: what counts against `maxApiKeys`.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && !self.is_expired(now)
    }
}

/// Inserts a key.
pub async fn insert(conn: &mut AsyncPgConnection, key: &ApiKeyRow) -> QueryResult<ApiKeyRow> {
    diesel::insert_into(api_keys::table)
        .values(key)
        .returning(ApiKeyRow::as_returning())
        .get_result(conn)
        .await
}

/// One key by id.
pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<ApiKeyRow>> {
    api_keys::table
        .find(id)
        .select(ApiKeyRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// One key by id, locked until the transaction ends.
pub async fn lock(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<ApiKeyRow>> {
    api_keys::table
        .find(id)
        .select(ApiKeyRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// Keys that may still be used, expiry aside (callers check that against
/// their own clock): not revoked, and their creator is an unsuspended,
/// undeleted member of their organization.
#[diesel::dsl::auto_type(no_type_alias)]
fn usable_keys() -> _ {
    let creator_is_member: diesel::dsl::And<
        diesel::dsl::Eq<memberships::organization_id, api_keys::organization_id>,
        diesel::dsl::Eq<memberships::user_id, api_keys::created_by>,
    > = memberships::organization_id
        .eq(api_keys::organization_id)
        .and(memberships::user_id.eq(api_keys::created_by));
    api_keys::table
        .inner_join(users::table)
        .inner_join(memberships::table.on(creator_is_member))
        .filter(api_keys::revoked_at.is_null())
        .filter(users::suspended_at.is_null())
        .filter(users::deleted_at.is_null())
}

/// The key with this secret hash if it may still be used, expiry aside
/// (the caller checks that against its clock on every use, cached or not),
/// with its creator's current role in the key's organization (a key does
/// no more than that role allows).
pub async fn find_usable_by_hash(
    conn: &mut AsyncPgConnection,
    hash: &[u8],
) -> QueryResult<Option<(ApiKeyRow, OrgRole)>> {
    usable_keys()
        .filter(api_keys::secret_hash.eq(hash))
        .select((ApiKeyRow::as_select(), memberships::role))
        .first(conn)
        .await
        .optional()
}

/// Whether the key may still be used at `now`, asked of the database.
pub async fn is_usable(conn: &mut AsyncPgConnection, key_id: Uuid, now: DateTime<Utc>) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        usable_keys()
            .filter(api_keys::id.eq(key_id))
            .filter(api_keys::expires_at.is_null().or(api_keys::expires_at.gt(now))),
    ))
    .get_result(conn)
    .await
}

/// Revokes every live key `user_id` created in the organization (their
/// membership there ended) and returns their ids.
pub async fn revoke_all_of_member(
    conn: &mut AsyncPgConnection,
    organization_id: Uuid,
    user_id: Uuid,
    now: DateTime<Utc>,
) -> QueryResult<Vec<Uuid>> {
    diesel::update(
        api_keys::table
            .filter(api_keys::organization_id.eq(organization_id))
            .filter(api_keys::created_by.eq(user_id))
            .filter(api_keys::revoked_at.is_null()),
    )
    .set(api_keys::revoked_at.eq(now))
    .returning(api_keys::id)
    .get_results(conn)
    .await
}

/// Revokes every live key `user_id` created, in any organization, and
/// returns them.
pub async fn revoke_all_of_creator(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    now: DateTime<Utc>,
) -> QueryResult<Vec<ApiKeyRow>> {
    diesel::update(
        api_keys::table
            .filter(api_keys::created_by.eq(user_id))
            .filter(api_keys::revoked_at.is_null()),
    )
    .set(api_keys::revoked_at.eq(now))
    .returning(ApiKeyRow::as_returning())
    .get_results(conn)
    .await
}

/// Keys of the organization that count against `maxApiKeys` at `now`.
pub async fn count_active(conn: &mut AsyncPgConnection, organization_id: Uuid, now: DateTime<Utc>) -> QueryResult<i64> {
    api_keys::table
        .filter(api_keys::organization_id.eq(organization_id))
        .filter(api_keys::revoked_at.is_null())
        .filter(api_keys::expires_at.is_null().or(api_keys::expires_at.gt(now)))
        .count()
        .get_result(conn)
        .await
}

/// Every key of these organizations, oldest first (the order of
/// `api_keys_organization_idx`).
pub async fn of_organizations(conn: &mut AsyncPgConnection, organization_ids: &[Uuid]) -> QueryResult<Vec<ApiKeyRow>> {
    api_keys::table
        .filter(api_keys::organization_id.eq_any(organization_ids))
        .order((api_keys::organization_id, api_keys::created_at, api_keys::id))
        .select(ApiKeyRow::as_select())
        .load(conn)
        .await
}

/// Marks a key revoked at `now`.
pub async fn mark_revoked(conn: &mut AsyncPgConnection, id: Uuid, now: DateTime<Utc>) -> QueryResult<ApiKeyRow> {
    diesel::update(api_keys::table.find(id))
        .set(api_keys::revoked_at.eq(now))
        .returning(ApiKeyRow::as_returning())
        .get_result(conn)
        .await
}

/// Records a use at `now` unless one was recorded less than
/// [`LAST_USED_RESOLUTION`] before: the condition keeps instances that each
/// throttle on their own from writing more than about once a minute between
/// them. Returns whether the row was written.
pub async fn touch_last_used(conn: &mut AsyncPgConnection, id: Uuid, now: DateTime<Utc>) -> QueryResult<bool> {
    let written = diesel::update(
        api_keys::table.find(id).filter(
            api_keys::last_used_at
                .is_null()
                .or(api_keys::last_used_at.le(now - LAST_USED_RESOLUTION)),
        ),
    )
    .set(api_keys::last_used_at.eq(now))
    .execute(conn)
    .await?;
    Ok(written > 0)
}

/// Keys created by `user_id` that are not revoked, in any organization.
pub async fn unrevoked_ids_of_creator(conn: &mut AsyncPgConnection, user_id: Uuid) -> QueryResult<Vec<Uuid>> {
    api_keys::table
        .filter(api_keys::created_by.eq(user_id))
        .filter(api_keys::revoked_at.is_null())
        .select(api_keys::id)
        .load(conn)
        .await
}
