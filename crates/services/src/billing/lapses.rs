//! The background job that announces when a paid plan stops counting: a
//! grace period that ran out, a cancellation that reached its period end.
//!
//! The plan in effect is computed on read (see
//! [`crate::plans::subscription::SubscriptionRow::plan_counts_at`]), so
//! nothing waits on this job to take effect; it writes the `plan.changed`
//! audit entry and emails the OWNER, once per moment, whatever the number
//! of instances running it.

use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use diesel::{PgExpressionMethods, prelude::*};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::json;

use crate::{
    billing::{
        changes,
        notices::{self, LapseReason},
    },
    plans::{
        model,
        subscription::{SubscriptionRow, SubscriptionStatus},
    },
};
use tollgate_auth::AppState;
use tollgate_core::config::Config;
use tollgate_db::schema::{stripe_events, subscriptions};
use tollgate_platform::{
    audit::{self, AuditEntry},
    mail,
};

/// How often the job looks for moments that passed. The query is one
/// index probe, so it can be frequent; a downgrade notice is then at most
/// this late.
const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Pause after a failed round, so an outage is not logged every second.
const ERROR_PAUSE: Duration = Duration::from_secs(10);
/// Rows handled per transaction.
const BATCH_SIZE: i64 = 50;
/// Stripe retries an event for three days; ids are kept well beyond that.
const EVENT_RETENTION: chrono::Duration = chrono::Duration::days(30);
/// Rounds between two prunings of old event ids (about an hour).
const PRUNE_EVERY: u32 = 3600;

/// Starts the job; it runs until the app's shutdown signal and is tracked
/// so shutdown waits for the round in hand.
pub fn spawn_job(app: &AppState) {
    let state = app.clone();
    app.tasks().spawn(tollgate_db::hold::scoped(run(state)));
}

async fn run(app: AppState) {
    let shutdown = app.shutdown_signal().clone();
    let mut rounds: u32 = 0;
    while !shutdown.is_cancelled() {
        let pause = match run_once(&app).await {
            Ok(handled) if handled as i64 == BATCH_SIZE => continue,
            Ok(_) => POLL_INTERVAL,
            Err(e) => {
                tracing::warn!(error = ?e, "billing: lapse round failed");
                ERROR_PAUSE
            }
        };
        rounds = rounds.wrapping_add(1);
        if rounds % PRUNE_EVERY == 1
            && let Err(e) = prune_events(&app).await
        {
            tracing::warn!(error = ?e, "billing: pruning old Stripe event ids failed");
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(pause) => {}
        }
    }
}

/// One round: announces every lapse moment that has passed and was not
/// announced yet. Returns how many rows it handled.
pub async fn run_once(app: &AppState) -> anyhow::Result<usize> {
    let mut conn = app.jobs_pool().get().await.context("getting a connection")?;
    let now = app.now();
    let config = app.config();
    let (handled, emailed) = conn
        .transaction::<_, anyhow::Error, _>(async |conn| {
            // SKIP LOCKED: several instances share the work, and a row a
            // webhook is changing is looked at in the next round.
            let due: Vec<SubscriptionRow> = subscriptions::table
                .filter(subscriptions::lapses_at.le(now))
                .filter(subscriptions::lapse_noticed_for.is_distinct_from(subscriptions::lapses_at))
                .select(SubscriptionRow::as_select())
                .limit(BATCH_SIZE)
                .for_update()
                .skip_locked()
                .load(conn)
                .await
                .context("finding passed lapse moments")?;
            let mut emailed = 0;
            for row in &due {
                if announce(conn, config, row, now).await? {
                    emailed += 1;
                }
            }
            Ok((due.len(), emailed))
        })
        .await?;
    if emailed > 0 {
        mail::wake();
    }
    Ok(handled)
}

/// Marks the row's lapse moment announced and, when a paid plan really
/// stopped counting at it, writes `plan.changed` and emails the OWNER.
/// Returns whether an email was queued.
async fn announce(
    conn: &mut AsyncPgConnection,
    config: &Config,
    row: &SubscriptionRow,
    now: DateTime<Utc>,
) -> anyhow::Result<bool> {
    let Some(moment) = row.lapses_at else {
        return Ok(false);
    };
    diesel::update(subscriptions::table.find(row.organization_id))
        .set(subscriptions::lapse_noticed_for.eq(moment))
        .execute(conn)
        .await
        .context("marking a lapse announced")?;
    let free = changes::free_plan(conn)
        .await
        .map_err(|_| anyhow::anyhow!("the free plan is missing"))?;
    let counted_before = row.plan_counts_at(moment - chrono::Duration::milliseconds(1));
    if row.plan_id == free.id || !counted_before {
        // Already on the free plan in effect (an earlier moment or status
        // took it there): nothing changes now.
        return Ok(false);
    }
    let paid_plan = model::find_by_ids(conn, &[row.plan_id])
        .await?
        .into_iter()
        .next()
        .context("the subscribed plan is missing")?;
    let reason = lapse_reason(row, moment);
    let entry = AuditEntry::new("plan.changed", None, None)
        .target("organization", row.organization_id)
        .in_organization(row.organization_id)
        .metadata(json!({
            "from": paid_plan.key,
            "to": free.key,
            "reason": reason.as_str(),
            "at": moment,
            "status": row.status.as_str(),
            "stripeSubscriptionId": row.stripe_subscription_id,
        }));
    audit::record(conn, entry, now).await?;
    let Some(owner) = notices::owner_of(conn, row.organization_id).await? else {
        return Ok(false);
    };
    let email = notices::plan_downgraded(config, &owner, &paid_plan.name, reason);
    mail::enqueue(conn, &email, now).await?;
    Ok(true)
}

fn lapse_reason(row: &SubscriptionRow, moment: DateTime<Utc>) -> LapseReason {
    let delinquent = matches!(row.status, SubscriptionStatus::PastDue | SubscriptionStatus::Unpaid);
    if delinquent && row.grace_ends_at == Some(moment) {
        LapseReason::GraceEnded
    } else {
        LapseReason::PeriodEnded
    }
}

async fn prune_events(app: &AppState) -> anyhow::Result<()> {
    let mut conn = app.jobs_pool().get().await.context("getting a connection")?;
    let cutoff = app.now() - EVENT_RETENTION;
    diesel::delete(stripe_events::table.filter(stripe_events::received_at.lt(cutoff)))
        .execute(&mut conn)
        .await
        .context("deleting old Stripe event ids")?;
    Ok(())
}
