//! recordUsage and recordUsageBatch: reported LLM calls become events,
//! priced at record time and counted in one transaction.
//!
//! Reported usage is billing truth, so a report is refused only for who
//! sends it (credentials, scope, organization) and for impossible numbers;
//! budgets are enforced before the call by authorizeUsage. A batch is one
//! transaction of a fixed number of statements whatever its size: one
//! insert for the events, one upsert for the counters (organization row
//! first), one for the daily rollup.
//!
//! One file per concern: [`reporter`] (who reports for which
//! organization), [`check`] (the contract's rules for one input),
//! [`repeats`] (a refused input that repeats a stored requestId),
//! [`plan`] (pricing and folding repeats within a batch), [`write`] (the
//! transaction), [`alerts`] (thresholds crossed and the managers' email)
//! and [`publish`] (metrics and the events sent to every instance).

mod alerts;
mod check;
mod plan;
mod publish;
mod repeats;
mod reporter;
mod write;

use diesel_async::AsyncConnection;

use uuid::Uuid;

use crate::usage::{
    pricing::{Catalog, Tokens},
    quota::QuotaSnapshot,
    reservations::{self, Settlement},
    windows,
};
use tollgate_auth::AppState;
use tollgate_core::error::{AppError, AppResult};

pub use check::{
    MAX_BATCH, MAX_METADATA_BYTES, MAX_NAME_CHARS, MAX_TOKENS, Origin, Report, UsageReport, check, check_name,
};
pub use repeats::check_reports;
pub use reporter::{Reporter, batch_organization, reporter_unchecked};

use crate::usage::event::UsageEventRow;
use plan::Planned;
use write::{WriteContext, write};

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

/// The recording transaction; with `settles`, it also deletes that
/// reservation (under the organization's reservation lock) and writes
/// nothing when it is already gone.
async fn record_settling(
    app: &AppState,
    reporter: Reporter,
    reports: Vec<Report>,
    settles: Option<Uuid>,
) -> AppResult<Option<(Vec<Receipt>, QuotaSnapshot)>> {
    let mut conn = app.db().await?;
    let catalog = Catalog::load(&mut conn).await?;
    let written = conn
        .transaction::<_, AppError, _>(async |conn| {
            // Receive time is read under the organization's lock, which
            // resetUsage takes exclusively: every event then falls wholly
            // before or after a reset, in the window its created_at says.
            windows::lock_for_recording(conn, reporter.organization_id).await?;
            if let Some(reservation) = settles
                && !reservations::delete(conn, reporter.organization_id, reservation).await?
            {
                return Ok(None);
            }
            let now = app.now();
            let (windows, plan) = windows::of_organization(conn, reporter.organization_id, now)
                .await?
                .ok_or_else(|| AppError::not_found("organization"))?;
            let planned = Planned::new(&reporter, &catalog, reports, now)?;
            let context = WriteContext {
                reporter: &reporter,
                windows: &windows,
                plan: &plan,
                now,
            };
            write(conn, &context, &planned).await.map(Some)
        })
        .await?;
    // Back to the pool before anything else: nothing below needs it.
    drop(conn);
    let Some(written) = written else {
        return Ok(None);
    };
    publish::after_commit(app, &written);
    Ok(Some((written.receipts, written.quota)))
}
