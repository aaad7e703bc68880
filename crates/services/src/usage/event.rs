//! Usage event rows: what was reported, priced at record time.

use chrono::{DateTime, Utc};
use diesel::{
    prelude::*,
    sql_types::{Array, BigInt, Bool, Integer, Jsonb, Nullable, Text, Timestamptz, Uuid as Uuid_},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use tollgate_db::{schema::usage_events, text_enum};

text_enum! {
    /// Where a usage event came from.
    pub enum UsageSource {
        /// Reported by a client through recordUsage(Batch).
        Reported => "REPORTED",
        /// Carried and metered by the gateway (/v1).
        Proxy => "PROXY",
    }
}

/// A row of `usage_events`; also its serde form on the event bus (inside
/// [`crate::usage::live_message::UsageUpdateMessage`]).
#[derive(Debug, Clone, PartialEq, Queryable, QueryableByName, Selectable, Insertable, Serialize, Deserialize)]
#[diesel(table_name = usage_events, check_for_backend(diesel::pg::Pg))]
pub struct UsageEventRow {
    pub id: Uuid,
    pub organization_id: Uuid,
    /// The key it was reported with, if any.
    pub api_key_id: Option<Uuid>,
    /// The member it counts against: the reporting user, or the key's creator.
    pub user_id: Option<Uuid>,
    /// The model name as reported.
    pub model: String,
    /// The catalog id it resolved to; None when unpriced.
    pub model_id: Option<String>,
    pub prompt_tokens: i32,
    pub cached_tokens: i32,
    pub completion_tokens: i32,
    pub total_tokens: i32,
    pub cost_micro_usd: i64,
    pub priced: bool,
    pub request_id: Option<String>,
    pub metadata: Option<serde_json::Value>,
    pub occurred_at: DateTime<Utc>,
    /// Receive time: what counters and "newest first" go by.
    pub created_at: DateTime<Utc>,
    /// Reported by a client, or carried by the gateway.
    pub source: UsageSource,
    /// True when the gateway counted the tokens itself.
    pub estimated: bool,
    /// PROXY events: the key of the provider that served the call.
    pub provider: Option<String>,
}

impl UsageEventRow {
    /// Whether `other` reports the same call with the same numbers (what
    /// makes a repeated requestId a duplicate rather than a CONFLICT).
    pub fn same_numbers(&self, other: &Self) -> bool {
        self.numbers() == other.numbers()
    }

    /// What a repeated requestId must match: model, prompt, cached and
    /// completion tokens.
    pub fn numbers(&self) -> (&str, i32, i32, i32) {
        (
            &self.model,
            self.prompt_tokens,
            self.cached_tokens,
            self.completion_tokens,
        )
    }

    /// The rollup's model key: the catalog id, or the reported name when
    /// unpriced.
    pub fn model_key(&self) -> &str {
        self.model_id.as_deref().unwrap_or(&self.model)
    }
}

/// Inserts `rows` in one statement whatever their number (the columns as
/// arrays, so neither the statement nor its parameters grow with the
/// rows); a row whose requestId the organization already has is skipped (a
/// concurrent insert of the same requestId waits for the other
/// transaction, then skips). Returns the rows inserted, as stored.
pub async fn insert_new(conn: &mut AsyncPgConnection, rows: &[UsageEventRow]) -> QueryResult<Vec<UsageEventRow>> {
    const INSERT: &str = "
        INSERT INTO usage_events (id, organization_id, api_key_id, user_id, model, model_id,
            prompt_tokens, cached_tokens, completion_tokens, total_tokens, cost_micro_usd, priced,
            request_id, metadata, occurred_at, created_at, source, estimated, provider)
        SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::text[], $6::text[],
            $7::int4[], $8::int4[], $9::int4[], $10::int4[], $11::int8[], $12::bool[],
            $13::text[], $14::jsonb[], $15::timestamptz[], $16::timestamptz[], $17::text[], $18::bool[], $19::text[])
        ON CONFLICT DO NOTHING
        RETURNING *";
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    fn column<T>(rows: &[UsageEventRow], pick: impl Fn(&UsageEventRow) -> T) -> Vec<T> {
        rows.iter().map(pick).collect()
    }
    diesel::sql_query(INSERT)
        .bind::<Array<Uuid_>, _>(column(rows, |r| r.id))
        .bind::<Array<Uuid_>, _>(column(rows, |r| r.organization_id))
        .bind::<Array<Nullable<Uuid_>>, _>(column(rows, |r| r.api_key_id))
        .bind::<Array<Nullable<Uuid_>>, _>(column(rows, |r| r.user_id))
        .bind::<Array<Text>, _>(column(rows, |r| r.model.clone()))
        .bind::<Array<Nullable<Text>>, _>(column(rows, |r| r.model_id.clone()))
        .bind::<Array<Integer>, _>(column(rows, |r| r.prompt_tokens))
        .bind::<Array<Integer>, _>(column(rows, |r| r.cached_tokens))
        .bind::<Array<Integer>, _>(column(rows, |r| r.completion_tokens))
        .bind::<Array<Integer>, _>(column(rows, |r| r.total_tokens))
        .bind::<Array<BigInt>, _>(column(rows, |r| r.cost_micro_usd))
        .bind::<Array<Bool>, _>(column(rows, |r| r.priced))
        .bind::<Array<Nullable<Text>>, _>(column(rows, |r| r.request_id.clone()))
        .bind::<Array<Nullable<Jsonb>>, _>(column(rows, |r| r.metadata.clone()))
        .bind::<Array<Timestamptz>, _>(column(rows, |r| r.occurred_at))
        .bind::<Array<Timestamptz>, _>(column(rows, |r| r.created_at))
        .bind::<Array<Text>, _>(column(rows, |r| r.source))
        .bind::<Array<Bool>, _>(column(rows, |r| r.estimated))
        .bind::<Array<Nullable<Text>>, _>(column(rows, |r| r.provider.clone()))
        .load(conn)
        .await
}

/// The organization's events with these requestIds.
pub async fn find_by_request_ids(
    conn: &mut AsyncPgConnection,
    organization_id: Uuid,
    request_ids: &[&str],
) -> QueryResult<Vec<UsageEventRow>> {
    if request_ids.is_empty() {
        return Ok(Vec::new());
    }
    usage_events::table
        .filter(usage_events::organization_id.eq(organization_id))
        .filter(usage_events::request_id.eq_any(request_ids))
        .select(UsageEventRow::as_select())
        .load(conn)
        .await
}
