//! Pricing: the rows a batch would insert, each priced at the catalog's
//! current prices, with repeats of a requestId within the batch folded.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{
    Reporter,
    check::{Origin, Report},
    repeats::conflict,
};
use crate::usage::{
    event::{UsageEventRow, UsageSource},
    pricing::Catalog,
};
use tollgate_core::error::AppResult;

/// Which candidate row an input became.
#[derive(Debug, Clone, Copy)]
pub(super) enum Slot {
    /// The input's own row (index into `rows`).
    Own(usize),
    /// A repeat, within the batch, of an earlier input's requestId with
    /// the same numbers.
    RepeatOf(usize),
}

/// The rows a batch would insert, before the database has its say on
/// requestIds already stored.
pub(super) struct Planned {
    /// Candidate events in input order, each requestId once.
    pub(super) rows: Vec<UsageEventRow>,
    /// The input each row came from (for `extensions.index`).
    pub(super) input_of: Vec<usize>,
    /// Per input, its row.
    pub(super) slots: Vec<Slot>,
}

impl Planned {
    /// Prices every report and folds repeats of a requestId within the
    /// batch (different numbers under one requestId: CONFLICT).
    pub(super) fn new(
        reporter: &Reporter,
        catalog: &Catalog,
        reports: Vec<Report>,
        now: DateTime<Utc>,
    ) -> AppResult<Self> {
        let mut planned = Self {
            rows: Vec::with_capacity(reports.len()),
            input_of: Vec::with_capacity(reports.len()),
            slots: Vec::with_capacity(reports.len()),
        };
        let mut by_request_id: HashMap<String, usize> = HashMap::new();
        for (index, report) in reports.into_iter().enumerate() {
            let row = event_row(reporter, catalog, report, now);
            if let Some(request_id) = &row.request_id {
                if let Some(&earlier) = by_request_id.get(request_id) {
                    if !planned.rows[earlier].same_numbers(&row) {
                        return Err(conflict().at_index(index));
                    }
                    planned.slots.push(Slot::RepeatOf(earlier));
                    continue;
                }
                by_request_id.insert(request_id.clone(), planned.rows.len());
            }
            planned.slots.push(Slot::Own(planned.rows.len()));
            planned.input_of.push(index);
            planned.rows.push(row);
        }
        Ok(planned)
    }
}

/// The event a report becomes, priced at the catalog's current prices.
fn event_row(reporter: &Reporter, catalog: &Catalog, report: Report, now: DateTime<Utc>) -> UsageEventRow {
    let pricing = catalog.price(&report.model, report.tokens);
    let (source, provider, estimated) = match report.origin {
        Origin::Reported => (UsageSource::Reported, None, false),
        Origin::Proxy { provider, estimated } => (UsageSource::Proxy, provider, estimated),
    };
    // Validation caps each count at 10M, so these fit an i32.
    let count = |n: i64| i32::try_from(n).unwrap_or(i32::MAX);
    UsageEventRow {
        id: Uuid::now_v7(),
        organization_id: reporter.organization_id,
        api_key_id: reporter.api_key_id,
        user_id: Some(reporter.user_id),
        model: report.model,
        model_id: pricing.model_id,
        prompt_tokens: count(report.tokens.prompt),
        cached_tokens: count(report.tokens.cached),
        completion_tokens: count(report.tokens.completion),
        total_tokens: count(report.tokens.prompt + report.tokens.completion),
        cost_micro_usd: pricing.cost_micro_usd,
        priced: pricing.priced,
        request_id: report.request_id,
        metadata: report.metadata,
        occurred_at: report.occurred_at.unwrap_or(now),
        created_at: now,
        source,
        estimated,
        provider,
    }
}
