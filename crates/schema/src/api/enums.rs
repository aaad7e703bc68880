//! The enums of the schema. Each mirrors a service enum (same variants and
//! descriptions) through async-graphql's remote enums, which convert both
//! ways with `From`; resolvers convert at the boundary with `.into()`.

use async_graphql::Enum;

/// Platform-wide role.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "tollgate_auth::users::Role", name = "Role")]
pub enum Role {
    /// An ordinary account.
    #[graphql(name = "USER")]
    User,
    /// Staff who read everything and can suspend.
    #[graphql(name = "SUPPORT")]
    Support,
    /// Staff with every power.
    #[graphql(name = "ADMIN")]
    Admin,
}

/// Role inside one organization. OWNER > ADMIN > MEMBER > VIEWER.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "tollgate_auth::roles::OrgRole", name = "OrgRole")]
pub enum OrgRole {
    /// The one owner: everything, including deletion and transfer.
    #[graphql(name = "OWNER")]
    Owner,
    /// Manages members, invitations, keys and billing.
    #[graphql(name = "ADMIN")]
    Admin,
    /// Uses the organization: keys and usage.
    #[graphql(name = "MEMBER")]
    Member,
    /// Reads.
    #[graphql(name = "VIEWER")]
    Viewer,
}

/// What an API key may do.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "tollgate_auth::keys::scope::ApiKeyScope", name = "ApiKeyScope")]
pub enum ApiKeyScope {
    /// authorizeUsage and recordUsage(Batch).
    #[graphql(name = "USAGE_WRITE")]
    UsageWrite,
    /// The organization's quota, usage, usageEvents and usageUpdated.
    #[graphql(name = "USAGE_READ")]
    UsageRead,
    /// The organization's other fields.
    #[graphql(name = "ORG_READ")]
    OrgRead,
    /// LLM: call models through the gateway (/v1); each call is metered as a PROXY usage event.
    #[graphql(name = "LLM")]
    Llm,
}

/// Where a usage event came from.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "tollgate_services::usage::event::UsageSource", name = "UsageSource")]
pub enum UsageSource {
    /// Reported by a client through recordUsage(Batch).
    #[graphql(name = "REPORTED")]
    Reported,
    /// Carried and metered by the gateway (/v1).
    #[graphql(name = "PROXY")]
    Proxy,
}

/// OPENAI: the OpenAI API. ANTHROPIC: the Anthropic Messages API. OPENAI_COMPATIBLE: any service that speaks OpenAI's API (OpenRouter, A4F, vLLM, Ollama, Azure-style gateways).
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "tollgate_services::providers::model::ProviderKind", name = "ProviderKind")]
pub enum ProviderKind {
    /// The OpenAI API (base URL with the version: https://api.openai.com/v1).
    #[graphql(name = "OPENAI")]
    OpenAi,
    /// The Anthropic Messages API (base URL without it: https://api.anthropic.com).
    #[graphql(name = "ANTHROPIC")]
    Anthropic,
    /// Any service that speaks OpenAI's API (OpenRouter, A4F, vLLM, Ollama, Azure-style gateways).
    #[graphql(name = "OPENAI_COMPATIBLE")]
    OpenAiCompatible,
}

/// How often a plan is billed.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(
    remote = "tollgate_services::plans::model::BillingInterval",
    name = "BillingInterval"
)]
pub enum BillingInterval {
    /// Every month.
    #[graphql(name = "MONTH")]
    Month,
    /// Every year.
    #[graphql(name = "YEAR")]
    Year,
}

/// Stripe's statuses; incomplete_expired reads as CANCELED.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(
    remote = "tollgate_services::plans::subscription::SubscriptionStatus",
    name = "SubscriptionStatus"
)]
pub enum SubscriptionStatus {
    /// In a trial.
    #[graphql(name = "TRIALING")]
    Trialing,
    /// Paid up.
    #[graphql(name = "ACTIVE")]
    Active,
    /// A payment failed; the plan holds for a grace period.
    #[graphql(name = "PAST_DUE")]
    PastDue,
    /// Payments kept failing.
    #[graphql(name = "UNPAID")]
    Unpaid,
    /// Paused in Stripe.
    #[graphql(name = "PAUSED")]
    Paused,
    /// Ended.
    #[graphql(name = "CANCELED")]
    Canceled,
    /// The first payment has not gone through.
    #[graphql(name = "INCOMPLETE")]
    Incomplete,
}

/// Why authorizeUsage says no.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "tollgate_services::usage::authorize::UsageDenial", name = "UsageDenial")]
pub enum UsageDenial {
    /// The organization's tokens for the period are spent.
    OrganizationBudget,
    /// The API key's own budget is spent.
    ApiKeyBudget,
    /// The member's budget in the organization is spent.
    MemberBudget,
    /// The organization's usage events for today reached the plan's limit.
    DailyRequests,
    /// The key does not allow the model, or the catalog has it disabled.
    ModelNotAllowed,
}

/// What usage buckets are keyed by.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "tollgate_services::usage::reads::UsageGroupBy", name = "UsageGroupBy")]
pub enum UsageGroupBy {
    /// One bucket per UTC day of occurredAt (key YYYY-MM-DD).
    Day,
    /// One bucket per catalog model (the reported name when unpriced).
    Model,
    /// One bucket per API key ("none" for usage reported without one).
    ApiKey,
    /// One bucket per member ("none" for usage without a user).
    User,
}
