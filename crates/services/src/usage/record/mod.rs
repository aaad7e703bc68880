//! recordUsage and recordUsageBatch: reported LLM calls become events,
//! priced at record time and counted in one transaction.
//!
//! Reported usage is billing truth, so a report is refused only for who
//! sends it (credentials, scope, organization) and for impossible numbers;
//! budgets are enforced before the call by authorizeUsage. Concurrent
//! recordings (recordUsage, recordUsageBatch, gateway settlements), of one
//! organization or of many, are written together by the instance's writer:
//! one transaction of a fixed number of statements whatever their number,
//! one insert for the events, one upsert for the counters (by
//! organization, each one's row first), one for the daily rollup; each
//! answered after the commit.
//!
//! One file per concern: [`reporter`] (who reports for which
//! organization), [`check`] (the contract's rules for one input),
//! [`repeats`] (a refused input that repeats a stored requestId),
//! [`plan`] (pricing and folding repeats within a batch), [`group`] (the
//! writer that gathers concurrent recordings), [`merge`]
//! (one group's rows, each requestId once), [`write`] (the transaction),
//! [`alerts`] (thresholds crossed and the managers' email) and
//! [`publish`] (metrics and the events sent to every instance).

mod alerts;
mod check;
mod group;
mod merge;
mod plan;
mod publish;
mod repeats;
mod reporter;
mod write;

use uuid::Uuid;

use crate::usage::{pricing::Tokens, quota::QuotaSnapshot, reservations::Settlement};
use tollgate_auth::AppState;
use tollgate_core::error::{AppError, AppResult};

pub use check::{
    MAX_BATCH, MAX_METADATA_BYTES, MAX_NAME_CHARS, MAX_TOKENS, Origin, Report, UsageReport, check, check_name,
};
pub use repeats::check_reports;
pub use reporter::{Reporter, batch_organization, reporter_unchecked};

use crate::usage::event::UsageEventRow;

/// What one recording answered: a receipt per input and the
/// organization's quota just after its events.
#[derive(Debug, Clone)]
struct Recorded {
    receipts: Vec<Receipt>,
    quota: QuotaSnapshot,
}

/// What recording answered for one input.
#[derive(Debug, Clone)]
pub struct Receipt {
    /// The event: the new one, or the original of a repeated requestId.
    pub event: UsageEventRow,
    /// True when the requestId was already recorded.
    pub duplicate: bool,
}

/// Records `reports` for `reporter`, all or nothing, and returns one
/// receipt per report with the organization's quota after the write. Each
/// recorded event is published after commit.
pub async fn record(
    app: &AppState,
    reporter: Reporter,
    reports: Vec<Report>,
) -> AppResult<(Vec<Receipt>, QuotaSnapshot)> {
    record_settling(app, reporter, reports, None)
        .await?
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("a recording without a reservation wrote nothing")))
}

/// Records a gateway call and releases its reservation in one
/// transaction. None when the reservation was already gone (the expiry
/// job settled it as abandoned): nothing is recorded twice.
pub async fn settle(app: &AppState, reporter: Reporter, settlement: Settlement) -> AppResult<Option<Receipt>> {
    let clamp = |n: i64| n.clamp(0, i64::from(MAX_TOKENS));
    let prompt = clamp(settlement.tokens.prompt);
    let report = Report {
        model: settlement.model,
        tokens: Tokens {
            prompt,
            cached: clamp(settlement.tokens.cached).min(prompt),
            completion: clamp(settlement.tokens.completion),
        },
        request_id: Some(settlement.request_id),
        occurred_at: None,
        metadata: None,
        origin: Origin::Proxy {
            provider: settlement.provider,
            estimated: settlement.estimated,
        },
    };
    let written = record_settling(app, reporter, vec![report], Some(settlement.reservation_id)).await?;
    Ok(written.and_then(|(receipts, _)| receipts.into_iter().next()))
}

/// The recording, through the instance's writer (see [`group`]):
/// with `settles`, it also deletes that reservation in the same
/// transaction (no lock: reservations read what they check in one
/// statement, so they see the settlement whole or not at all) and writes
/// nothing when it is already gone.
async fn record_settling(
    app: &AppState,
    reporter: Reporter,
    reports: Vec<Report>,
    settles: Option<Uuid>,
) -> AppResult<Option<(Vec<Receipt>, QuotaSnapshot)>> {
    let recorded = group::submit(app, reporter, reports, settles).await?;
    Ok(recorded.map(|recorded| (recorded.receipts, recorded.quota)))
}
