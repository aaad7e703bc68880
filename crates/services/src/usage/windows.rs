//! Which counter rows are "current" for an organization: the windows that
//! quotas read and that recording adds to.
//!
//! Token counters (organization, keys, members) run from the start of the
//! quota period, or from the last `resetUsage` inside it; the request
//! counter runs from UTC midnight, or from a later reset. A new period (or a
//! reset) therefore starts new rows at zero without any job.
//!
//! The period in effect can jump back in time: a paid plan's period that
//! began on the 10th gives way, when the plan lapses or is cancelled, to
//! the calendar month that began on the 1st. So recording never adds to
//! one row per period but to the row of the current *segment*, which
//! starts at the latest boundary any period could start at (the token
//! window's start, the calendar month's, the subscription's own period's,
//! or one an earlier period of the subscription left: segments never go
//! back in time),
//! and a total is the sum of the subject's rows from the window's start on:
//! whichever period is in effect, it counts exactly the events received in
//! it. Rows older than the window are never read, and a subject has at
//! most a few rows per month. A boundary learned only after it passed (a
//! payment's webhook) is made one after the fact by
//! [`crate::usage::segments`].

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::{
    plans::{
        model as plans,
        model::{FREE_PLAN_KEY, PlanRow},
        subscription::{Period, SubscriptionRow, billing_period, calendar_month, current_period},
    },
    usage::counters::{CounterKey, CounterSpan, SubjectKind},
};
use tollgate_db::schema::{organizations, plans as plans_table, subscriptions};

/// The current windows of one organization at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    /// The quota period (the subscription's month or the calendar month).
    pub period: Period,
    /// Where the token counters start: the period's start or a later reset.
    pub token_start: DateTime<Utc>,
    /// Where the request counter starts: UTC midnight or a later reset.
    pub day_start: DateTime<Utc>,
    /// The row that token counters add to now (see the module's comment):
    /// never before `token_start`.
    pub segment_start: DateTime<Utc>,
}

impl Windows {
    /// The windows at `now` for `period`, the organization's last reset,
    /// the subscription's own billing period's start (a segment begins there
    /// once it has passed) and the floor segments never go
    /// below (the latest one recorded when a period last changed; applied
    /// even if another instance's clock put it a moment ahead of ours). A
    /// reset outside the period (an earlier period's) changes nothing.
    pub fn new(
        period: Period,
        reset_at: Option<DateTime<Utc>>,
        billing_start: Option<DateTime<Utc>>,
        floor: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Self {
        let reset = reset_at.filter(|at| *at <= now);
        let token_start = match reset {
            Some(at) if period.contains(at) => at,
            _ => period.start,
        };
        let midnight = utc_midnight(now);
        let day_start = reset.filter(|at| *at > midnight).unwrap_or(midnight);
        let segment_start = [Some(calendar_month(now).start), billing_start]
            .into_iter()
            .flatten()
            .filter(|start| *start <= now)
            .fold(token_start, DateTime::max)
            .max(floor.unwrap_or(DateTime::<Utc>::MIN_UTC));
        Self {
            period,
            token_start,
            day_start,
            segment_start,
        }
    }

    /// The row that recording adds `kind`'s tokens to: the segment's for
    /// token counters, the day's for the request counter.
    pub fn row(&self, kind: SubjectKind, subject_id: Uuid) -> CounterKey {
        let window_start = match kind {
            SubjectKind::Day => self.day_start,
            _ => self.segment_start,
        };
        CounterKey {
            kind,
            subject_id,
            window_start,
        }
    }

    /// The rows a current total of `kind` sums: all of the subject's from
    /// the window's start on.
    pub fn span(&self, kind: SubjectKind, subject_id: Uuid) -> CounterSpan {
        let since = match kind {
            SubjectKind::Day => self.day_start,
            _ => self.token_start,
        };
        CounterSpan {
            kind,
            subject_id,
            since,
        }
    }
}

/// 00:00 UTC of the day of `at`.
pub fn utc_midnight(at: DateTime<Utc>) -> DateTime<Utc> {
    day_of(at).and_time(chrono::NaiveTime::MIN).and_utc()
}

/// The UTC calendar day of `at`.
pub fn day_of(at: DateTime<Utc>) -> NaiveDate {
    at.date_naive()
}

/// The organization's windows and the plan in effect at `now`; None when
/// there is no such organization.
pub async fn of_organization(
    conn: &mut AsyncPgConnection,
    organization_id: Uuid,
    now: DateTime<Utc>,
) -> QueryResult<Option<(Windows, PlanRow)>> {
    // One statement (two once the plan lapsed) instead of one per table:
    // every recording group and authorizeUsage reads this.
    Ok(of_organizations(conn, &[organization_id], now)
        .await?
        .remove(&organization_id))
}

/// The windows of a subscription with `plan` in effect (the plan that
/// counts at `now`: the free plan once a subscribed one lapsed).
pub fn windows_of(
    subscription: &SubscriptionRow,
    plan: &PlanRow,
    reset_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Windows {
    let period = current_period(subscription, plan, now);
    let billing_start = billing_period(subscription, now).map(|period| period.start);
    Windows::new(period, reset_at, billing_start, subscription.usage_segment_floor, now)
}

/// Locks the organizations' rows against a concurrent resetUsage for the
/// rest of the recording transaction (shared: recordings do not wait on
/// each other here; in id order, so two recorders of overlapping
/// organizations take them alike), and returns the ids found with the
/// catalog's version read in the same statement, so the writer checks its
/// copy of the catalog at no extra round trip (None when none was found).
pub async fn lock_for_recording(
    conn: &AsyncPgConnection,
    organization_ids: &[Uuid],
) -> QueryResult<(HashSet<Uuid>, Option<i64>)> {
    let rows: Vec<(Uuid, i64)> = organizations::table
        .filter(organizations::id.eq_any(organization_ids))
        .order(organizations::id)
        .select((
            organizations::id,
            diesel::dsl::sql::<diesel::sql_types::BigInt>(crate::usage::directory::VERSION_SQL),
        ))
        .for_share()
        .load(&mut { conn })
        .await?;
    let version = rows.iter().map(|row| row.1).next();
    Ok((rows.into_iter().map(|row| row.0).collect(), version))
}

/// What an organization's windows are made of: its subscription, the
/// plan subscribed to, and its last reset.
pub type WindowRows = Vec<(SubscriptionRow, PlanRow, Option<DateTime<Utc>>)>;

/// Reads [`WindowRows`] of many organizations in one statement. It needs
/// no clock, so a caller may send it together with another statement on
/// the same connection (pipelined: one round trip for both) and read the
/// clock after both ran.
pub async fn rows_of_organizations(conn: &AsyncPgConnection, organization_ids: &[Uuid]) -> QueryResult<WindowRows> {
    subscriptions::table
        .inner_join(plans_table::table)
        .inner_join(organizations::table)
        .filter(subscriptions::organization_id.eq_any(organization_ids))
        .select((
            SubscriptionRow::as_select(),
            PlanRow::as_select(),
            organizations::usage_reset_at,
        ))
        .load(&mut { conn })
        .await
}

/// The windows of many organizations at `now` in at most two queries (the
/// free plan is read only when some subscribed plan has stopped counting).
pub async fn of_organizations(
    conn: &mut AsyncPgConnection,
    organization_ids: &[Uuid],
    now: DateTime<Utc>,
) -> QueryResult<HashMap<Uuid, (Windows, PlanRow)>> {
    let rows = rows_of_organizations(conn, organization_ids).await?;
    windows_at(conn, rows, now).await
}

/// The windows that `rows` give at `now`, with the plan in effect (the
/// free plan, read here, where a subscribed plan has stopped counting).
pub async fn windows_at(
    conn: &mut AsyncPgConnection,
    rows: WindowRows,
    now: DateTime<Utc>,
) -> QueryResult<HashMap<Uuid, (Windows, PlanRow)>> {
    let mut free: Option<PlanRow> = None;
    let mut windows = HashMap::with_capacity(rows.len());
    for (subscription, plan, reset_at) in rows {
        let plan = if subscription.plan_counts_at(now) {
            plan
        } else {
            if free.is_none() {
                free = Some(
                    plans::find_by_key(conn, FREE_PLAN_KEY)
                        .await?
                        .ok_or(diesel::result::Error::NotFound)?,
                );
            }
            free.clone().ok_or(diesel::result::Error::NotFound)?
        };
        windows.insert(
            subscription.organization_id,
            (windows_of(&subscription, &plan, reset_at, now), plan),
        );
    }
    Ok(windows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    fn november() -> Period {
        Period {
            start: at("2026-11-01T00:00:00Z"),
            end: at("2026-12-01T00:00:00Z"),
        }
    }

    #[test]
    fn without_a_reset_windows_are_the_period_and_the_utc_day() {
        let windows = Windows::new(november(), None, None, None, at("2026-11-21T15:30:00Z"));
        assert_eq!(windows.token_start, at("2026-11-01T00:00:00Z"));
        assert_eq!(windows.day_start, at("2026-11-21T00:00:00Z"));
    }

    #[test]
    fn a_reset_inside_the_period_restarts_both_windows() {
        let reset = at("2026-11-21T10:00:00Z");
        let windows = Windows::new(november(), Some(reset), None, None, at("2026-11-21T15:30:00Z"));
        assert_eq!((windows.token_start, windows.day_start), (reset, reset));
        let next_day = Windows::new(november(), Some(reset), None, None, at("2026-11-22T01:00:00Z"));
        assert_eq!(next_day.token_start, reset);
        assert_eq!(next_day.day_start, at("2026-11-22T00:00:00Z"));
    }

    #[test]
    fn a_reset_of_an_earlier_period_changes_nothing() {
        let windows = Windows::new(
            november(),
            Some(at("2026-10-30T10:00:00Z")),
            None,
            None,
            at("2026-11-02T01:00:00Z"),
        );
        assert_eq!(windows.token_start, at("2026-11-01T00:00:00Z"));
        assert_eq!(windows.day_start, at("2026-11-02T00:00:00Z"));
    }

    #[test]
    fn a_paid_period_across_months_adds_to_a_segment_per_month() {
        let paid = Period {
            start: at("2026-11-10T08:00:00Z"),
            end: at("2026-12-10T08:00:00Z"),
        };
        let in_november = Windows::new(paid, None, Some(paid.start), None, at("2026-11-20T00:00:00Z"));
        assert_eq!(in_november.segment_start, paid.start);
        let in_december = Windows::new(paid, None, Some(paid.start), None, at("2026-12-03T00:00:00Z"));
        assert_eq!(in_december.token_start, paid.start);
        assert_eq!(in_december.segment_start, at("2026-12-01T00:00:00Z"));
        // Lapsed to the free plan: the calendar month, with the paid
        // period's segment still a boundary inside it.
        let december = Period {
            start: at("2026-12-01T00:00:00Z"),
            end: at("2027-01-01T00:00:00Z"),
        };
        let lapsed = Windows::new(december, None, Some(paid.start), None, at("2026-12-05T00:00:00Z"));
        assert_eq!(lapsed.token_start, december.start);
        assert_eq!(lapsed.segment_start, december.start);
        let still_billed = Period {
            start: at("2026-12-04T00:00:00Z"),
            end: at("2027-01-04T00:00:00Z"),
        };
        let lapsed_mid_period = Windows::new(
            december,
            None,
            Some(still_billed.start),
            None,
            at("2026-12-05T00:00:00Z"),
        );
        assert_eq!(lapsed_mid_period.segment_start, still_billed.start);
        // A period that went leaves its last segment as a floor, even one
        // another instance's clock put a moment ahead.
        let floor = at("2026-12-05T00:00:01Z");
        let floored = Windows::new(december, None, None, Some(floor), at("2026-12-05T00:00:00Z"));
        assert_eq!((floored.token_start, floored.segment_start), (december.start, floor));
    }
}
