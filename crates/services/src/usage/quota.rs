//! An organization's quota: its token window's use against the plan's
//! limits, and today's requests.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel::QueryResult;
use diesel_async::AsyncPgConnection;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    plans::model::PlanRow,
    usage::{
        counters::{self, CounterSpan, SubjectKind},
        windows::{self, Windows},
    },
};
use tollgate_core::error::{AppError, AppResult};

/// A quota as computed at one moment; the serde form travels on the event
/// bus with each recorded event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaSnapshot {
    /// The organization it is the quota of.
    pub organization_id: Uuid,
    /// Where the token counters start: the period's start, or the last
    /// resetUsage inside the period.
    pub period_start: DateTime<Utc>,
    /// The period's end.
    pub period_end: DateTime<Utc>,
    /// Tokens counted since `period_start`.
    pub tokens_used: i64,
    /// The plan's tokens per period; None = unlimited.
    pub token_limit: Option<i64>,
    /// Usage events received since 00:00 UTC (or a later reset).
    pub requests_today: i64,
    /// The plan's events per UTC day; None = unlimited.
    pub daily_request_limit: Option<i32>,
}

impl QuotaSnapshot {
    /// The snapshot for `windows` and `plan` with these totals.
    pub fn new(
        organization_id: Uuid,
        windows: &Windows,
        plan: &PlanRow,
        tokens_used: i64,
        requests_today: i64,
    ) -> Self {
        Self {
            organization_id,
            period_start: windows.token_start,
            period_end: windows.period.end,
            tokens_used,
            token_limit: plan.monthly_token_limit,
            requests_today,
            daily_request_limit: plan.daily_request_limit,
        }
    }

    /// A budget is spent when tokensUsed >= tokenLimit.
    pub fn exceeded(&self) -> bool {
        self.token_limit.is_some_and(|limit| self.tokens_used >= limit)
    }

    /// Tokens left; 0 once spent, never negative; None = unlimited.
    pub fn remaining(&self) -> Option<i64> {
        self.token_limit
            .map(|limit| limit.saturating_sub(self.tokens_used).max(0))
    }

    /// Whether today's requests have reached the daily limit.
    pub fn daily_requests_spent(&self) -> bool {
        self.daily_request_limit
            .is_some_and(|limit| self.requests_today >= i64::from(limit))
    }
}

/// The totals a quota is made of: the organization's tokens in the token
/// window and its requests today.
pub fn spans(organization_id: Uuid, windows: &Windows) -> [CounterSpan; 2] {
    [
        windows.span(SubjectKind::Organization, organization_id),
        windows.span(SubjectKind::Day, organization_id),
    ]
}

/// The snapshot from totals that include [`spans`] (missing ones are 0).
pub fn from_totals(
    organization_id: Uuid,
    windows: &Windows,
    plan: &PlanRow,
    totals: &HashMap<CounterSpan, (i64, i64)>,
) -> QuotaSnapshot {
    let [tokens, requests] = spans(organization_id, windows);
    let total = |span| totals.get(&span).copied().unwrap_or_default();
    QuotaSnapshot::new(organization_id, windows, plan, total(tokens).0, total(requests).1)
}

/// The organization's quota at `now`; NOT_FOUND when there is no such
/// organization.
pub async fn of_organization(
    conn: &mut AsyncPgConnection,
    organization_id: Uuid,
    now: DateTime<Utc>,
) -> AppResult<QuotaSnapshot> {
    let (windows, plan) = windows::of_organization(conn, organization_id, now)
        .await?
        .ok_or_else(|| AppError::not_found("organization"))?;
    Ok(read(conn, organization_id, &windows, &plan).await?)
}

/// The quota for known windows and plan: one query.
pub async fn read(
    conn: &mut AsyncPgConnection,
    organization_id: Uuid,
    windows: &Windows,
    plan: &PlanRow,
) -> QueryResult<QuotaSnapshot> {
    let totals = counters::sum(conn, organization_id, &spans(organization_id, windows)).await?;
    Ok(from_totals(organization_id, windows, plan, &totals))
}

/// Quotas of many organizations (Organization.quota over a list): their
/// windows in one or two queries, the counters in one more. Organizations
/// that do not exist are left out.
pub async fn of_organizations(
    conn: &mut AsyncPgConnection,
    organization_ids: &[Uuid],
    now: DateTime<Utc>,
) -> AppResult<HashMap<Uuid, QuotaSnapshot>> {
    let windows = windows::of_organizations(conn, organization_ids, now).await?;
    let wanted: Vec<(Uuid, CounterSpan)> = windows
        .iter()
        .flat_map(|(organization_id, (windows, _))| {
            spans(*organization_id, windows).map(|span| (*organization_id, span))
        })
        .collect();
    let totals = counters::sum_many(conn, &wanted).await?;
    Ok(windows
        .iter()
        .map(|(organization_id, (windows, plan))| {
            let [tokens, requests] = spans(*organization_id, windows)
                .map(|span| totals.get(&(*organization_id, span)).copied().unwrap_or_default());
            (
                *organization_id,
                QuotaSnapshot::new(*organization_id, windows, plan, tokens.0, requests.1),
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(tokens_used: i64, token_limit: Option<i64>) -> QuotaSnapshot {
        QuotaSnapshot {
            organization_id: Uuid::nil(),
            period_start: DateTime::UNIX_EPOCH,
            period_end: DateTime::UNIX_EPOCH,
            tokens_used,
            token_limit,
            requests_today: 0,
            daily_request_limit: None,
        }
    }

    #[test]
    fn remaining_is_never_negative_and_spent_means_at_the_limit() {
        assert_eq!(snapshot(90, Some(100)).remaining(), Some(10));
        assert!(!snapshot(99, Some(100)).exceeded());
        assert!(snapshot(100, Some(100)).exceeded());
        assert_eq!(snapshot(150, Some(100)).remaining(), Some(0));
        assert_eq!(snapshot(150, None).remaining(), None);
        assert!(!snapshot(150, None).exceeded());
        assert!(snapshot(0, Some(0)).exceeded());
    }
}
