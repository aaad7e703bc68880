//! authorizeUsage: "may I make this LLM call now?", answered from the
//! counters without writing anything.
//!
//! Denials are checked in a fixed order, so the answer names the first
//! that applies: the model, then the organization's budget, the key's,
//! the member's, then the daily request limit.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::plans::model::PlanRow;
use crate::usage::{
    counters::{self, CounterSpan, SubjectKind},
    directory,
    pricing::Catalog,
    quota::{self, QuotaSnapshot},
    record::{Reporter, check_name},
    reservations,
};
use tollgate_auth::{AppState, KeyIdentity};
use tollgate_core::error::AppResult;

/// The window of the plan's requestsPerMinute.
const RATE_WINDOW: Duration = Duration::from_secs(60);

/// Why authorizeUsage says no.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// The answer: allowed, or the first denial; and the organization's quota.
#[derive(Debug, Clone, Copy)]
pub struct Decision {
    /// The first denial that applies; None = allowed.
    pub denial: Option<UsageDenial>,
    /// The organization's quota now.
    pub quota: QuotaSnapshot,
}

/// Decides whether `reporter` may call `model` now. `key` is the calling
/// key, if a key calls. requestsPerMinute (per key; per member for a
/// user's token) is RATE_LIMITED with retryAfter, not a denial.
pub async fn decide(app: &AppState, reporter: Reporter, key: Option<&KeyIdentity>, model: &str) -> AppResult<Decision> {
    check_name("model", model.trim())?;
    let organization_id = reporter.organization_id;
    // Plan, windows, the member's budget and the catalog's version in one
    // statement; the catalog itself is this instance's copy.
    let reservations::Context {
        windows,
        plan,
        member_limit,
        catalog_version,
        now,
    } = reservations::context(app, reporter).await?;
    check_rate(app, &plan, reporter, key, now).await?;
    let directory = directory::at_version(app, catalog_version).await?;
    let catalog = &directory.catalog;
    let key_span = key.map(|key| windows.span(SubjectKind::ApiKey, key.key_id));
    let member_span = windows.span(SubjectKind::Member, reporter.user_id);
    let mut wanted = quota::spans(organization_id, &windows).to_vec();
    wanted.push(member_span);
    wanted.extend(key_span);
    let totals = {
        let mut conn = app.db().await?;
        counters::sum(&mut conn, organization_id, &wanted).await?
    };
    let quota = quota::from_totals(organization_id, &windows, &plan, &totals);
    let tokens_of = |span: &CounterSpan| totals.get(span).map_or(0, |t| t.0);

    let spent = |used: i64, limit: Option<i64>| limit.is_some_and(|limit| used >= limit);
    let denial = if !model_allowed(catalog, key.and_then(|k| k.allowed_models.as_deref()), model) {
        Some(UsageDenial::ModelNotAllowed)
    } else if quota.exceeded() {
        Some(UsageDenial::OrganizationBudget)
    } else if key_span.is_some_and(|span| spent(tokens_of(&span), key.and_then(|k| k.token_limit))) {
        Some(UsageDenial::ApiKeyBudget)
    } else if spent(tokens_of(&member_span), member_limit) {
        Some(UsageDenial::MemberBudget)
    } else if quota.daily_requests_spent() {
        Some(UsageDenial::DailyRequests)
    } else {
        None
    };
    Ok(Decision { denial, quota })
}

/// The plan's requestsPerMinute, per key (per member for a user's token):
/// RATE_LIMITED with retryAfter once spent.
pub async fn check_rate(
    app: &AppState,
    plan: &PlanRow,
    reporter: Reporter,
    key: Option<&KeyIdentity>,
    now: DateTime<Utc>,
) -> AppResult<()> {
    let Some(per_minute) = plan.requests_per_minute else {
        return Ok(());
    };
    let bucket = match key {
        Some(key) => format!("usage-rpm:key:{}", key.key_id),
        None => format!("usage-rpm:member:{}:{}", reporter.organization_id, reporter.user_id),
    };
    let limit = u32::try_from(per_minute).unwrap_or(0);
    app.rate_limiter().check(&bucket, limit, RATE_WINDOW, now).await
}

/// Whether `model` may be called: a disabled catalog model never; with an
/// allow-list, only a model that resolves (after aliases and dated names)
/// to the same catalog model as an entry; an unknown model only when no
/// allow-list applies (or the list names it exactly).
pub fn model_allowed(catalog: &Catalog, allowed: Option<&[String]>, model: &str) -> bool {
    let resolved = catalog.resolve(model);
    if resolved.is_some_and(|m| !m.enabled) {
        return false;
    }
    let Some(allowed) = allowed else {
        return true;
    };
    let name = model.trim().to_lowercase();
    allowed.iter().any(|entry| match resolved {
        Some(model) => catalog.resolve(entry).is_some_and(|m| m.id == model.id),
        None => entry.trim().to_lowercase() == name,
    })
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::usage::llm_models::ModelRow;

    fn model(id: &str, aliases: &[&str], enabled: bool) -> ModelRow {
        ModelRow {
            id: id.into(),
            aliases: aliases.iter().map(|a| Some((*a).to_owned())).collect(),
            provider: "test".into(),
            display_name: id.into(),
            context_window: None,
            input_micro_usd_per_mtok: 1,
            cached_input_micro_usd_per_mtok: None,
            output_micro_usd_per_mtok: 1,
            enabled,
            sort_order: 0,
            created_at: Utc::now(),
            updated_at: Utc::now(),
            max_output_tokens: None,
        }
    }

    #[test]
    fn allow_lists_match_after_resolving_names() {
        let catalog = Catalog::new(vec![
            model("gpt-4o", &[], true),
            model("deepseek-chat", &["deepseek-v3"], true),
            model("old", &[], false),
        ]);
        let list = vec!["gpt-4o".to_owned(), "deepseek-v3".to_owned()];
        assert!(model_allowed(&catalog, None, "mystery"));
        assert!(!model_allowed(&catalog, None, "old"));
        assert!(!model_allowed(&catalog, None, "old-2024-01-01"));
        assert!(model_allowed(&catalog, Some(&list), "GPT-4o-2024-08-06"));
        assert!(model_allowed(&catalog, Some(&list), "deepseek-chat"));
        assert!(!model_allowed(&catalog, Some(&list), "mystery"));
        assert!(!model_allowed(&catalog, Some(&[]), "gpt-4o"));
    }
}
