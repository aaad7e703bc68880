//! Running totals per organization, key, member and day.
//!
//! Recording adds to them in the same transaction as the events they
//! count, always in one order (the organization's row first), so they
//! equal the sum of their events under any concurrency and two recorders
//! never deadlock. Reading sums a subject's few current rows: a quota
//! check never scans events.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use diesel::{
    pg::Pg,
    prelude::*,
    query_builder::{BoxedSqlQuery, SqlQuery},
    sql_types::{Array, BigInt, Text, Timestamptz, Uuid as Uuid_},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::usage::windows;
use tollgate_core::error::AppResult;
use tollgate_db::text_enum;

text_enum! {
    /// What a counter row counts for.
    pub enum SubjectKind {
        /// The organization's tokens in its token window.
        Organization => "ORGANIZATION",
        /// One key's tokens in the token window.
        ApiKey => "API_KEY",
        /// One member's tokens in the token window.
        Member => "MEMBER",
        /// The organization's requests (and tokens) since UTC midnight.
        Day => "DAY",
    }
}

impl SubjectKind {
    /// The lock order of recording: organization, keys, members, day.
    fn lock_rank(self) -> u8 {
        match self {
            Self::Organization => 0,
            Self::ApiKey => 1,
            Self::Member => 2,
            Self::Day => 3,
        }
    }
}

/// Which counter row: everything but the organization (one organization
/// per call) and the totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CounterKey {
    /// What it counts for.
    pub kind: SubjectKind,
    /// The organization (ORGANIZATION, DAY), the key, or the member's user id.
    pub subject_id: Uuid,
    /// Its window's start.
    pub window_start: DateTime<Utc>,
}

impl PartialOrd for SubjectKind {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SubjectKind {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.lock_rank().cmp(&other.lock_rank())
    }
}

/// Summed additions to counter rows, kept in lock order.
#[derive(Debug, Clone, Default)]
pub struct Deltas(std::collections::BTreeMap<CounterKey, (i64, i64)>);

impl Deltas {
    /// Adds `tokens` and `requests` to the row `key`.
    pub fn add(&mut self, key: CounterKey, tokens: i64, requests: i64) {
        let entry = self.0.entry(key).or_insert((0, 0));
        entry.0 += tokens;
        entry.1 += requests;
    }

    /// Whether nothing is to be added.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many rows it changes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Binds the organization and the rows, as parallel arrays, to
    /// parameters $1 to $6 of `query`: organization; kinds, subjects and
    /// window starts; tokens and requests.
    fn bind_to<'a>(
        &self,
        query: BoxedSqlQuery<'a, Pg, SqlQuery>,
        organization_id: Uuid,
    ) -> BoxedSqlQuery<'a, Pg, SqlQuery> {
        let rows = self.0.iter();
        query
            .bind::<Uuid_, _>(organization_id)
            .bind::<Array<Text>, _>(rows.clone().map(|(key, _)| key.kind).collect::<Vec<_>>())
            .bind::<Array<Uuid_>, _>(rows.clone().map(|(key, _)| key.subject_id).collect::<Vec<_>>())
            .bind::<Array<Timestamptz>, _>(rows.clone().map(|(key, _)| key.window_start).collect::<Vec<_>>())
            .bind::<Array<BigInt>, _>(rows.clone().map(|(_, totals)| totals.0).collect::<Vec<_>>())
            .bind::<Array<BigInt>, _>(rows.map(|(_, totals)| totals.1).collect::<Vec<_>>())
    }
}

/// Adds `deltas` to the organization's counter rows, creating missing
/// rows, in lock order (the ORGANIZATION row first), and returns the
/// totals of `spans` just after the addition: [`add_many`] for one
/// organization.
pub async fn add(
    conn: &mut AsyncPgConnection,
    organization_id: Uuid,
    deltas: &Deltas,
    spans: &[CounterSpan],
) -> QueryResult<HashMap<CounterSpan, (i64, i64)>> {
    let keyed: Vec<(Uuid, CounterSpan)> = spans.iter().map(|span| (organization_id, *span)).collect();
    Ok(add_many(conn, &[(organization_id, deltas)], &keyed)
        .await?
        .into_iter()
        .map(|((_, span), totals)| (span, totals))
        .collect())
}

/// Adds each organization's `deltas` to its counter rows, creating missing
/// rows, and returns the totals of `spans` (of any of these organizations
/// or others) just after the addition: one statement, which also sums the
/// rows it did not write (a window can span several segments, and an
/// earlier period's rows can start later than the row written now).
///
/// Rows are locked in the order given: callers list organizations by id,
/// each one's rows in lock order (the ORGANIZATION row first), so two
/// recorders of overlapping organizations never deadlock. Without any
/// delta it only sums. It takes the connection shared, so a caller may
/// send it together with another statement (pipelined).
pub async fn add_many(
    conn: &AsyncPgConnection,
    deltas: &[(Uuid, &Deltas)],
    spans: &[(Uuid, CounterSpan)],
) -> QueryResult<HashMap<(Uuid, CounterSpan), (i64, i64)>> {
    // The statement reads the table as it was before it ran, so each total
    // is the rows it wrote (as they are after) plus the others (as read),
    // each span's by primary-key range.
    const ADD_AND_SUM: &str = "
        WITH added AS (
            INSERT INTO usage_counters AS c
                (organization_id, subject_kind, subject_id, window_start, tokens, requests)
            SELECT v.organization_id, v.kind, v.subject, v.since, v.tokens, v.requests
            FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::timestamptz[], $5::int8[], $6::int8[])
                WITH ORDINALITY AS v(organization_id, kind, subject, since, tokens, requests, n)
            ORDER BY v.n
            ON CONFLICT (organization_id, subject_kind, subject_id, window_start) DO UPDATE
                SET tokens = c.tokens + excluded.tokens, requests = c.requests + excluded.requests
            RETURNING c.organization_id, c.subject_kind, c.subject_id, c.window_start, c.tokens, c.requests
        )
        SELECT s.n, COALESCE(x.tokens, 0)::int8 AS tokens, COALESCE(x.requests, 0)::int8 AS requests
        FROM unnest($7::uuid[], $8::text[], $9::uuid[], $10::timestamptz[])
            WITH ORDINALITY AS s(organization_id, kind, subject, since, n)
        LEFT JOIN LATERAL (
            SELECT sum(u.tokens) AS tokens, sum(u.requests) AS requests
            FROM (
                SELECT a.tokens, a.requests FROM added a
                WHERE a.organization_id = s.organization_id AND a.subject_kind = s.kind
                  AND a.subject_id = s.subject AND a.window_start >= s.since
                UNION ALL
                SELECT c.tokens, c.requests FROM usage_counters c
                WHERE c.organization_id = s.organization_id AND c.subject_kind = s.kind
                  AND c.subject_id = s.subject AND c.window_start >= s.since
                  AND NOT EXISTS (SELECT 1 FROM added a WHERE a.organization_id = c.organization_id
                                  AND a.subject_kind = c.subject_kind AND a.subject_id = c.subject_id
                                  AND a.window_start = c.window_start)
            ) u
        ) x ON true";
    let rows: Vec<(Uuid, &CounterKey, &(i64, i64))> = deltas
        .iter()
        .flat_map(|(organization_id, deltas)| {
            deltas
                .0
                .iter()
                .map(move |(key, totals)| (*organization_id, key, totals))
        })
        .collect();
    if rows.is_empty() {
        return sum_many(conn, spans).await;
    }
    let totals: Vec<SpanTotal> = diesel::sql_query(ADD_AND_SUM)
        .bind::<Array<Uuid_>, _>(rows.iter().map(|row| row.0).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(rows.iter().map(|row| row.1.kind).collect::<Vec<_>>())
        .bind::<Array<Uuid_>, _>(rows.iter().map(|row| row.1.subject_id).collect::<Vec<_>>())
        .bind::<Array<Timestamptz>, _>(rows.iter().map(|row| row.1.window_start).collect::<Vec<_>>())
        .bind::<Array<BigInt>, _>(rows.iter().map(|row| row.2.0).collect::<Vec<_>>())
        .bind::<Array<BigInt>, _>(rows.iter().map(|row| row.2.1).collect::<Vec<_>>())
        .bind::<Array<Uuid_>, _>(spans.iter().map(|(organization, _)| *organization).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(spans.iter().map(|(_, span)| span.kind).collect::<Vec<_>>())
        .bind::<Array<Uuid_>, _>(spans.iter().map(|(_, span)| span.subject_id).collect::<Vec<_>>())
        .bind::<Array<Timestamptz>, _>(spans.iter().map(|(_, span)| span.since).collect::<Vec<_>>())
        .load(&mut { conn })
        .await?;
    Ok(by_position(spans, totals))
}

/// Takes `deltas` (all positive) off existing rows, in one statement. An
/// upsert cannot: its proposed row would break the rows' non-negative
/// checks before the conflict turns it into an update. Callers hold the
/// organization's row exclusively, so the order rows are updated in does
/// not matter.
pub async fn subtract(conn: &mut AsyncPgConnection, organization_id: Uuid, deltas: &Deltas) -> QueryResult<usize> {
    const SUBTRACT: &str = "
        UPDATE usage_counters c SET tokens = c.tokens - v.tokens, requests = c.requests - v.requests
        FROM unnest($2::text[], $3::uuid[], $4::timestamptz[], $5::int8[], $6::int8[])
            AS v(kind, subject, since, tokens, requests)
        WHERE c.organization_id = $1 AND c.subject_kind = v.kind AND c.subject_id = v.subject
          AND c.window_start = v.since";
    if deltas.is_empty() {
        return Ok(0);
    }
    deltas
        .bind_to(diesel::sql_query(SUBTRACT).into_boxed(), organization_id)
        .execute(conn)
        .await
}

/// One span's totals, by its 1-based position in the query's list.
#[derive(QueryableByName)]
struct SpanTotal {
    #[diesel(sql_type = BigInt)]
    n: i64,
    #[diesel(sql_type = BigInt)]
    tokens: i64,
    #[diesel(sql_type = BigInt)]
    requests: i64,
}

/// The totals keyed by the spans they were asked for (missing ones are 0).
fn by_position<S: Copy + Eq + std::hash::Hash>(spans: &[S], totals: Vec<SpanTotal>) -> HashMap<S, (i64, i64)> {
    let mut by_span: HashMap<S, (i64, i64)> = spans.iter().map(|span| (*span, (0, 0))).collect();
    for total in totals {
        let position = usize::try_from(total.n - 1).ok();
        if let Some(span) = position.and_then(|p| spans.get(p)) {
            by_span.insert(*span, (total.tokens, total.requests));
        }
    }
    by_span
}

/// A current total: the rows of one subject from `since` on (see
/// [`crate::usage::windows`] for why a total may span several rows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CounterSpan {
    /// What it counts for.
    pub kind: SubjectKind,
    /// The organization (ORGANIZATION, DAY), the key, or the member's user id.
    pub subject_id: Uuid,
    /// The window's start.
    pub since: DateTime<Utc>,
}

/// Totals (tokens, requests) of one organization's spans, in one query;
/// a span without rows is zero.
pub async fn sum(
    conn: &mut AsyncPgConnection,
    organization_id: Uuid,
    spans: &[CounterSpan],
) -> QueryResult<HashMap<CounterSpan, (i64, i64)>> {
    let keyed: Vec<(Uuid, CounterSpan)> = spans.iter().map(|span| (organization_id, *span)).collect();
    Ok(sum_many(conn, &keyed)
        .await?
        .into_iter()
        .map(|((_, span), totals)| (span, totals))
        .collect())
}

/// Totals (tokens, requests) of spans of several organizations, in one
/// query that reads each span's own rows by primary key range; a span
/// without rows is zero.
pub async fn sum_many(
    conn: &AsyncPgConnection,
    spans: &[(Uuid, CounterSpan)],
) -> QueryResult<HashMap<(Uuid, CounterSpan), (i64, i64)>> {
    const SUM: &str = "
        SELECT s.n, COALESCE(sum(c.tokens), 0)::int8 AS tokens, COALESCE(sum(c.requests), 0)::int8 AS requests
        FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::timestamptz[])
            WITH ORDINALITY AS s(organization_id, kind, subject, since, n)
        LEFT JOIN usage_counters c
            ON c.organization_id = s.organization_id AND c.subject_kind = s.kind
           AND c.subject_id = s.subject AND c.window_start >= s.since
        GROUP BY s.n";
    if spans.is_empty() {
        return Ok(HashMap::new());
    }
    let totals: Vec<SpanTotal> = diesel::sql_query(SUM)
        .bind::<Array<Uuid_>, _>(spans.iter().map(|(organization, _)| *organization).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(spans.iter().map(|(_, span)| span.kind).collect::<Vec<_>>())
        .bind::<Array<Uuid_>, _>(spans.iter().map(|(_, span)| span.subject_id).collect::<Vec<_>>())
        .bind::<Array<Timestamptz>, _>(spans.iter().map(|(_, span)| span.since).collect::<Vec<_>>())
        .load(&mut { conn })
        .await?;
    Ok(by_position(spans, totals))
}

/// Whose tokens in the current token window: a key or a member of one
/// organization. The key of [`tokens_used_many`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokensOf {
    /// The organization.
    pub organization_id: Uuid,
    /// [`SubjectKind::ApiKey`] or [`SubjectKind::Member`].
    pub kind: SubjectKind,
    /// The key's id or the member's user id.
    pub subject_id: Uuid,
}

/// Tokens used in the current window by keys and members (ApiKey.tokensUsed,
/// Membership.tokensUsed over a list): windows of every organization asked
/// about in one or two queries, the counters in one more. Subjects of an
/// organization that does not exist count 0.
pub async fn tokens_used_many(
    conn: &mut AsyncPgConnection,
    keys: &[TokensOf],
    now: DateTime<Utc>,
) -> AppResult<HashMap<TokensOf, i64>> {
    let organizations: Vec<Uuid> = keys
        .iter()
        .map(|k| k.organization_id)
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let windows = windows::of_organizations(conn, &organizations, now).await?;
    let span_of = |of: &TokensOf| {
        windows
            .get(&of.organization_id)
            .map(|(windows, _)| (of.organization_id, windows.span(of.kind, of.subject_id)))
    };
    let wanted: Vec<(Uuid, CounterSpan)> = keys.iter().filter_map(span_of).collect();
    let totals = sum_many(conn, &wanted).await?;
    Ok(keys
        .iter()
        .map(|of| {
            let tokens = span_of(of).and_then(|span| totals.get(&span)).map_or(0, |t| t.0);
            (*of, tokens)
        })
        .collect())
}
