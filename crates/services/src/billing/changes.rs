//! Every change to a subscription row goes through here: Stripe's state
//! (from a webhook or a synchronous answer), an ADMIN's assignment, a
//! cancellation. Each writes the row and, when the plan in effect changes,
//! the `plan.changed` audit entry, in the caller's transaction.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::json;
use uuid::Uuid;

use crate::{
    plans::{
        model::{self, FREE_PLAN_KEY, PlanRow},
        stripe_api::{RemoteStatus, RemoteSubscription},
        subscription::{SubscriptionRow, SubscriptionStatus},
    },
    usage::segments,
};
use tollgate_core::error::{AppError, AppResult};
use tollgate_db::schema::subscriptions;
use tollgate_platform::audit::{self, AuditEntry};

/// The columns a change sets; the Stripe customer is set separately, once.
#[derive(Debug, Clone, AsChangeset)]
#[diesel(table_name = subscriptions, treat_none_as_null = true)]
struct SubscriptionState {
    plan_id: Uuid,
    status: SubscriptionStatus,
    current_period_start: Option<DateTime<Utc>>,
    current_period_end: Option<DateTime<Utc>>,
    cancel_at_period_end: bool,
    stripe_subscription_id: Option<String>,
    delinquent_since: Option<DateTime<Utc>>,
    grace_ends_at: Option<DateTime<Utc>>,
}

impl SubscriptionState {
    /// A plan given without Stripe: no period of its own (quotas follow
    /// the calendar month), nothing to cancel.
    fn assigned(plan_id: Uuid) -> Self {
        Self {
            plan_id,
            status: SubscriptionStatus::Active,
            current_period_start: None,
            current_period_end: None,
            cancel_at_period_end: false,
            stripe_subscription_id: None,
            delinquent_since: None,
            grace_ends_at: None,
        }
    }
}

/// Who or what causes a change, for the audit entry.
#[derive(Debug, Clone)]
pub struct ChangeCause {
    /// The acting user; None for Stripe and the background job.
    pub actor_id: Option<Uuid>,
    /// The acting user's address.
    pub ip: Option<String>,
    /// Why, in the entry's metadata: `stripe`, `admin`, `cancelled`, ...
    pub reason: &'static str,
    /// Also audit when the plan in effect stays the same (an ADMIN's
    /// explicit assignment is worth a line either way).
    pub always_audit: bool,
}

impl ChangeCause {
    /// A change reported by Stripe.
    pub fn stripe() -> Self {
        Self {
            actor_id: None,
            ip: None,
            reason: "stripe",
            always_audit: false,
        }
    }
}

/// Applies Stripe's view of a subscription to the organization's (locked)
/// row. An ended subscription only clears the row when it is the one the
/// row holds, so a late event about an old subscription cannot undo a
/// newer one. `grace` starts when payments begin to fail.
pub async fn apply_remote(
    conn: &mut AsyncPgConnection,
    row: &SubscriptionRow,
    remote: &RemoteSubscription,
    grace: chrono::Duration,
    cause: &ChangeCause,
    now: DateTime<Utc>,
) -> AppResult<SubscriptionRow> {
    if row.stripe_customer_id.is_none() {
        set_customer(conn, row.organization_id, &remote.customer_id).await?;
    }
    let status = match &remote.status {
        RemoteStatus::Ended if row.stripe_subscription_id.as_deref() == Some(remote.id.as_str()) => {
            let free = free_plan(conn).await?;
            return save(conn, row, SubscriptionState::assigned(free.id), cause, now).await;
        }
        RemoteStatus::Ended => return Ok(row.clone()),
        RemoteStatus::Live(status) => *status,
    };
    let plan_id = match plan_of_prices(conn, &remote.price_ids).await? {
        Some(plan) => plan.id,
        None => {
            tracing::error!(
                subscription = %remote.id, prices = ?remote.price_ids,
                "no plan has this Stripe price; keeping the organization's plan (set stripePriceId with upsertPlan)"
            );
            row.plan_id
        }
    };
    let delinquent = matches!(status, SubscriptionStatus::PastDue | SubscriptionStatus::Unpaid);
    let already_delinquent = matches!(row.status, SubscriptionStatus::PastDue | SubscriptionStatus::Unpaid)
        && row.stripe_subscription_id.as_deref() == Some(remote.id.as_str());
    let (delinquent_since, grace_ends_at) = match (delinquent, already_delinquent) {
        (true, true) => (row.delinquent_since, row.grace_ends_at),
        (true, false) => (Some(now), Some(now + grace)),
        (false, _) => (None, None),
    };
    let state = SubscriptionState {
        plan_id,
        status,
        current_period_start: remote.period.map(|(start, _)| start),
        current_period_end: remote.period.map(|(_, end)| end),
        cancel_at_period_end: remote.cancel_at_period_end,
        stripe_subscription_id: Some(remote.id.clone()),
        delinquent_since,
        grace_ends_at,
    };
    save(conn, row, state, cause, now).await
}

/// Puts the organization on `plan` without Stripe.
pub async fn assign_plan(
    conn: &mut AsyncPgConnection,
    row: &SubscriptionRow,
    plan: &PlanRow,
    cause: &ChangeCause,
    now: DateTime<Utc>,
) -> AppResult<SubscriptionRow> {
    save(conn, row, SubscriptionState::assigned(plan.id), cause, now).await
}

/// Back to the free plan, as after a subscription ended.
pub async fn reset_to_free(
    conn: &mut AsyncPgConnection,
    row: &SubscriptionRow,
    cause: &ChangeCause,
    now: DateTime<Utc>,
) -> AppResult<SubscriptionRow> {
    let free = free_plan(conn).await?;
    save(conn, row, SubscriptionState::assigned(free.id), cause, now).await
}

/// Stores the organization's Stripe customer.
pub async fn set_customer(conn: &mut AsyncPgConnection, organization_id: Uuid, customer_id: &str) -> AppResult<()> {
    diesel::update(subscriptions::table.find(organization_id))
        .set(subscriptions::stripe_customer_id.eq(customer_id))
        .execute(conn)
        .await?;
    Ok(())
}

/// The free plan, which the first migration seeds and nothing deletes.
pub async fn free_plan(conn: &mut AsyncPgConnection) -> AppResult<PlanRow> {
    model::find_by_key(conn, FREE_PLAN_KEY)
        .await?
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("the free plan is missing")))
}

/// The plan sold at the first of these prices that one is sold at.
async fn plan_of_prices(conn: &mut AsyncPgConnection, price_ids: &[String]) -> AppResult<Option<PlanRow>> {
    if price_ids.is_empty() {
        return Ok(None);
    }
    let plans = model::find_by_stripe_prices(conn, price_ids).await?;
    Ok(price_ids
        .iter()
        .find_map(|price| plans.iter().find(|plan| plan.stripe_price_id.as_ref() == Some(price)))
        .cloned())
}

async fn save(
    conn: &mut AsyncPgConnection,
    before: &SubscriptionRow,
    state: SubscriptionState,
    cause: &ChangeCause,
    now: DateTime<Utc>,
) -> AppResult<SubscriptionRow> {
    // When the stored period changes, recording may start keying counter
    // rows differently: under the organization's row (no recording in
    // flight), the latest segment becomes a floor that later ones never go
    // below, and usage received since a new period's start (it may have
    // begun before we heard of it) moves into that period.
    let period_changes = (before.current_period_start, before.current_period_end)
        != (state.current_period_start, state.current_period_end);
    let floor = if period_changes {
        segments::hold(conn, before.organization_id).await?;
        before
            .usage_segment_floor
            .max(segments::latest_start(conn, before.organization_id).await?)
    } else {
        before.usage_segment_floor
    };
    let after: SubscriptionRow = diesel::update(subscriptions::table.find(before.organization_id))
        .set((
            &state,
            subscriptions::usage_segment_floor.eq(floor),
            subscriptions::updated_at.eq(now),
        ))
        .returning(SubscriptionRow::as_returning())
        .get_result(conn)
        .await?;
    audit_plan_change(conn, before, &after, cause, now).await?;
    if let Some(start) = after.current_period_start
        && before.current_period_start != Some(start)
    {
        segments::split_at(conn, after.organization_id, start).await?;
    }
    Ok(after)
}

/// Writes `plan.changed` when the plan in effect at `now` differs between
/// the two rows (or always, when the cause asks for it).
async fn audit_plan_change(
    conn: &mut AsyncPgConnection,
    before: &SubscriptionRow,
    after: &SubscriptionRow,
    cause: &ChangeCause,
    now: DateTime<Utc>,
) -> AppResult<()> {
    let free = free_plan(conn).await?;
    let in_effect = |row: &SubscriptionRow| if row.plan_counts_at(now) { row.plan_id } else { free.id };
    let (from, to) = (in_effect(before), in_effect(after));
    if from == to && !cause.always_audit {
        return Ok(());
    }
    let plans = model::find_by_ids(conn, &[from, to]).await?;
    let key_of = |id: Uuid| plans.iter().find(|plan| plan.id == id).map(|plan| plan.key.clone());
    let entry = AuditEntry::new("plan.changed", cause.actor_id, cause.ip.clone())
        .target("organization", after.organization_id)
        .in_organization(after.organization_id)
        .metadata(json!({
            "from": key_of(from),
            "to": key_of(to),
            "reason": cause.reason,
            "status": after.status.as_str(),
            "stripeSubscriptionId": after.stripe_subscription_id,
        }));
    audit::record(conn, entry, now).await?;
    Ok(())
}
