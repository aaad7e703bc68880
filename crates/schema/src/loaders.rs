//! Per-request batch loaders. Built fresh for every execution (see
//! [`fresh_loaders`]) so nothing cached crosses requests or tenants; each
//! turns the fields of one query level into one SQL statement, whatever the
//! number of parents.

use std::{collections::HashMap, hash::Hash};

use async_graphql::{
    Data,
    dataloader::{CacheFactory, DataLoader, HashMapCache, Loader, NoCache},
    extensions::ExtensionContext,
};
use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use uuid::Uuid;

use tollgate_auth::AppState;
use tollgate_auth::{
    keys::{model as api_keys, model::ApiKeyRow},
    users as accounts,
    users::{UserRow, UserSummary},
};
use tollgate_core::error::AppError;
use tollgate_db::{DbPool, hold, pool::spawn_in_operation};
use tollgate_services::{
    orgs::{
        invitation_rows::{self, InvitationRow},
        model as orgs,
        model::{MembershipRow, OrganizationRow},
    },
    plans::{
        model as plans,
        model::PlanRow,
        subscription::{self, SubscriptionRow},
    },
    providers::routes::{self as model_routes, RouteTo},
    usage::{
        counters::{self, TokensOf},
        quota::{self, QuotaSnapshot},
        reservations,
    },
};

/// Users by id.
pub struct UserLoader {
    pool: DbPool,
}

impl Loader<Uuid> for UserLoader {
    type Value = UserRow;
    type Error = AppError;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, UserRow>, AppError> {
        let mut conn = self.pool.get().await?;
        let rows = accounts::find_by_ids(&mut conn, keys).await?;
        Ok(rows.into_iter().map(|row| (row.id, row)).collect())
    }
}

/// Organizations by id.
pub struct OrganizationLoader {
    pool: DbPool,
}

impl Loader<Uuid> for OrganizationLoader {
    type Value = OrganizationRow;
    type Error = AppError;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, OrganizationRow>, AppError> {
        let mut conn = self.pool.get().await?;
        let rows = orgs::find_by_ids(&mut conn, keys).await?;
        Ok(rows.into_iter().map(|row| (row.id, row)).collect())
    }
}

/// The memberships of an organization, oldest first.
pub struct MembershipsByOrganizationLoader {
    pool: DbPool,
}

impl Loader<Uuid> for MembershipsByOrganizationLoader {
    type Value = Vec<MembershipRow>;
    type Error = AppError;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Vec<MembershipRow>>, AppError> {
        let mut conn = self.pool.get().await?;
        let rows = orgs::memberships_of_organizations(&mut conn, keys).await?;
        Ok(group(keys, rows, |row| row.organization_id))
    }
}

/// The memberships of an organization with each member's user, oldest
/// first, in one statement (a join). Loading the memberships and then
/// their users by id took two, and under the plan PostgreSQL keeps for the
/// second (a list of ids as one parameter) it scanned every user.
pub struct MembersByOrganizationLoader {
    pool: DbPool,
}

impl Loader<Uuid> for MembersByOrganizationLoader {
    type Value = Vec<(MembershipRow, UserSummary)>;
    type Error = AppError;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, AppError> {
        let mut conn = self.pool.get().await?;
        let rows = orgs::members_of_organizations(&mut conn, keys).await?;
        Ok(group(keys, rows, |(membership, _)| membership.organization_id))
    }
}

/// The memberships of a user, oldest first.
pub struct MembershipsByUserLoader {
    pool: DbPool,
}

impl Loader<Uuid> for MembershipsByUserLoader {
    type Value = Vec<MembershipRow>;
    type Error = AppError;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Vec<MembershipRow>>, AppError> {
        let mut conn = self.pool.get().await?;
        let rows = orgs::memberships_of_users(&mut conn, keys).await?;
        Ok(group(keys, rows, |row| row.user_id))
    }
}

/// Plans by id.
pub struct PlanLoader {
    pool: DbPool,
}

impl Loader<Uuid> for PlanLoader {
    type Value = PlanRow;
    type Error = AppError;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, PlanRow>, AppError> {
        let mut conn = self.pool.get().await?;
        let rows = plans::find_by_ids(&mut conn, keys).await?;
        Ok(rows.into_iter().map(|row| (row.id, row)).collect())
    }
}

/// Billing subscription rows by organization id.
pub struct BillingSubscriptionLoader {
    pool: DbPool,
}

impl Loader<Uuid> for BillingSubscriptionLoader {
    type Value = SubscriptionRow;
    type Error = AppError;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, SubscriptionRow>, AppError> {
        let mut conn = self.pool.get().await?;
        let rows = subscription::find_by_organizations(&mut conn, keys).await?;
        Ok(rows.into_iter().map(|row| (row.organization_id, row)).collect())
    }
}

/// Pending invitations by organization id, newest first.
pub struct PendingInvitationsLoader {
    pool: DbPool,
    now: DateTime<Utc>,
}

impl Loader<Uuid> for PendingInvitationsLoader {
    type Value = Vec<InvitationRow>;
    type Error = AppError;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Vec<InvitationRow>>, AppError> {
        let mut conn = self.pool.get().await?;
        let rows = invitation_rows::pending_of_organizations(&mut conn, keys, self.now).await?;
        Ok(group(keys, rows, |row| row.organization_id))
    }
}

/// Every API key of an organization, oldest first.
pub struct ApiKeysByOrganizationLoader {
    pool: DbPool,
}

impl Loader<Uuid> for ApiKeysByOrganizationLoader {
    type Value = Vec<ApiKeyRow>;
    type Error = AppError;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Vec<ApiKeyRow>>, AppError> {
        let mut conn = self.pool.get().await?;
        let rows = api_keys::of_organizations(&mut conn, keys).await?;
        Ok(group(keys, rows, |row| row.organization_id))
    }
}

/// Groups rows under their key, keeping their order; every asked key gets
/// an entry (empty when it has no rows), so "none" is not "not loaded".
pub(crate) fn group<T>(keys: &[Uuid], rows: Vec<T>, key_of: impl Fn(&T) -> Uuid) -> HashMap<Uuid, Vec<T>> {
    let mut grouped: HashMap<Uuid, Vec<T>> = keys.iter().map(|key| (*key, Vec::new())).collect();
    for row in rows {
        grouped.entry(key_of(&row)).or_default().push(row);
    }
    grouped
}

/// A per-request loader that refuses to be asked by work holding a pooled
/// connection: its batch runs in another task that asks the pool, so
/// waiting for it while holding one is the pool deadlock of
/// [`tollgate_db::hold`], spread over two tasks.
pub struct GuardedLoader<L, C = NoCache>(DataLoader<L, C>);

impl<L: Send + Sync + 'static, C: CacheFactory> GuardedLoader<L, C> {
    /// The value for `key`, loaded in a batch with the other keys asked
    /// for at the same time.
    pub async fn load_one<K>(&self, key: K) -> Result<Option<L::Value>, AppError>
    where
        K: Send + Sync + Hash + Eq + Clone + 'static,
        L: Loader<K, Error = AppError>,
    {
        hold::ensure_free("asked a per-request loader")?;
        self.0.load_one(key).await
    }

    /// The values for `keys` (those found), loaded in a batch with the
    /// other keys asked for at the same time.
    pub async fn load_many<K>(&self, keys: impl IntoIterator<Item = K>) -> Result<HashMap<K, L::Value>, AppError>
    where
        K: Send + Sync + Hash + Eq + Clone + 'static,
        L: Loader<K, Error = AppError>,
    {
        hold::ensure_free("asked a per-request loader")?;
        self.0.load_many(keys).await
    }

    /// Forgets what it cached.
    pub fn clear<K>(&self)
    where
        K: Send + Sync + Hash + Eq + Clone + 'static,
        L: Loader<K>,
    {
        self.0.clear::<K>();
    }
}

/// A loader without a cache whose batches run in scopes of their own.
fn loader<L: Send + Sync + 'static>(loader: L) -> GuardedLoader<L> {
    GuardedLoader(DataLoader::new(loader, spawn_scoped))
}

/// A loader that caches for the request, batches in scopes of their own.
fn cached_loader<L: Send + Sync + 'static>(loader: L) -> GuardedLoader<L, HashMapCache> {
    GuardedLoader(DataLoader::with_cache(loader, spawn_scoped, HashMapCache::default()))
}

/// Runs a batch in a task and connection scope of its own, counting its
/// statements against the operation that asked for it.
fn spawn_scoped(batch: BoxFuture<'static, ()>) -> tokio::task::JoinHandle<()> {
    spawn_in_operation(hold::scoped(batch))
}

/// Tokens used in the current window by keys and members (ApiKey.tokensUsed,
/// Membership.tokensUsed over a list), through
/// [`counters::tokens_used_many`].
pub struct TokensUsedLoader {
    pool: DbPool,
    now: DateTime<Utc>,
}

impl Loader<TokensOf> for TokensUsedLoader {
    type Value = i64;
    type Error = AppError;

    async fn load(&self, keys: &[TokensOf]) -> Result<HashMap<TokensOf, i64>, AppError> {
        let mut conn = self.pool.get().await?;
        counters::tokens_used_many(&mut conn, keys, self.now).await
    }
}

/// Quotas of many organizations (Organization.quota over a list), through
/// [`quota::of_organizations`].
pub struct QuotaLoader {
    pool: DbPool,
    now: DateTime<Utc>,
}

impl Loader<Uuid> for QuotaLoader {
    type Value = QuotaSnapshot;
    type Error = AppError;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, QuotaSnapshot>, AppError> {
        let mut conn = self.pool.get().await?;
        quota::of_organizations(&mut conn, keys, self.now).await
    }
}

/// Tokens held by gateway calls in flight, by organization id
/// (Quota.tokensReserved), through [`reservations::tokens_reserved`].
pub struct TokensReservedLoader {
    pool: DbPool,
}

impl Loader<Uuid> for TokensReservedLoader {
    type Value = i64;
    type Error = AppError;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, i64>, AppError> {
        let mut conn = self.pool.get().await?;
        Ok(reservations::tokens_reserved(&mut conn, keys).await?)
    }
}

/// The routes of catalog models with their providers, by model id
/// (Model.callable and Model.routes over the whole catalog: one statement).
pub struct ModelRoutesLoader {
    pool: DbPool,
}

impl Loader<String> for ModelRoutesLoader {
    type Value = Vec<RouteTo>;
    type Error = AppError;

    async fn load(&self, keys: &[String]) -> Result<HashMap<String, Vec<RouteTo>>, AppError> {
        let mut conn = self.pool.get().await?;
        Ok(model_routes::with_providers(&mut conn, keys).await?)
    }
}

/// Every loader of one request. Users, plans and memberships by user are
/// cached for the request (the same people and plans recur across a list,
/// e.g. the users of 1,000 receipts, and every organization field asks for
/// the caller's memberships); a mutation that changes memberships calls
/// [`Loaders::forget_memberships`] before it answers. Loaders of other
/// things mutations change (billing subscriptions, invitations, keys,
/// counters, model routes) keep nothing, so an answer never shows what the
/// request read before it changed them.
pub struct Loaders {
    /// Users by id.
    pub users: GuardedLoader<UserLoader, HashMapCache>,
    /// Organizations by id.
    pub organizations: GuardedLoader<OrganizationLoader>,
    /// Memberships by organization id.
    pub memberships_by_organization: GuardedLoader<MembershipsByOrganizationLoader>,
    /// Memberships by organization id, each with its member's user.
    pub members_by_organization: GuardedLoader<MembersByOrganizationLoader>,
    /// Memberships by user id.
    pub memberships_by_user: GuardedLoader<MembershipsByUserLoader, HashMapCache>,
    /// Plans by id.
    pub plans: GuardedLoader<PlanLoader, HashMapCache>,
    /// Billing subscription rows by organization id.
    pub billing_subscriptions: GuardedLoader<BillingSubscriptionLoader>,
    /// Pending invitations by organization id.
    pub pending_invitations: GuardedLoader<PendingInvitationsLoader>,
    /// API keys by organization id.
    pub api_keys_by_organization: GuardedLoader<ApiKeysByOrganizationLoader>,
    /// Tokens used in the current period by keys and members.
    pub usage_tokens: GuardedLoader<TokensUsedLoader>,
    /// Organizations' quotas now.
    pub quotas: GuardedLoader<QuotaLoader>,
    /// Tokens held by gateway calls in flight, by organization.
    pub tokens_reserved: GuardedLoader<TokensReservedLoader>,
    /// Model routes with their providers, by model id.
    pub model_routes: GuardedLoader<ModelRoutesLoader>,
}

impl Loaders {
    /// Drops the cached memberships: the request just changed some.
    pub fn forget_memberships(&self) {
        self.memberships_by_user.clear::<Uuid>();
    }

    /// Fresh loaders over `pool`; `now` is the request's time (what
    /// "pending" and "expired" are measured against). Their batches count
    /// against the statement cap of the operation that asked for them.
    pub fn new(pool: &DbPool, now: DateTime<Utc>) -> Self {
        let pool = pool.clone();
        Self {
            users: cached_loader(UserLoader { pool: pool.clone() }),
            organizations: loader(OrganizationLoader { pool: pool.clone() }),
            memberships_by_organization: loader(MembershipsByOrganizationLoader { pool: pool.clone() }),
            members_by_organization: loader(MembersByOrganizationLoader { pool: pool.clone() }),
            memberships_by_user: cached_loader(MembershipsByUserLoader { pool: pool.clone() }),
            plans: cached_loader(PlanLoader { pool: pool.clone() }),
            billing_subscriptions: loader(BillingSubscriptionLoader { pool: pool.clone() }),
            api_keys_by_organization: loader(ApiKeysByOrganizationLoader { pool: pool.clone() }),
            pending_invitations: loader(PendingInvitationsLoader {
                pool: pool.clone(),
                now,
            }),
            usage_tokens: loader(TokensUsedLoader {
                pool: pool.clone(),
                now,
            }),
            quotas: loader(QuotaLoader {
                pool: pool.clone(),
                now,
            }),
            tokens_reserved: loader(TokensReservedLoader { pool: pool.clone() }),
            model_routes: loader(ModelRoutesLoader { pool }),
        }
    }
}

/// Every execution's own [`Loaders`], as data to attach to it (None
/// without an app, as in unit tests of the schema): an HTTP request (one
/// execution) keeps one set throughout, and a subscription gets a fresh
/// set for each update it sends, so an update hours after subscribing
/// shows current names, plans and memberships, and quotas for the moment
/// it is sent, not what the caches held when the client subscribed.
/// Called by the execution hook of [`crate::field_errors::FieldErrors`].
pub fn fresh_loaders(ctx: &ExtensionContext<'_>) -> Option<Data> {
    let app = ctx.data_opt::<AppState>()?;
    let mut data = Data::default();
    data.insert(Loaders::new(app.pool(), app.now()));
    Some(data)
}
