//! The daily rollup that `Organization.usage` reads: sums per organization,
//! UTC day of occurredAt, catalog model (the reported name when unpriced),
//! key and user, upserted by the recording transaction.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use diesel::{prelude::*, upsert::excluded};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::usage::{event::UsageEventRow, windows::day_of};
use tollgate_db::schema::usage_daily;

/// One rollup row's key. No key or no user is the nil uuid, so the key
/// can be a primary key; ordered by organization first, the order rows
/// are locked in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct DayKey {
    organization_id: Uuid,
    day: NaiveDate,
    model: String,
    api_key_id: Uuid,
    user_id: Uuid,
}

/// Sums of one rollup row.
#[derive(Debug, Clone, Copy, Default)]
struct Sums {
    prompt: i64,
    cached: i64,
    completion: i64,
    total: i64,
    requests: i64,
    cost: i64,
}

/// Adds `events` (of any organizations) to the rollup: summed per row in
/// memory, then one upsert statement whatever their number. It takes the
/// connection shared, so a caller may send it together with another
/// statement (pipelined).
pub async fn add<'a>(conn: &AsyncPgConnection, events: impl IntoIterator<Item = &'a UsageEventRow>) -> QueryResult<()> {
    let mut rows: BTreeMap<DayKey, Sums> = BTreeMap::new();
    for event in events {
        let key = DayKey {
            organization_id: event.organization_id,
            day: day_of(event.occurred_at),
            model: event.model_key().to_owned(),
            api_key_id: event.api_key_id.unwrap_or(Uuid::nil()),
            user_id: event.user_id.unwrap_or(Uuid::nil()),
        };
        let sums = rows.entry(key).or_default();
        sums.prompt += i64::from(event.prompt_tokens);
        sums.cached += i64::from(event.cached_tokens);
        sums.completion += i64::from(event.completion_tokens);
        sums.total += i64::from(event.total_tokens);
        sums.requests += 1;
        sums.cost = sums.cost.saturating_add(event.cost_micro_usd);
    }
    if rows.is_empty() {
        return Ok(());
    }
    let values: Vec<_> = rows
        .into_iter()
        .map(|(key, sums)| {
            (
                usage_daily::organization_id.eq(key.organization_id),
                usage_daily::day.eq(key.day),
                usage_daily::model.eq(key.model),
                usage_daily::api_key_id.eq(key.api_key_id),
                usage_daily::user_id.eq(key.user_id),
                usage_daily::prompt_tokens.eq(sums.prompt),
                usage_daily::cached_tokens.eq(sums.cached),
                usage_daily::completion_tokens.eq(sums.completion),
                usage_daily::total_tokens.eq(sums.total),
                usage_daily::requests.eq(sums.requests),
                usage_daily::cost_micro_usd.eq(sums.cost),
            )
        })
        .collect();
    diesel::insert_into(usage_daily::table)
        .values(values)
        .on_conflict((
            usage_daily::organization_id,
            usage_daily::day,
            usage_daily::model,
            usage_daily::api_key_id,
            usage_daily::user_id,
        ))
        .do_update()
        .set((
            usage_daily::prompt_tokens.eq(usage_daily::prompt_tokens + excluded(usage_daily::prompt_tokens)),
            usage_daily::cached_tokens.eq(usage_daily::cached_tokens + excluded(usage_daily::cached_tokens)),
            usage_daily::completion_tokens
                .eq(usage_daily::completion_tokens + excluded(usage_daily::completion_tokens)),
            usage_daily::total_tokens.eq(usage_daily::total_tokens + excluded(usage_daily::total_tokens)),
            usage_daily::requests.eq(usage_daily::requests + excluded(usage_daily::requests)),
            usage_daily::cost_micro_usd.eq(usage_daily::cost_micro_usd + excluded(usage_daily::cost_micro_usd)),
        ))
        .execute(&mut { conn })
        .await?;
    Ok(())
}
