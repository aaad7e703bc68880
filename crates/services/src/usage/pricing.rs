//! Which catalog model a reported name is, and what a call costs.
//!
//! The catalog is small (tens of rows), so a request takes it whole and
//! resolves every name in memory: [`Catalog::current`] answers from the
//! instance's copy ([`crate::usage::directory`]), so most requests read
//! no row of it at all.

use std::sync::Arc;

use diesel::QueryResult;
use diesel_async::AsyncPgConnection;
use tollgate_core::error::AppResult;
use tollgate_platform::Platform;

use crate::usage::llm_models::{self, ModelRow};

/// Tokens in the unit prices are quoted for.
const TOKENS_PER_PRICE_UNIT: i128 = 1_000_000;

/// The model catalog, cheap to clone (its rows are shared).
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    models: Arc<[ModelRow]>,
}

/// How one call was priced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pricing {
    /// The catalog id the reported name resolved to; None when unknown.
    pub model_id: Option<String>,
    /// Integer micro-USD.
    pub cost_micro_usd: i64,
    /// Whether a catalog entry priced it.
    pub priced: bool,
}

/// Token counts of one call, as checked by validation (non-negative,
/// cached within prompt).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tokens {
    /// Prompt tokens, cached ones included.
    pub prompt: i64,
    /// The part of the prompt served from the provider's cache.
    pub cached: i64,
    /// Completion tokens.
    pub completion: i64,
}

impl Catalog {
    /// Reads the whole catalog from the database.
    pub async fn load(conn: &mut AsyncPgConnection) -> QueryResult<Self> {
        Ok(Self::new(llm_models::list(conn).await?))
    }

    /// The catalog now: this instance's copy when the catalog's version
    /// says it is current (one statement of one row), else read again.
    /// Callers that read the version along with a statement of their own
    /// use [`crate::usage::directory::at_version`] instead. Call it holding
    /// no pooled connection: it may take one.
    pub async fn current(app: &Platform) -> AppResult<Self> {
        Ok(crate::usage::directory::current(app).await?.catalog.clone())
    }

    /// A catalog of these rows.
    pub fn new(models: Vec<ModelRow>) -> Self {
        Self { models: models.into() }
    }

    /// Every model, in display order.
    pub fn models(&self) -> &[ModelRow] {
        &self.models
    }

    /// The model a reported name prices as: the model whose id or alias
    /// equals it, or whose id followed by '-' begins it (dated versions);
    /// the longest match wins. Case-insensitive.
    pub fn resolve(&self, reported: &str) -> Option<&ModelRow> {
        let name = reported.trim().to_lowercase();
        self.models
            .iter()
            .filter_map(|model| match_length(model, &name).map(|length| (length, model)))
            .max_by(|(a, model_a), (b, model_b)| a.cmp(b).then_with(|| model_b.id.cmp(&model_a.id)))
            .map(|(_, model)| model)
    }

    /// Prices a call of `reported` at the catalog's current prices. An
    /// unknown model costs 0 and is not priced; a disabled one is priced
    /// like any other (the call happened).
    pub fn price(&self, reported: &str, tokens: Tokens) -> Pricing {
        match self.resolve(reported) {
            Some(model) => Pricing {
                model_id: Some(model.id.clone()),
                cost_micro_usd: cost(model, tokens),
                priced: true,
            },
            None => Pricing {
                model_id: None,
                cost_micro_usd: 0,
                priced: false,
            },
        }
    }
}

/// How long a match `name` is for `model` (the whole name for an exact id
/// or alias, the id for a dated version), or None.
fn match_length(model: &ModelRow, name: &str) -> Option<usize> {
    let exact = model.id == name || model.aliases.iter().flatten().any(|alias| alias == name);
    if exact {
        return Some(name.len());
    }
    let dated = name
        .strip_prefix(model.id.as_str())
        .is_some_and(|rest| rest.len() > 1 && rest.starts_with('-'));
    dated.then_some(model.id.len())
}

/// (uncached prompt x input + cached x cached-or-input + completion x
/// output) / 1e6, rounded half up, in integer micro-USD. Computed in i128:
/// 10M tokens at any i64 price cannot overflow it.
pub fn cost(model: &ModelRow, tokens: Tokens) -> i64 {
    let input = i128::from(model.input_micro_usd_per_mtok);
    let cached_price = i128::from(
        model
            .cached_input_micro_usd_per_mtok
            .unwrap_or(model.input_micro_usd_per_mtok),
    );
    let output = i128::from(model.output_micro_usd_per_mtok);
    let uncached = i128::from(tokens.prompt - tokens.cached);
    let total = uncached * input + i128::from(tokens.cached) * cached_price + i128::from(tokens.completion) * output;
    let rounded = (total + TOKENS_PER_PRICE_UNIT / 2) / TOKENS_PER_PRICE_UNIT;
    i64::try_from(rounded).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;

    fn model(id: &str, aliases: &[&str], input: i64, cached: Option<i64>, output: i64) -> ModelRow {
        ModelRow {
            id: id.into(),
            aliases: aliases.iter().map(|a| Some((*a).to_owned())).collect(),
            provider: "test".into(),
            display_name: id.into(),
            context_window: None,
            input_micro_usd_per_mtok: input,
            cached_input_micro_usd_per_mtok: cached,
            output_micro_usd_per_mtok: output,
            enabled: true,
            sort_order: 0,
            created_at: Utc::now(),
            updated_at: Utc::now(),
            max_output_tokens: None,
        }
    }

    fn catalog() -> Catalog {
        Catalog::new(vec![
            model("gpt-4o", &[], 2_500_000, Some(1_250_000), 10_000_000),
            model("gpt-4o-mini", &[], 150_000, Some(75_000), 600_000),
            model(
                "claude-sonnet-4",
                &["claude-sonnet-4-0"],
                3_000_000,
                Some(300_000),
                15_000_000,
            ),
            model("claude-sonnet-4-5", &[], 3_000_000, Some(300_000), 15_000_000),
            model("deepseek-chat", &["deepseek-v3"], 270_000, Some(70_000), 1_100_000),
            model("llama", &[], 590_000, None, 790_000),
        ])
    }

    fn resolved(name: &str) -> Option<String> {
        catalog().resolve(name).map(|m| m.id.clone())
    }

    #[test]
    fn names_resolve_by_id_alias_and_dated_prefix_longest_first() {
        assert_eq!(resolved("gpt-4o").as_deref(), Some("gpt-4o"));
        assert_eq!(resolved("GPT-4o-2024-08-06").as_deref(), Some("gpt-4o"));
        assert_eq!(resolved("gpt-4o-mini-2024-07-18").as_deref(), Some("gpt-4o-mini"));
        assert_eq!(resolved("claude-sonnet-4-20250514").as_deref(), Some("claude-sonnet-4"));
        assert_eq!(
            resolved("claude-sonnet-4-5-20250929").as_deref(),
            Some("claude-sonnet-4-5")
        );
        assert_eq!(resolved("deepseek-v3").as_deref(), Some("deepseek-chat"));
        assert_eq!(resolved("gpt-4omni"), None);
        assert_eq!(resolved("gpt-4o-"), None);
        assert_eq!(
            resolved("deepseek-v3-0324"),
            None,
            "aliases match exactly, ids by prefix"
        );
        assert_eq!(resolved("mystery"), None);
    }

    #[test]
    fn costs_split_cached_tokens_and_round_half_up() {
        let catalog = catalog();
        let tokens = |prompt, cached, completion| Tokens {
            prompt,
            cached,
            completion,
        };
        // 1000 uncached x 2.5 + 1000 cached x 1.25 + 100 x 10 = 4750 micro-USD.
        assert_eq!(catalog.price("gpt-4o", tokens(2000, 1000, 100)).cost_micro_usd, 4750);
        // 1 token x 0.15 = 0.15 -> 0; 3 tokens x 0.15 = 0.45 -> 0; 0.5 rounds up.
        assert_eq!(catalog.price("gpt-4o-mini", tokens(3, 0, 0)).cost_micro_usd, 0);
        assert_eq!(
            catalog.price("gpt-4o-mini", tokens(0, 0, 1)).cost_micro_usd,
            1,
            "0.6 -> 1"
        );
        assert_eq!(catalog.price("llama", tokens(0, 0, 0)).cost_micro_usd, 0);
        // No cached price: cached tokens at the input price. 10 x 0.59 = 5.9 -> 6.
        assert_eq!(catalog.price("llama", tokens(10, 10, 0)).cost_micro_usd, 6);
        // Exactly half: 5 x 0.1 (100000 per Mtok) = 0.5 -> 1.
        let half = Catalog::new(vec![model("half", &[], 100_000, None, 0)]);
        assert_eq!(half.price("half", tokens(5, 0, 0)).cost_micro_usd, 1);
        assert_eq!(half.price("half", tokens(4, 0, 0)).cost_micro_usd, 0);
        let unknown = catalog.price("mystery", tokens(100, 0, 100));
        assert_eq!(
            (unknown.model_id, unknown.cost_micro_usd, unknown.priced),
            (None, 0, false)
        );
    }

    #[test]
    fn the_largest_events_do_not_overflow() {
        let dear = model("dear", &[], i64::MAX / 2, None, i64::MAX / 2);
        let big = Tokens {
            prompt: 10_000_000,
            cached: 0,
            completion: 10_000_000,
        };
        assert_eq!(cost(&dear, big), i64::MAX);
    }
}
