//! The usage types (Model, UsageEvent, UsageBucket, UsageAuthorization,
//! UsageReceipt, UsageUpdate), the usage queries, and the
//! resolvers other types' usage fields call (Organization.quota, usage,
//! usageEvents; Membership.tokensUsed; ApiKey.tokensUsed; ApiKeyInfo.quota).

use async_graphql::{Context, ID, Object};
use diesel::QueryResult;
use diesel_async::AsyncPgConnection;
use uuid::Uuid;

use crate::{
    access,
    api::{
        accounts::query::User,
        connection::{Connection, ConnectionNode},
        enums as gql,
        keys::query::{ApiKey, keys_of_organization},
        orgs::query::Organization,
        providers::query::{ModelRoute, model_callable, model_routes},
        usage::quota::Quota,
    },
    context::ContextExt,
    error::ApiResult,
    scalars::{BigInt, Timestamp},
};
use tollgate_core::error::AppError;
use tollgate_db::pagination::{PageRequest, SortOrder};
use tollgate_services::usage::{
    authorize::{self, UsageDenial},
    counters::{SubjectKind, TokensOf},
    event::UsageEventRow,
    live_message::UsageUpdateMessage,
    llm_models::{self, ModelRow},
    reads::{self, BucketRow, DayRange, EventFilter, UsageGroupBy},
    record::{self, Receipt, Reporter},
    windows,
};

/// Micro-USD per million tokens as USD per million tokens. Display only:
/// costs are computed from the integers.
fn usd(micro: i64) -> f64 {
    micro as f64 / 1_000_000.0
}

/// An LLM that usage is priced against.
pub struct Model(pub ModelRow);

#[Object]
impl Model {
    /// Reported model names match this id, an alias, or begin with the id followed by '-' (dated versions: gpt-4o-2024-08-06 prices as gpt-4o); the longest match wins.
    async fn id(&self) -> &str {
        &self.0.id
    }

    /// Other names that price as this model.
    async fn aliases(&self) -> Vec<&str> {
        self.0.aliases.iter().flatten().map(String::as_str).collect()
    }

    /// Who serves it: openai, anthropic, google, ...
    async fn provider(&self) -> &str {
        &self.0.provider
    }

    /// Human-readable name.
    async fn display_name(&self) -> &str {
        &self.0.display_name
    }

    /// Maximum tokens of prompt plus completion, when known.
    async fn context_window(&self) -> Option<i32> {
        self.0.context_window
    }

    /// List price of prompt tokens, USD per million.
    async fn input_usd_per_million_tokens(&self) -> f64 {
        usd(self.0.input_micro_usd_per_mtok)
    }

    /// Price of cached prompt tokens; null = the input price.
    async fn cached_input_usd_per_million_tokens(&self) -> Option<f64> {
        self.0.cached_input_micro_usd_per_mtok.map(usd)
    }

    /// List price of completion tokens, USD per million.
    async fn output_usd_per_million_tokens(&self) -> f64 {
        usd(self.0.output_micro_usd_per_mtok)
    }

    /// Disabled models are refused by authorizeUsage (usage is still recorded).
    async fn enabled(&self) -> bool {
        self.0.enabled
    }

    /// The most output tokens one call may produce; the gateway reserves at most this for a call that sets no limit. null = unknown.
    async fn max_output_tokens(&self) -> Option<i32> {
        self.0.max_output_tokens
    }

    /// True when the gateway can carry calls to this model (enabled, with at least one route to an enabled provider).
    async fn callable(&self, ctx: &Context<'_>) -> ApiResult<bool> {
        model_callable(ctx, &self.0).await
    }

    /// Where the gateway sends calls, in order: the first route, then the next on failure. ADMIN/SUPPORT (null with FORBIDDEN for others).
    async fn routes(&self, ctx: &Context<'_>) -> ApiResult<Option<Vec<ModelRoute>>> {
        model_routes(ctx, &self.0).await
    }
}

/// One reported LLM call, priced when it was recorded.
pub struct UsageEvent(pub UsageEventRow);

impl From<UsageEventRow> for UsageEvent {
    fn from(row: UsageEventRow) -> Self {
        Self(row)
    }
}

#[Object]
impl UsageEvent {
    /// Stable identifier.
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    /// The organization it was recorded for.
    async fn organization(&self, ctx: &Context<'_>) -> ApiResult<Organization> {
        Organization::require(ctx, self.0.organization_id).await
    }

    /// The key it was reported with; null without one, or when the caller may not see that key (members see the keys they created, OWNER/ADMIN all).
    async fn api_key(&self, ctx: &Context<'_>) -> ApiResult<Option<ApiKey>> {
        let Some(key_id) = self.0.api_key_id else {
            return Ok(None);
        };
        let access = access::access_to(ctx, self.0.organization_id).await?;
        if access.require("Organization.apiKeys").is_err() {
            return Ok(None);
        }
        let visible = keys_of_organization(ctx, access).await?;
        Ok(visible.into_iter().find(|key| key.row().id == key_id))
    }

    /// The member it counts against: the reporting user, or the creator of the key it was reported with. Null for callers who may not see the organization's members (keys without ORG_READ).
    async fn user(&self, ctx: &Context<'_>) -> ApiResult<Option<User>> {
        let Some(user_id) = self.0.user_id else {
            return Ok(None);
        };
        let access = access::access_to(ctx, self.0.organization_id).await?;
        if access.require("Organization.members").is_err() {
            return Ok(None);
        }
        Ok(ctx.loaders()?.users.load_one(user_id).await?.map(User::new))
    }

    /// The model name as reported.
    async fn model(&self) -> &str {
        &self.0.model
    }

    /// Prompt tokens, cached ones included.
    async fn prompt_tokens(&self) -> i32 {
        self.0.prompt_tokens
    }

    /// Part of promptTokens served from the provider's prompt cache.
    async fn cached_tokens(&self) -> i32 {
        self.0.cached_tokens
    }

    /// Completion tokens.
    async fn completion_tokens(&self) -> i32 {
        self.0.completion_tokens
    }

    /// promptTokens + completionTokens.
    async fn total_tokens(&self) -> i32 {
        self.0.total_tokens
    }

    /// Cost in millionths of a US dollar at the model's prices when recorded: (uncached prompt x input + cached x cached + completion x output price) / 1e6, rounded half up.
    async fn cost_micro_usd(&self) -> BigInt {
        BigInt(self.0.cost_micro_usd)
    }

    /// False when the model matched no catalog entry or alias; the event is kept at cost 0.
    async fn priced(&self) -> bool {
        self.0.priced
    }

    /// Client-supplied idempotency key; for PROXY events, the gateway's request id (the x-tollgate-request-id response header).
    async fn request_id(&self) -> Option<&str> {
        self.0.request_id.as_deref()
    }

    /// Reported by a client, or carried by the gateway.
    async fn source(&self) -> gql::UsageSource {
        self.0.source.into()
    }

    /// True when the provider reported no usage and the gateway counted the tokens itself (a stream cut short, a provider that omits usage).
    async fn estimated(&self) -> bool {
        self.0.estimated
    }

    /// PROXY events: the Provider.key that served the call (model is the name the caller sent, priced through the catalog).
    async fn provider(&self) -> Option<&str> {
        self.0.provider.as_deref()
    }

    /// Client metadata as reported.
    async fn metadata(&self) -> Option<&serde_json::Value> {
        self.0.metadata.as_ref()
    }

    /// When the call happened, as reported.
    async fn occurred_at(&self) -> Timestamp {
        self.0.occurred_at.into()
    }

    /// When it was received: what counters and "newest first" go by.
    async fn created_at(&self) -> Timestamp {
        self.0.created_at.into()
    }
}

/// The usage events of one organization that match a filter.
pub struct OrganizationEvents {
    /// The organization whose events are listed.
    pub organization_id: Uuid,
    /// The usageEvents arguments that narrow the list.
    pub filter: EventFilter,
}

/// A page of usage events, newest received first (`UsageEventConnection`).
impl ConnectionNode for UsageEvent {
    type Row = UsageEventRow;
    type Filter = OrganizationEvents;

    fn from_row(row: &UsageEventRow) -> Self {
        UsageEvent(row.clone())
    }

    async fn count(conn: &mut AsyncPgConnection, events: &OrganizationEvents) -> QueryResult<i64> {
        reads::count_events(conn, events.organization_id, &events.filter).await
    }
}

/// Usage summed over one key of a grouping.
pub struct UsageBucket(pub BucketRow);

#[Object]
impl UsageBucket {
    /// YYYY-MM-DD for DAY, the catalog model id (the reported name when unpriced), the API key id or the user id; "none" for events without a key or a user.
    async fn key(&self) -> &str {
        &self.0.key
    }

    /// Prompt tokens, cached ones included.
    async fn prompt_tokens(&self) -> BigInt {
        BigInt(self.0.prompt_tokens)
    }

    /// Completion tokens.
    async fn completion_tokens(&self) -> BigInt {
        BigInt(self.0.completion_tokens)
    }

    /// promptTokens + completionTokens.
    async fn total_tokens(&self) -> BigInt {
        BigInt(self.0.total_tokens)
    }

    /// Usage events.
    async fn requests(&self) -> BigInt {
        BigInt(self.0.requests)
    }

    /// Cost in millionths of a US dollar.
    async fn cost_micro_usd(&self) -> BigInt {
        BigInt(self.0.cost_micro_usd)
    }
}

/// The answer to 'may I make this LLM call now?'
pub struct UsageAuthorization {
    /// Whether the call may go ahead.
    pub allowed: bool,
    /// The first denial that applies.
    pub reason: Option<UsageDenial>,
    /// The organization's quota.
    pub quota: Quota,
}

#[Object]
impl UsageAuthorization {
    /// Whether the call may go ahead.
    async fn allowed(&self) -> bool {
        self.allowed
    }

    /// Set when allowed is false.
    async fn reason(&self) -> Option<gql::UsageDenial> {
        self.reason.map(Into::into)
    }

    /// The organization's quota now.
    async fn quota(&self) -> &Quota {
        &self.quota
    }
}

/// What recordUsage answers for one input.
pub struct UsageReceipt {
    /// The event.
    pub event: UsageEvent,
    /// The organization's quota after the write.
    pub quota: Quota,
    /// Whether the requestId was already recorded.
    pub duplicate: bool,
}

impl UsageReceipt {
    /// The answer for one recorded input, with the quota after the write.
    pub fn new(receipt: Receipt, quota: tollgate_services::usage::quota::QuotaSnapshot) -> Self {
        Self {
            event: UsageEvent(receipt.event),
            quota: Quota(quota),
            duplicate: receipt.duplicate,
        }
    }
}

#[Object]
impl UsageReceipt {
    /// The recorded event (the original one for a repeated requestId).
    async fn event(&self) -> &UsageEvent {
        &self.event
    }

    /// The organization's quota after the write.
    async fn quota(&self) -> &Quota {
        &self.quota
    }

    /// True when requestId was already recorded; nothing was counted twice.
    async fn duplicate(&self) -> bool {
        self.duplicate
    }
}

/// One recorded event as subscribers of its organization see it.
pub struct UsageUpdate {
    /// The event.
    pub event: UsageEvent,
    /// The organization's quota just after the event was counted.
    pub quota: Quota,
    /// 50, 80 or 100 when this event crossed that percent of the limit.
    pub threshold_crossed: Option<i32>,
}

impl From<UsageUpdateMessage> for UsageUpdate {
    /// The GraphQL `UsageUpdate` a subscriber receives.
    fn from(message: UsageUpdateMessage) -> Self {
        UsageUpdate {
            event: UsageEvent::from(message.event),
            quota: Quota::from(message.quota),
            threshold_crossed: message.threshold_crossed,
        }
    }
}

#[Object]
impl UsageUpdate {
    /// The recorded event.
    async fn event(&self) -> &UsageEvent {
        &self.event
    }

    /// The organization's quota just after the event was counted.
    async fn quota(&self) -> &Quota {
        &self.quota
    }

    /// 50, 80 or 100 when this event took the period's usage from below that percent of the limit to at or above it (the highest, if it crossed several); once per threshold and period (resetUsage starts them afresh).
    async fn threshold_crossed(&self) -> Option<i32> {
        self.threshold_crossed
    }
}

/// Organization.quota: the organization's quota now, through the request's
/// loader (one set of queries for a list of organizations). The caller's
/// access is checked by the field.
pub async fn organization_quota(ctx: &Context<'_>, organization_id: Uuid) -> ApiResult<Quota> {
    let snapshot = ctx.loaders()?.quotas.load_one(organization_id).await?;
    Ok(snapshot.map(Quota).ok_or_else(|| AppError::not_found("organization"))?)
}

/// Organization.usage: buckets over whole UTC days of occurredAt.
pub async fn organization_usage(
    ctx: &Context<'_>,
    organization_id: Uuid,
    from: Option<Timestamp>,
    to: Option<Timestamp>,
    group_by: gql::UsageGroupBy,
) -> ApiResult<Vec<UsageBucket>> {
    let group_by = UsageGroupBy::from(group_by);
    let app = ctx.app()?;
    let mut conn = app.db().await?;
    let (windows, _) = windows::of_organization(&mut conn, organization_id, app.now())
        .await?
        .ok_or_else(|| AppError::not_found("organization"))?;
    let range = DayRange::new(from.map(|t| t.0), to.map(|t| t.0), windows.period)?;
    let rows = reads::buckets(&mut conn, organization_id, range, group_by).await?;
    Ok(rows.into_iter().map(UsageBucket).collect())
}

/// The arguments of Organization.usageEvents.
#[derive(Debug, Clone, Default)]
pub struct UsageEventsArgs {
    /// Page size.
    pub first: Option<i32>,
    /// Cursor to continue after.
    pub after: Option<String>,
    /// Reported name or catalog id.
    pub model: Option<String>,
    /// Only this key's events.
    pub api_key_id: Option<ID>,
    /// Only this member's events.
    pub user_id: Option<ID>,
    /// occurredAt at or after.
    pub from: Option<Timestamp>,
    /// occurredAt at or before.
    pub to: Option<Timestamp>,
}

/// Organization.usageEvents: newest received first.
pub async fn organization_usage_events(
    ctx: &Context<'_>,
    organization_id: Uuid,
    args: UsageEventsArgs,
) -> ApiResult<Connection<UsageEvent>> {
    let page = PageRequest::new(args.first, args.after.as_deref(), SortOrder::Descending)?;
    let id_arg = |field: &'static str, id: Option<ID>| {
        id.map(|id| Uuid::parse_str(id.as_str()).map_err(|_| AppError::bad_input(field, "not an id")))
            .transpose()
    };
    let model = args.model.map(|m| m.trim().to_owned()).filter(|m| !m.is_empty());
    // Held to the rule of recorded names: a longer one matches nothing.
    if let Some(model) = &model {
        record::check_name("model", model)?;
    }
    let filter = EventFilter {
        model,
        api_key_id: id_arg("apiKeyId", args.api_key_id)?,
        user_id: id_arg("userId", args.user_id)?,
        from: args.from.map(|t| t.0),
        to: args.to.map(|t| t.0),
    };
    let mut conn = ctx.app()?.db().await?;
    let rows = reads::list_events(&mut conn, organization_id, &filter, &page).await?;
    Ok(Connection::new(
        page.page(rows, reads::event_cursor),
        OrganizationEvents {
            organization_id,
            filter,
        },
    ))
}

/// ApiKey.tokensUsed: the key's tokens in the current period, batched over
/// a list of keys.
pub async fn api_key_tokens_used(ctx: &Context<'_>, organization_id: Uuid, key_id: Uuid) -> ApiResult<BigInt> {
    tokens_used(ctx, organization_id, SubjectKind::ApiKey, key_id).await
}

/// Membership.tokensUsed: the member's tokens in the current period (with
/// their own token and with keys they created), batched over a list.
pub async fn member_tokens_used(ctx: &Context<'_>, organization_id: Uuid, user_id: Uuid) -> ApiResult<BigInt> {
    tokens_used(ctx, organization_id, SubjectKind::Member, user_id).await
}

async fn tokens_used(
    ctx: &Context<'_>,
    organization_id: Uuid,
    kind: SubjectKind,
    subject_id: Uuid,
) -> ApiResult<BigInt> {
    let of = TokensOf {
        organization_id,
        kind,
        subject_id,
    };
    Ok(BigInt(ctx.loaders()?.usage_tokens.load_one(of).await?.unwrap_or(0)))
}

/// Queries about models and usage.
#[derive(Default)]
pub struct UsageQuery;

#[Object]
impl UsageQuery {
    /// The model catalog that prices usage.
    async fn models(&self, ctx: &Context<'_>) -> ApiResult<Vec<Model>> {
        let mut conn = ctx.app()?.db().await?;
        Ok(llm_models::list(&mut conn).await?.into_iter().map(Model).collect())
    }

    /// Before an LLM call: every budget, the daily request limit and the key's model allow-list (matched after resolving aliases and dated names; an unknown model is allowed unless the key has an allow-list), checked without writing anything. With an API key (USAGE_WRITE) or the token of a MEMBER or above and organizationId. requestsPerMinute applies (RATE_LIMITED).
    async fn authorize_usage(
        &self,
        ctx: &Context<'_>,
        organization_id: Option<ID>,
        model: String,
    ) -> ApiResult<UsageAuthorization> {
        let reporter = reporter(
            ctx,
            organization_id.as_ref().map(|id| id.as_str()),
            "Query.authorizeUsage",
        )
        .await?;
        let key = ctx.principal()?.api_key();
        let decision = authorize::decide(ctx.app()?, reporter, key, &model).await?;
        Ok(UsageAuthorization {
            allowed: decision.denial.is_none(),
            reason: decision.denial,
            quota: Quota(decision.quota),
        })
    }
}

/// Who reports for which organization ([`record::reporter_unchecked`]),
/// with `rule` applied through the request's loaders.
pub(super) async fn reporter(ctx: &Context<'_>, organization_id: Option<&str>, rule: &str) -> ApiResult<Reporter> {
    let reporter = record::reporter_unchecked(ctx.principal()?, organization_id)?;
    access::authorize(ctx, reporter.organization_id, rule).await?;
    Ok(reporter)
}
