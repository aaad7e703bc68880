//! Running totals per organization, key, member and day.
//!
//! Recording adds to them in the same transaction as the events they
//! count, always in one order (the organization's row first), so they
//! equal the sum of their events under any concurrency and two recorders
//! never deadlock. Reading sums a subject's few current rows: a quota
//! check never scans events.

use std::collections::{HashMap, HashSet};

use async_graphql::dataloader::Loader;
use chrono::{DateTime, Utc};
use diesel::{prelude::*, upsert::excluded};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::{db::DbPool, db::schema::usage_counters, error::AppError, text_enum, usage::windows};

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

/// A row of `usage_counters`.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = usage_counters, check_for_backend(diesel::pg::Pg))]
pub struct CounterRow {
    pub organization_id: Uuid,
    pub subject_kind: SubjectKind,
    pub subject_id: Uuid,
    pub window_start: DateTime<Utc>,
    pub tokens: i64,
    pub requests: i64,
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

impl CounterRow {
    /// The row's key.
    pub fn key(&self) -> CounterKey {
        CounterKey {
            kind: self.subject_kind,
            subject_id: self.subject_id,
            window_start: self.window_start,
        }
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
}

/// Adds `deltas` to the organization's counter rows in one statement,
/// creating missing rows, in lock order (the ORGANIZATION row first), and
/// returns the rows as they are after the addition.
pub async fn add(
    conn: &mut AsyncPgConnection,
    organization_id: Uuid,
    deltas: &Deltas,
) -> QueryResult<HashMap<CounterKey, CounterRow>> {
    if deltas.is_empty() {
        return Ok(HashMap::new());
    }
    let values: Vec<_> = deltas
        .0
        .iter()
        .map(|(key, (tokens, requests))| {
            (
                usage_counters::organization_id.eq(organization_id),
                usage_counters::subject_kind.eq(key.kind),
                usage_counters::subject_id.eq(key.subject_id),
                usage_counters::window_start.eq(key.window_start),
                usage_counters::tokens.eq(*tokens),
                usage_counters::requests.eq(*requests),
            )
        })
        .collect();
    let rows: Vec<CounterRow> = diesel::insert_into(usage_counters::table)
        .values(values)
        .on_conflict((
            usage_counters::organization_id,
            usage_counters::subject_kind,
            usage_counters::subject_id,
            usage_counters::window_start,
        ))
        .do_update()
        .set((
            usage_counters::tokens.eq(usage_counters::tokens + excluded(usage_counters::tokens)),
            usage_counters::requests.eq(usage_counters::requests + excluded(usage_counters::requests)),
        ))
        .returning(CounterRow::as_returning())
        .get_results(conn)
        .await?;
    Ok(rows.into_iter().map(|row| (row.key(), row)).collect())
}

/// A written row's totals (tokens, requests); zero when it is missing.
pub fn total(rows: &HashMap<CounterKey, CounterRow>, key: &CounterKey) -> (i64, i64) {
    rows.get(key).map_or((0, 0), |row| (row.tokens, row.requests))
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
/// query; a span without rows is zero. Windows start at most about two
/// months back, so the rows read are few whatever the history.
pub async fn sum_many(
    conn: &mut AsyncPgConnection,
    spans: &[(Uuid, CounterSpan)],
) -> QueryResult<HashMap<(Uuid, CounterSpan), (i64, i64)>> {
    let Some(earliest) = spans.iter().map(|(_, span)| span.since).min() else {
        return Ok(HashMap::new());
    };
    let organizations: HashSet<Uuid> = spans.iter().map(|(o, _)| *o).collect();
    let kinds: HashSet<SubjectKind> = spans.iter().map(|(_, s)| s.kind).collect();
    let subjects: HashSet<Uuid> = spans.iter().map(|(_, s)| s.subject_id).collect();
    let rows: Vec<CounterRow> = usage_counters::table
        .filter(usage_counters::organization_id.eq_any(organizations.into_iter().collect::<Vec<_>>()))
        .filter(usage_counters::subject_kind.eq_any(kinds.into_iter().collect::<Vec<_>>()))
        .filter(usage_counters::subject_id.eq_any(subjects.into_iter().collect::<Vec<_>>()))
        .filter(usage_counters::window_start.ge(earliest))
        .select(CounterRow::as_select())
        .load(conn)
        .await?;
    let mut totals: HashMap<(Uuid, CounterSpan), (i64, i64)> = spans.iter().map(|key| (*key, (0, 0))).collect();
    let mut starts: HashMap<(Uuid, SubjectKind, Uuid), Vec<DateTime<Utc>>> = HashMap::new();
    for (organization_id, span) in spans {
        starts
            .entry((*organization_id, span.kind, span.subject_id))
            .or_default()
            .push(span.since);
    }
    for row in rows {
        let subject = (row.organization_id, row.subject_kind, row.subject_id);
        for since in starts.get(&subject).into_iter().flatten() {
            if row.window_start < *since {
                continue;
            }
            let span = CounterSpan {
                kind: row.subject_kind,
                subject_id: row.subject_id,
                since: *since,
            };
            if let Some(total) = totals.get_mut(&(row.organization_id, span)) {
                total.0 += row.tokens;
                total.1 += row.requests;
            }
        }
    }
    Ok(totals)
}

/// Whose tokens in the current token window: a key or a member of one
/// organization. The key of [`TokensUsedLoader`].
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
/// about in one or two queries, the counters in one more.
pub struct TokensUsedLoader {
    /// The request pool.
    pub pool: DbPool,
    /// The request's time.
    pub now: DateTime<Utc>,
}

impl Loader<TokensOf> for TokensUsedLoader {
    type Value = i64;
    type Error = AppError;

    async fn load(&self, keys: &[TokensOf]) -> Result<HashMap<TokensOf, i64>, AppError> {
        let mut conn = self.pool.get().await?;
        let organizations: Vec<Uuid> = keys
            .iter()
            .map(|k| k.organization_id)
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let windows = windows::of_organizations(&mut conn, &organizations, self.now).await?;
        let span_of = |of: &TokensOf| {
            windows
                .get(&of.organization_id)
                .map(|(windows, _)| (of.organization_id, windows.span(of.kind, of.subject_id)))
        };
        let wanted: Vec<(Uuid, CounterSpan)> = keys.iter().filter_map(span_of).collect();
        let totals = sum_many(&mut conn, &wanted).await?;
        Ok(keys
            .iter()
            .map(|of| {
                let tokens = span_of(of).and_then(|span| totals.get(&span)).map_or(0, |t| t.0);
                (*of, tokens)
            })
            .collect())
    }
}
