//! The usage inputs of the schema, turned into the plain values the usage
//! services take.

use async_graphql::{ID, InputObject};

use crate::{api::providers::inputs::ModelRouteInput, scalars::Timestamp};
use tollgate_services::usage::{catalog::ModelEntry, record::UsageReport};

/// One reported LLM call.
#[derive(Debug, Clone, InputObject)]
pub struct RecordUsageInput {
    /// Required with a user's access token; implied by an API key.
    pub organization_id: Option<ID>,
    /// The model name as the provider reported it.
    pub model: String,
    /// Prompt tokens, cached ones included.
    pub prompt_tokens: i32,
    /// Part of promptTokens served from the provider's prompt cache.
    #[graphql(default = 0)]
    pub cached_tokens: i32,
    /// Completion tokens.
    pub completion_tokens: i32,
    /// Idempotency key: the same requestId in one organization is counted once; the same requestId with different numbers is CONFLICT.
    pub request_id: Option<String>,
    /// When the call happened; default now. At most 35 days back and 5 minutes ahead.
    pub occurred_at: Option<Timestamp>,
    /// Anything the client wants kept with the event: JSON of at most 4 KiB.
    pub metadata: Option<serde_json::Value>,
}

impl From<RecordUsageInput> for UsageReport {
    fn from(input: RecordUsageInput) -> Self {
        UsageReport {
            organization_id: input.organization_id.map(|id| id.0),
            model: input.model,
            prompt_tokens: input.prompt_tokens,
            cached_tokens: input.cached_tokens,
            completion_tokens: input.completion_tokens,
            request_id: input.request_id,
            occurred_at: input.occurred_at.map(|t| t.0),
            metadata: input.metadata,
        }
    }
}

/// A catalog entry to create or replace (by id).
#[derive(Debug, Clone, InputObject)]
pub struct ModelInput {
    /// The model's id; stored lowercased.
    pub id: String,
    /// Other names that price as this model; stored lowercased, each once.
    #[graphql(default)]
    pub aliases: Vec<String>,
    /// Who serves it: openai, anthropic, google, ...
    pub provider: String,
    /// Human-readable name.
    pub display_name: String,
    /// Maximum tokens of prompt plus completion, when known.
    pub context_window: Option<i32>,
    /// List price of prompt tokens, USD per million.
    pub input_usd_per_million_tokens: f64,
    /// Price of cached prompt tokens; null = the input price.
    pub cached_input_usd_per_million_tokens: Option<f64>,
    /// List price of completion tokens, USD per million.
    pub output_usd_per_million_tokens: f64,
    /// Disabled models are refused by authorizeUsage (usage is still recorded).
    #[graphql(default = true)]
    pub enabled: bool,
    /// The most output tokens one call may produce (positive); null = unknown.
    pub max_output_tokens: Option<i32>,
    /// Replaces the model's routes when given; [] removes them; omitted keeps them.
    pub routes: Option<Vec<ModelRouteInput>>,
}

impl From<ModelInput> for ModelEntry {
    fn from(input: ModelInput) -> Self {
        ModelEntry {
            id: input.id,
            aliases: input.aliases,
            provider: input.provider,
            display_name: input.display_name,
            context_window: input.context_window,
            input_usd_per_million_tokens: input.input_usd_per_million_tokens,
            cached_input_usd_per_million_tokens: input.cached_input_usd_per_million_tokens,
            output_usd_per_million_tokens: input.output_usd_per_million_tokens,
            enabled: input.enabled,
            max_output_tokens: input.max_output_tokens,
            routes: input.routes.map(|routes| routes.into_iter().map(Into::into).collect()),
        }
    }
}
