//! Running totals per organization, key, member and day.
//!
//! Recording adds to them in the same transaction as the events they
//! count, always in one order (the organization's row first), so they
//! equal the sum of their events under any concurrency and two recorders
//! never deadlock. Reading is by primary key: a quota check never scans
//! events.

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

/// The organization's counter rows with these keys (missing rows are
/// zero), in one query.
pub async fn read(
    conn: &mut AsyncPgConnection,
    organization_id: Uuid,
    keys: &[CounterKey],
) -> QueryResult<HashMap<CounterKey, CounterRow>> {
    let keyed: Vec<(Uuid, CounterKey)> = keys.iter().map(|key| (organization_id, *key)).collect();
    Ok(read_many(conn, &keyed)
        .await?
        .remove(&organization_id)
        .unwrap_or_default())
}

/// Counter rows of several organizations in one query, grouped by
/// organization (missing rows are zero).
pub async fn read_many(
    conn: &mut AsyncPgConnection,
    keys: &[(Uuid, CounterKey)],
) -> QueryResult<HashMap<Uuid, HashMap<CounterKey, CounterRow>>> {
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let organizations: HashSet<Uuid> = keys.iter().map(|(o, _)| *o).collect();
    let kinds: HashSet<SubjectKind> = keys.iter().map(|(_, k)| k.kind).collect();
    let subjects: HashSet<Uuid> = keys.iter().map(|(_, k)| k.subject_id).collect();
    let starts: HashSet<DateTime<Utc>> = keys.iter().map(|(_, k)| k.window_start).collect();
    let rows: Vec<CounterRow> = usage_counters::table
        .filter(usage_counters::organization_id.eq_any(organizations.into_iter().collect::<Vec<_>>()))
        .filter(usage_counters::subject_kind.eq_any(kinds.into_iter().collect::<Vec<_>>()))
        .filter(usage_counters::subject_id.eq_any(subjects.into_iter().collect::<Vec<_>>()))
        .filter(usage_counters::window_start.eq_any(starts.into_iter().collect::<Vec<_>>()))
        .select(CounterRow::as_select())
        .load(conn)
        .await?;
    let wanted: HashSet<(Uuid, CounterKey)> = keys.iter().copied().collect();
    let mut grouped: HashMap<Uuid, HashMap<CounterKey, CounterRow>> = HashMap::new();
    for row in rows {
        if wanted.contains(&(row.organization_id, row.key())) {
            grouped.entry(row.organization_id).or_default().insert(row.key(), row);
        }
    }
    Ok(grouped)
}

/// A counter's totals from a read or write; zero when the row is missing.
pub fn totals(rows: &HashMap<CounterKey, CounterRow>, key: &CounterKey) -> (i64, i64) {
    rows.get(key).map_or((0, 0), |row| (row.tokens, row.requests))
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
        let row_of = |of: &TokensOf| {
            windows.get(&of.organization_id).map(|(windows, _)| CounterKey {
                kind: of.kind,
                subject_id: of.subject_id,
                window_start: windows.token_start,
            })
        };
        let wanted: Vec<(Uuid, CounterKey)> = keys
            .iter()
            .filter_map(|of| row_of(of).map(|key| (of.organization_id, key)))
            .collect();
        let rows = read_many(&mut conn, &wanted).await?;
        Ok(keys
            .iter()
            .map(|of| {
                let tokens = row_of(of)
                    .and_then(|key| rows.get(&of.organization_id)?.get(&key).map(|row| row.tokens))
                    .unwrap_or(0);
                (*of, tokens)
            })
            .collect())
    }
}
