//! Subscription rows and the current quota period.

use chrono::{DateTime, Datelike, Duration, TimeZone, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::{
    billing::model::{BillingInterval, PlanRow},
    db::schema::{plans, subscriptions},
    text_enum,
};

text_enum! {
    /// Stripe's statuses; incomplete_expired reads as CANCELED.
    pub enum SubscriptionStatus {
        /// In a trial.
        Trialing => "TRIALING",
        /// Paid up.
        Active => "ACTIVE",
        /// A payment failed; the plan holds for a grace period.
        PastDue => "PAST_DUE",
        /// Payments kept failing.
        Unpaid => "UNPAID",
        /// Paused in Stripe.
        Paused => "PAUSED",
        /// Ended.
        Canceled => "CANCELED",
        /// The first payment has not gone through.
        Incomplete => "INCOMPLETE",
    }
}

/// A row of `subscriptions`.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = subscriptions, check_for_backend(diesel::pg::Pg))]
pub struct SubscriptionRow {
    pub organization_id: Uuid,
    pub plan_id: Uuid,
    pub status: SubscriptionStatus,
    pub current_period_start: Option<DateTime<Utc>>,
    pub current_period_end: Option<DateTime<Utc>>,
    pub cancel_at_period_end: bool,
    pub stripe_customer_id: Option<String>,
    pub stripe_subscription_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Gives a new organization its free-plan subscription row.
pub async fn insert_free(conn: &mut AsyncPgConnection, organization_id: Uuid, now: DateTime<Utc>) -> QueryResult<()> {
    let free_plan: Uuid = plans::table
        .filter(plans::key.eq("free"))
        .select(plans::id)
        .first(conn)
        .await?;
    diesel::insert_into(subscriptions::table)
        .values((
            subscriptions::organization_id.eq(organization_id),
            subscriptions::plan_id.eq(free_plan),
            subscriptions::status.eq(SubscriptionStatus::Active),
            subscriptions::created_at.eq(now),
            subscriptions::updated_at.eq(now),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// The subscription rows of these organizations.
pub async fn find_by_organizations(
    conn: &mut AsyncPgConnection,
    organization_ids: &[Uuid],
) -> QueryResult<Vec<SubscriptionRow>> {
    subscriptions::table
        .filter(subscriptions::organization_id.eq_any(organization_ids))
        .select(SubscriptionRow::as_select())
        .load(conn)
        .await
}

/// The organization's subscription row and the plan in effect for it at
/// `now`. The billing issue decides "in effect" (grace periods, a
/// cancellation that has reached its period end); every limit check reads
/// the plan through here so that rule lives in one place.
pub async fn plan_in_effect(
    conn: &mut AsyncPgConnection,
    organization_id: Uuid,
    now: DateTime<Utc>,
) -> QueryResult<(SubscriptionRow, PlanRow)> {
    let _ = now;
    subscriptions::table
        .inner_join(plans::table)
        .filter(subscriptions::organization_id.eq(organization_id))
        .select((SubscriptionRow::as_select(), PlanRow::as_select()))
        .first(conn)
        .await
}

/// A half-open interval of time `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    /// First instant inside.
    pub start: DateTime<Utc>,
    /// First instant after.
    pub end: DateTime<Utc>,
}

impl Period {
    /// Whether `at` falls inside.
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        self.start <= at && at < self.end
    }
}

/// The UTC calendar month containing `at`.
pub fn calendar_month(at: DateTime<Utc>) -> Period {
    let start = month_start(at.year(), at.month());
    let (year, month) = if at.month() == 12 {
        (at.year() + 1, 1)
    } else {
        (at.year(), at.month() + 1)
    };
    Period {
        start,
        end: month_start(year, month),
    }
}

fn month_start(year: i32, month: u32) -> DateTime<Utc> {
    // Day 1 at midnight exists in every month of every year chrono supports.
    Utc.with_ymd_and_hms(year, month, 1, 0, 0, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// An organization's current quota period: the subscription's own period
/// on monthly paid plans that have one, otherwise the UTC calendar month
/// (free plans, yearly plans, admin-assigned plans). A monthly period that
/// has lapsed without word from Stripe rolls forward a month at a time, so
/// counters never stall on a missed webhook.
pub fn current_period(subscription: &SubscriptionRow, plan: &PlanRow, now: DateTime<Utc>) -> Period {
    let (Some(start), Some(end)) = (subscription.current_period_start, subscription.current_period_end) else {
        return calendar_month(now);
    };
    if plan.billing_interval != BillingInterval::Month || end <= start {
        return calendar_month(now);
    }
    let mut period = Period { start, end };
    while period.end <= now {
        period = Period {
            start: period.end,
            end: period.end + (period.end - period.start).max(Duration::days(28)),
        };
    }
    if now < period.start {
        return calendar_month(now);
    }
    period
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn calendar_months_are_utc_and_half_open() {
        let december = calendar_month(at("2026-12-31T23:59:59Z"));
        assert_eq!(
            (december.start, december.end),
            (at("2026-12-01T00:00:00Z"), at("2027-01-01T00:00:00Z"))
        );
        assert!(!december.contains(at("2027-01-01T00:00:00Z")));
        let february = calendar_month(at("2028-02-29T12:00:00Z"));
        assert_eq!(february.end, at("2028-03-01T00:00:00Z"));
    }
}
