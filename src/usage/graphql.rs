//! The Model type and the catalog query.

use async_graphql::{Context, Object};

use crate::{
    error::AppResult,
    graphql::context::ContextExt,
    usage::model::{self, ModelRow},
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
}

/// Queries about the model catalog.
#[derive(Default)]
pub struct UsageQuery;

#[Object]
impl UsageQuery {
    /// The model catalog that prices usage.
    async fn models(&self, ctx: &Context<'_>) -> AppResult<Vec<Model>> {
        let mut conn = ctx.app()?.db().await?;
        Ok(model::list(&mut conn).await?.into_iter().map(Model).collect())
    }
}
