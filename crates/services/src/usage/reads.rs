//! Reading usage back: buckets from the daily rollup (never by scanning
//! events), pages of events, and the platform totals of the staff stats.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use diesel::{
    pg::Pg,
    prelude::*,
    sql_types::{BigInt, Date, Text, Uuid as SqlUuid},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::{
    plans::subscription::{Period, calendar_month},
    usage::{event::UsageEventRow, windows::day_of},
};
use tollgate_core::error::{AppError, AppResult};
use tollgate_db::{
    pagination::{Cursor, PageRequest, after_cursor, ordered},
    schema::{api_keys, usage_daily, usage_events},
};

/// The longest range usage(from, to) answers, in days.
pub const MAX_RANGE_DAYS: i64 = 400;

/// What usage buckets are keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageGroupBy {
    /// One bucket per UTC day of occurredAt (key YYYY-MM-DD).
    Day,
    /// One bucket per catalog model (the reported name when unpriced).
    Model,
    /// One bucket per API key ("none" for usage reported without one).
    ApiKey,
    /// One bucket per member ("none" for usage without a user).
    User,
}

impl UsageGroupBy {
    /// The bucket key as SQL over `usage_daily`, and the buckets' order.
    fn sql(self) -> (&'static str, &'static str) {
        match self {
            Self::Day => ("to_char(day, 'YYYY-MM-DD')", "1"),
            Self::Model => ("model", "4 DESC, 1"),
            Self::ApiKey => (
                "CASE WHEN api_key_id = '00000000-0000-0000-0000-000000000000' THEN 'none' ELSE api_key_id::text END",
                "4 DESC, 1",
            ),
            Self::User => (
                "CASE WHEN user_id = '00000000-0000-0000-0000-000000000000' THEN 'none' ELSE user_id::text END",
                "4 DESC, 1",
            ),
        }
    }
}

/// Sums of one bucket.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct BucketRow {
    /// YYYY-MM-DD, the model, the key id or the user id; "none".
    #[diesel(sql_type = Text)]
    pub key: String,
    #[diesel(sql_type = BigInt)]
    pub prompt_tokens: i64,
    #[diesel(sql_type = BigInt)]
    pub completion_tokens: i64,
    #[diesel(sql_type = BigInt)]
    pub total_tokens: i64,
    #[diesel(sql_type = BigInt)]
    pub requests: i64,
    #[diesel(sql_type = BigInt)]
    pub cost_micro_usd: i64,
}

/// Whole UTC days, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayRange {
    /// First day.
    pub first: NaiveDate,
    /// Last day.
    pub last: NaiveDate,
}

impl DayRange {
    /// The days of `from` to `to`, each truncated to its UTC day. Missing
    /// ends default to the current period's days: `from` to the period's
    /// first day (or, when `to` lies before the period, the first day of
    /// `to`'s month), `to` to the period's last day. `from` after `to` or
    /// more than [`MAX_RANGE_DAYS`] days are BAD_USER_INPUT.
    pub fn new(from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>, period: Period) -> AppResult<Self> {
        let period_first = day_of(period.start);
        let period_last = day_of(period.end - Duration::microseconds(1));
        let last = to.map_or(period_last, day_of);
        let first = match from {
            Some(from) => day_of(from),
            None if period_first <= last => period_first,
            None => day_of(calendar_month(last.and_time(chrono::NaiveTime::MIN).and_utc()).start),
        };
        if first > last {
            return Err(AppError::bad_input("from", "from must not be after to"));
        }
        if (last - first).num_days() + 1 > MAX_RANGE_DAYS {
            return Err(AppError::bad_input(
                "from",
                format!("a usage range covers at most {MAX_RANGE_DAYS} days"),
            ));
        }
        Ok(Self { first, last })
    }
}

/// The organization's buckets over `range`, grouped on read from the
/// rollup: one query, an index range scan of the organization's days.
pub async fn buckets(
    conn: &mut AsyncPgConnection,
    organization_id: Uuid,
    range: DayRange,
    group_by: UsageGroupBy,
) -> QueryResult<Vec<BucketRow>> {
    let (key, order) = group_by.sql();
    let sql = format!(
        "SELECT {key} AS key, \
         SUM(prompt_tokens)::bigint AS prompt_tokens, SUM(completion_tokens)::bigint AS completion_tokens, \
         SUM(total_tokens)::bigint AS total_tokens, SUM(requests)::bigint AS requests, \
         SUM(cost_micro_usd)::bigint AS cost_micro_usd \
         FROM usage_daily WHERE organization_id = $1 AND day BETWEEN $2 AND $3 \
         GROUP BY 1 ORDER BY {order}"
    );
    diesel::sql_query(sql)
        .bind::<SqlUuid, _>(organization_id)
        .bind::<Date, _>(range.first)
        .bind::<Date, _>(range.last)
        .load(conn)
        .await
}

/// Which events usageEvents lists.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// The reported name or the catalog id it resolved to.
    pub model: Option<String>,
    /// Only events reported with this key.
    pub api_key_id: Option<Uuid>,
    /// Only events counted against this member.
    pub user_id: Option<Uuid>,
    /// occurredAt at or after.
    pub from: Option<DateTime<Utc>>,
    /// occurredAt at or before.
    pub to: Option<DateTime<Utc>>,
}

fn events_matching(organization_id: Uuid, filter: &EventFilter) -> usage_events::BoxedQuery<'_, Pg> {
    let mut query = usage_events::table
        .filter(usage_events::organization_id.eq(organization_id))
        .into_boxed();
    if let Some(model) = &filter.model {
        query = query.filter(
            usage_events::model
                .eq(model)
                .or(usage_events::model_id.eq(model.trim().to_lowercase())),
        );
    }
    if let Some(api_key_id) = filter.api_key_id {
        query = query.filter(usage_events::api_key_id.eq(api_key_id));
    }
    if let Some(user_id) = filter.user_id {
        query = query.filter(usage_events::user_id.eq(user_id));
    }
    if let Some(from) = filter.from {
        query = query.filter(usage_events::occurred_at.ge(from));
    }
    if let Some(to) = filter.to {
        query = query.filter(usage_events::occurred_at.le(to));
    }
    query
}

/// One page of the organization's events, newest received first (plus
/// one row to tell whether more follow).
pub async fn list_events(
    conn: &mut AsyncPgConnection,
    organization_id: Uuid,
    filter: &EventFilter,
    page: &PageRequest,
) -> QueryResult<Vec<UsageEventRow>> {
    let mut query = events_matching(organization_id, filter);
    if let Some(cursor) = page.after {
        query = query.filter(after_cursor(
            usage_events::created_at,
            usage_events::id,
            cursor,
            page.order,
        ));
    }
    ordered(query, usage_events::created_at, usage_events::id, page.order)
        .limit(page.fetch_limit())
        .select(UsageEventRow::as_select())
        .load(conn)
        .await
}

/// How many events the filter matches.
pub async fn count_events(
    conn: &mut AsyncPgConnection,
    organization_id: Uuid,
    filter: &EventFilter,
) -> QueryResult<i64> {
    events_matching(organization_id, filter).count().get_result(conn).await
}

/// The position of an event in its list.
pub fn event_cursor(row: &UsageEventRow) -> Cursor {
    Cursor::new(row.created_at, row.id)
}

/// Tokens of every organization in the UTC calendar month of `now`, by
/// occurredAt, from the rollup's day index.
pub async fn tokens_this_month(conn: &mut AsyncPgConnection, now: DateTime<Utc>) -> QueryResult<i64> {
    let month = calendar_month(now);
    let total: Option<i64> = usage_daily::table
        .filter(usage_daily::day.ge(day_of(month.start)))
        .filter(usage_daily::day.lt(day_of(month.end)))
        .select(diesel::dsl::sql::<diesel::sql_types::Nullable<BigInt>>(
            "SUM(total_tokens)::bigint",
        ))
        .first(conn)
        .await?;
    Ok(total.unwrap_or(0))
}

/// API keys that work at `now`: not revoked, not expired.
pub async fn active_api_keys(conn: &mut AsyncPgConnection, now: DateTime<Utc>) -> QueryResult<i64> {
    api_keys::table
        .filter(api_keys::revoked_at.is_null())
        .filter(api_keys::expires_at.is_null().or(api_keys::expires_at.gt(now)))
        .count()
        .get_result(conn)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_core::error::field_of as field;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    fn day(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    #[test]
    fn ranges_are_whole_days_defaulting_to_the_period() {
        let period = Period {
            start: at("2026-11-01T00:00:00Z"),
            end: at("2026-12-01T00:00:00Z"),
        };
        let range = DayRange::new(None, None, period).unwrap();
        assert_eq!((range.first, range.last), (day("2026-11-01"), day("2026-11-30")));
        let range = DayRange::new(
            Some(at("2026-11-03T23:59:59Z")),
            Some(at("2026-11-04T00:00:01Z")),
            period,
        )
        .unwrap();
        assert_eq!((range.first, range.last), (day("2026-11-03"), day("2026-11-04")));
        let earlier = DayRange::new(None, Some(at("2026-09-15T10:00:00Z")), period).unwrap();
        assert_eq!((earlier.first, earlier.last), (day("2026-09-01"), day("2026-09-15")));
        assert_eq!(
            field(DayRange::new(
                Some(at("2026-11-05T00:00:00Z")),
                Some(at("2026-11-04T00:00:00Z")),
                period
            ))
            .as_deref(),
            Some("from")
        );
        assert_eq!(
            field(DayRange::new(Some(at("2025-01-01T00:00:00Z")), None, period)).as_deref(),
            Some("from")
        );
    }
}
