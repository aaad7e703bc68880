//! Reservations: the tokens a gateway call may spend, held before the call
//! so that concurrent calls cannot together pass a budget.
//!
//! A call reserves its prompt estimate plus its output limit against the
//! organization's, the key's and the member's budgets. What it needs to
//! know of the organization (plan, windows, the member's budget) is one
//! statement, shared by the calls that ask at the same time ([`context`]).
//! Then:
//!
//! - **No budget applies** (no plan limit, key or member budget, daily
//!   limit): the reservation is inserted without any lock, nothing it
//!   holds being checked by anyone, and together with the other calls'
//!   in flight: one INSERT and one commit for all of them ([`writer`]).
//! - **Otherwise** the decision is made on what the budgets stand at, read
//!   in one statement outside any lock; the reservation is then inserted
//!   under the organization's reservation lock (a transaction-scoped
//!   advisory lock) by one statement that reads the budgets again and
//!   inserts only if they still hold it. Reservations of one organization
//!   are so decided one after another, each seeing every earlier one, and
//!   the lock is held for that statement and the commit. When calls in flight took what the
//!   first reading counted on, the call is decided again under the lock.
//!
//! Settling takes no lock: it deletes the reservation and counts the event
//! in one transaction, and every reading here is one statement, so it sees
//! a settlement whole or not at all (never counted but still reserved, or
//! neither).
//!
//! Reservations are not tied to a period: one taken just before a period
//! ends still holds until it is settled. One whose instance died expires
//! (after `LLM_TIMEOUT_SECS` and a margin) and is settled by
//! [`settle_expired_once`] as an estimated event of its prompt.

use chrono::{DateTime, Utc};
use diesel::{
    pg::Pg,
    prelude::*,
    query_builder::{BoxedSqlQuery, SqlQuery},
    sql_types::{BigInt, Integer, Nullable, Text, Timestamptz, Uuid as SqlUuid},
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::usage::{
    authorize::{UsageDenial, check_rate},
    counters::SubjectKind,
    record::Reporter,
};
use tollgate_auth::AppState;
use tollgate_core::error::{AppError, AppResult};
use tollgate_db::schema::usage_reservations;

mod context;
mod writer;

pub use context::{Context, context};

/// A row of `usage_reservations`.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = usage_reservations, check_for_backend(diesel::pg::Pg))]
pub struct ReservationRow {
    /// The reservation's id.
    pub id: Uuid,
    /// The organization whose budgets it holds.
    pub organization_id: Uuid,
    /// The member it counts against (the key's creator).
    pub user_id: Uuid,
    /// The calling key.
    pub api_key_id: Option<Uuid>,
    /// The model name the caller sent.
    pub model: String,
    /// The provider tried first, for an expired reservation's event.
    pub provider: Option<String>,
    /// The gateway's request id (the event's requestId).
    pub request_id: String,
    /// The prompt estimate.
    pub prompt_tokens: i32,
    /// Tokens held: the prompt estimate plus the output limit.
    pub tokens: i64,
    /// When it was taken.
    pub created_at: DateTime<Utc>,
    /// When the job may settle it as abandoned.
    pub expires_at: DateTime<Utc>,
}

/// The output limit of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputLimit {
    /// The caller set it (`max_tokens`, `max_completion_tokens`): reserved
    /// whole, or the call is refused.
    Caller(i64),
    /// The caller set none: the gateway reserves `preferred` (the model's
    /// maxOutputTokens or the configured default), lowered to what the
    /// budgets have left.
    Chosen {
        /// What to reserve when the budgets allow it.
        preferred: i64,
    },
}

/// What a call asks to hold.
#[derive(Debug, Clone)]
pub struct Ask<'a> {
    /// Organization, key and member.
    pub reporter: Reporter,
    /// The key's own budget per period, if it has one.
    pub key_token_limit: Option<i64>,
    /// The calling key's identity, for the rate limit's bucket.
    pub key: Option<&'a tollgate_auth::KeyIdentity>,
    /// The model name the caller sent.
    pub model: &'a str,
    /// The provider tried first.
    pub provider: Option<&'a str>,
    /// The gateway's request id.
    pub request_id: &'a str,
    /// The prompt estimate, in tokens.
    pub prompt_tokens: i64,
    /// The output limit.
    pub output: OutputLimit,
    /// When the reservation may be settled as abandoned.
    pub expires_at: DateTime<Utc>,
}

/// A granted reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reservation {
    /// Its id, for [`release`] and the settling record.
    pub id: Uuid,
    /// The prompt estimate held.
    pub prompt_tokens: i64,
    /// The output tokens held.
    pub output_tokens: i64,
    /// Set when the caller set no limit and a budget applies: the output
    /// limit to send upstream, so the call cannot spend more than it holds.
    pub send_limit: Option<i64>,
}

/// The answer to a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserved {
    /// Held; call upstream.
    Granted(Reservation),
    /// Refused: the first denial that applies.
    Refused {
        /// Which budget or limit.
        denial: UsageDenial,
        /// True when the call would fit but for calls in flight: it may
        /// well fit in a moment, so the caller may retry soon.
        in_flight: bool,
    },
}

/// The budgets a call is held against; None = no such budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Limits {
    organization: Option<i64>,
    key: Option<i64>,
    member: Option<i64>,
    daily_requests: Option<i64>,
}

impl Limits {
    fn of(context: &Context, ask: &Ask<'_>) -> Self {
        Self {
            organization: context.plan.monthly_token_limit,
            key: ask.key_token_limit.filter(|_| ask.reporter.api_key_id.is_some()),
            member: context.member_limit,
            daily_requests: context.plan.daily_request_limit.map(i64::from),
        }
    }

    /// Whether nothing bounds the call: it is held without any check, so
    /// without the organization's lock either.
    fn none(&self) -> bool {
        *self
            == Self {
                organization: None,
                key: None,
                member: None,
                daily_requests: None,
            }
    }
}

/// What the budgets stand at: tokens used in the window, tokens held by
/// calls in flight, per subject, and requests today and in flight.
#[derive(Debug, Clone, Copy, Default, QueryableByName)]
struct Standing {
    #[diesel(sql_type = BigInt)]
    organization_used: i64,
    #[diesel(sql_type = BigInt)]
    requests_today: i64,
    #[diesel(sql_type = BigInt)]
    member_used: i64,
    #[diesel(sql_type = BigInt)]
    key_used: i64,
    #[diesel(sql_type = BigInt)]
    organization_held: i64,
    #[diesel(sql_type = BigInt)]
    member_held: i64,
    #[diesel(sql_type = BigInt)]
    key_held: i64,
    #[diesel(sql_type = BigInt)]
    calls: i64,
}

/// The [`Standing`] query, parameters $1 to $9: organization, token window
/// start, day window start, member, key; the counters' subject kinds
/// (organization, day, member, key). One statement, so one snapshot: a
/// settlement (which deletes its reservation and counts its event in one
/// transaction) is seen whole or not at all.
macro_rules! standing_sql {
    () => {
        "SELECT
            (SELECT COALESCE(sum(tokens), 0)::int8 FROM usage_counters
              WHERE organization_id = $1 AND subject_kind = $6 AND subject_id = $1 AND window_start >= $2)
              AS organization_used,
            (SELECT COALESCE(sum(requests), 0)::int8 FROM usage_counters
              WHERE organization_id = $1 AND subject_kind = $7 AND subject_id = $1 AND window_start >= $3)
              AS requests_today,
            (SELECT COALESCE(sum(tokens), 0)::int8 FROM usage_counters
              WHERE organization_id = $1 AND subject_kind = $8 AND subject_id = $4 AND window_start >= $2)
              AS member_used,
            (SELECT COALESCE(sum(tokens), 0)::int8 FROM usage_counters
              WHERE organization_id = $1 AND subject_kind = $9 AND subject_id = $5 AND window_start >= $2)
              AS key_used,
            h.organization_held, h.member_held, h.key_held, h.calls
         FROM (SELECT COALESCE(sum(tokens), 0)::int8 AS organization_held,
                      COALESCE(sum(tokens) FILTER (WHERE user_id = $4), 0)::int8 AS member_held,
                      COALESCE(sum(tokens) FILTER (WHERE api_key_id = $5), 0)::int8 AS key_held,
                      count(*) AS calls
               FROM usage_reservations WHERE organization_id = $1) h"
    };
}

/// Binds the [`standing_sql`] parameters.
fn bind_standing<'a>(
    query: BoxedSqlQuery<'a, Pg, SqlQuery>,
    context: &Context,
    reporter: Reporter,
) -> BoxedSqlQuery<'a, Pg, SqlQuery> {
    query
        .bind::<SqlUuid, _>(reporter.organization_id)
        .bind::<Timestamptz, _>(context.windows.token_start)
        .bind::<Timestamptz, _>(context.windows.day_start)
        .bind::<SqlUuid, _>(reporter.user_id)
        .bind::<Nullable<SqlUuid>, _>(reporter.api_key_id)
        .bind::<Text, _>(SubjectKind::Organization)
        .bind::<Text, _>(SubjectKind::Day)
        .bind::<Text, _>(SubjectKind::Member)
        .bind::<Text, _>(SubjectKind::ApiKey)
}

async fn standing(conn: &mut AsyncPgConnection, context: &Context, reporter: Reporter) -> QueryResult<Standing> {
    bind_standing(diesel::sql_query(standing_sql!()).into_boxed(), context, reporter)
        .get_result(conn)
        .await
}

/// One budget's state: its limit, what is used, what is held.
#[derive(Debug, Clone, Copy)]
struct Budget {
    denial: UsageDenial,
    limit: i64,
    used: i64,
    held: i64,
}

impl Budget {
    fn spent(&self) -> bool {
        self.used >= self.limit
    }

    /// Tokens a new call may still hold.
    fn headroom(&self) -> i64 {
        (self.limit - self.used - self.held).max(0)
    }
}

/// What a granted call holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Hold {
    prompt: i64,
    output: i64,
    send_limit: Option<i64>,
}

impl Hold {
    fn tokens(&self) -> i64 {
        self.prompt + self.output
    }
}

/// The contract's decision for `ask` with the budgets standing at
/// `standing`: the first denial that applies, or what to hold.
fn decide(limits: Limits, standing: &Standing, ask: &Ask<'_>) -> Result<Hold, Reserved> {
    let budgets: Vec<Budget> = [
        limits.organization.map(|limit| Budget {
            denial: UsageDenial::OrganizationBudget,
            limit,
            used: standing.organization_used,
            held: standing.organization_held,
        }),
        limits.key.map(|limit| Budget {
            denial: UsageDenial::ApiKeyBudget,
            limit,
            used: standing.key_used,
            held: standing.key_held,
        }),
        limits.member.map(|limit| Budget {
            denial: UsageDenial::MemberBudget,
            limit,
            used: standing.member_used,
            held: standing.member_held,
        }),
    ]
    .into_iter()
    .flatten()
    .collect();

    if let Some(spent) = budgets.iter().find(|b| b.spent()) {
        return Err(refused(spent.denial, false));
    }
    if let Some(limit) = limits.daily_requests {
        if standing.requests_today >= limit {
            return Err(refused(UsageDenial::DailyRequests, false));
        }
        if standing.requests_today + standing.calls >= limit {
            return Err(refused(UsageDenial::DailyRequests, true));
        }
    }
    let prompt = ask.prompt_tokens.max(0);
    let tightest = budgets.iter().min_by_key(|b| b.headroom());
    let (output, send_limit) = match (ask.output, tightest) {
        (OutputLimit::Caller(limit), _) => (limit.max(0), None),
        (OutputLimit::Chosen { preferred }, None) => (preferred.max(1), None),
        (OutputLimit::Chosen { preferred }, Some(budget)) => {
            let output = preferred.max(1).min(budget.headroom() - prompt);
            (output.max(1), Some(output.max(1)))
        }
    };
    let hold = Hold {
        prompt,
        output,
        send_limit,
    };
    if let Some(short) = budgets.iter().find(|b| hold.tokens() > b.headroom()) {
        let in_flight = hold.tokens() <= (short.limit - short.used);
        return Err(refused(short.denial, in_flight));
    }
    Ok(hold)
}

/// Checks the plan's rate, every budget and the daily request limit, and
/// holds the call's tokens if they fit (see the module documentation).
pub async fn reserve(app: &AppState, ask: &Ask<'_>) -> AppResult<Reserved> {
    let context = context(app, ask.reporter).await?;
    reserve_in(app, &context, ask).await
}

/// [`reserve`] with the organization's [`Context`] already read.
pub async fn reserve_in(app: &AppState, context: &Context, ask: &Ask<'_>) -> AppResult<Reserved> {
    check_rate(app, &context.plan, ask.reporter, ask.key, context.now).await?;
    let limits = Limits::of(context, ask);
    if limits.none() {
        let output = match ask.output {
            OutputLimit::Caller(limit) => limit.max(0),
            OutputLimit::Chosen { preferred } => preferred.max(1),
        };
        let hold = Hold {
            prompt: ask.prompt_tokens.max(0),
            output,
            send_limit: None,
        };
        let row = row_of(ask, context, hold);
        let reservation = granted(&row, hold);
        writer::insert(app, row).await?;
        return Ok(reservation);
    }
    let mut conn = app.db().await?;
    // Decided on what the budgets stood at a moment ago, outside the lock;
    // then held only if they still allow it, checked under the lock.
    let seen = standing(&mut conn, context, ask.reporter).await?;
    let hold = match decide(limits, &seen, ask) {
        Ok(hold) => hold,
        Err(refusal) => return Ok(refusal),
    };
    let row = row_of(ask, context, hold);
    let organization_id = ask.reporter.organization_id;
    let held = conn
        .transaction::<_, AppError, _>(async |conn| {
            lock(conn, organization_id).await?;
            Ok(insert_if_fits(conn, context, &row, limits).await?)
        })
        .await?;
    if held {
        return Ok(granted(&row, hold));
    }
    // Calls in flight took what it counted on: decided again, under the
    // lock, on what the budgets stand at now.
    conn.transaction::<_, AppError, _>(async |conn| {
        lock(conn, organization_id).await?;
        let now = standing(conn, context, ask.reporter).await?;
        let hold = match decide(limits, &now, ask) {
            Ok(hold) => hold,
            Err(refusal) => return Ok(refusal),
        };
        let row = row_of(ask, context, hold);
        insert(conn, &row).await?;
        Ok(granted(&row, hold))
    })
    .await
}

fn row_of(ask: &Ask<'_>, context: &Context, hold: Hold) -> ReservationRow {
    ReservationRow {
        id: Uuid::now_v7(),
        organization_id: ask.reporter.organization_id,
        user_id: ask.reporter.user_id,
        api_key_id: ask.reporter.api_key_id,
        model: ask.model.to_owned(),
        provider: ask.provider.map(str::to_owned),
        request_id: ask.request_id.to_owned(),
        prompt_tokens: i32::try_from(hold.prompt).unwrap_or(i32::MAX),
        tokens: hold.tokens(),
        created_at: context.now,
        expires_at: ask.expires_at,
    }
}

fn granted(row: &ReservationRow, hold: Hold) -> Reserved {
    Reserved::Granted(Reservation {
        id: row.id,
        prompt_tokens: hold.prompt,
        output_tokens: hold.output,
        send_limit: hold.send_limit,
    })
}

async fn insert(conn: &mut AsyncPgConnection, row: &ReservationRow) -> QueryResult<()> {
    diesel::insert_into(usage_reservations::table)
        .values(row)
        .execute(conn)
        .await
        .map(|_| ())
}

/// Inserts `row` if every budget of `limits` still holds it, read in the
/// same statement (the caller holds the organization's lock, so no other
/// reservation can come in between); false when one no longer does.
async fn insert_if_fits(
    conn: &mut AsyncPgConnection,
    context: &Context,
    row: &ReservationRow,
    limits: Limits,
) -> QueryResult<bool> {
    const INSERT_IF_FITS: &str = concat!(
        "INSERT INTO usage_reservations
            (id, organization_id, user_id, api_key_id, model, provider, request_id, prompt_tokens, tokens,
             created_at, expires_at)
         SELECT $10, $1, $4, $5, $11, $12, $13, $14, $15, $16, $17 FROM (",
        standing_sql!(),
        ") s
         WHERE ($18::int8 IS NULL OR (s.organization_used < $18
                AND $15 <= GREATEST($18 - s.organization_used - s.organization_held, 0)))
           AND ($19::int8 IS NULL OR (s.key_used < $19 AND $15 <= GREATEST($19 - s.key_used - s.key_held, 0)))
           AND ($20::int8 IS NULL OR (s.member_used < $20
                AND $15 <= GREATEST($20 - s.member_used - s.member_held, 0)))
           AND ($21::int8 IS NULL OR (s.requests_today < $21 AND s.requests_today + s.calls < $21))"
    );
    let reporter = Reporter {
        organization_id: row.organization_id,
        api_key_id: row.api_key_id,
        user_id: row.user_id,
    };
    let inserted = bind_standing(diesel::sql_query(INSERT_IF_FITS).into_boxed(), context, reporter)
        .bind::<SqlUuid, _>(row.id)
        .bind::<Text, _>(&row.model)
        .bind::<Nullable<Text>, _>(&row.provider)
        .bind::<Text, _>(&row.request_id)
        .bind::<Integer, _>(row.prompt_tokens)
        .bind::<BigInt, _>(row.tokens)
        .bind::<Timestamptz, _>(row.created_at)
        .bind::<Timestamptz, _>(row.expires_at)
        .bind::<Nullable<BigInt>, _>(limits.organization)
        .bind::<Nullable<BigInt>, _>(limits.key)
        .bind::<Nullable<BigInt>, _>(limits.member)
        .bind::<Nullable<BigInt>, _>(limits.daily_requests)
        .execute(conn)
        .await?;
    Ok(inserted == 1)
}

fn refused(denial: UsageDenial, in_flight: bool) -> Reserved {
    Reserved::Refused { denial, in_flight }
}

/// Takes the organization's reservation lock until the transaction ends.
async fn lock(conn: &mut AsyncPgConnection, organization_id: Uuid) -> QueryResult<()> {
    diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
        .bind::<BigInt, _>(lock_key(organization_id))
        .execute(conn)
        .await
        .map(|_| ())
}

/// The advisory lock's key for an organization: its id folded to 64 bits,
/// in a range of its own (the top bits say "reservation").
fn lock_key(organization_id: Uuid) -> i64 {
    let (high, low) = organization_id.as_u64_pair();
    let folded = (high ^ low) & 0x00FF_FFFF_FFFF_FFFF;
    // 0x52 = 'R'; the cast keeps the bits.
    (folded | (0x52 << 56)) as i64
}

/// Deletes a reservation inside the settling transaction; false when it
/// was already gone (settled by the expiry job, or by another instance).
/// It takes no lock: reservations read what they check in one statement,
/// and see the settling transaction (this deletion and the event's counts)
/// whole or not at all; two settlers of one reservation are ordered by its
/// row.
pub(crate) async fn delete(conn: &mut AsyncPgConnection, organization_id: Uuid, id: Uuid) -> QueryResult<bool> {
    let deleted = diesel::delete(
        usage_reservations::table
            .filter(usage_reservations::id.eq(id))
            .filter(usage_reservations::organization_id.eq(organization_id)),
    )
    .execute(conn)
    .await?;
    Ok(deleted == 1)
}

/// [`delete`] for the reservations of a group's settlements (each with
/// its organization), in one statement: the ids it deleted (the others
/// were already gone). It takes the connection shared, so a caller may
/// send it together with other statements (pipelined).
pub(crate) async fn delete_all(
    conn: &AsyncPgConnection,
    settled: &[(Uuid, Uuid)],
) -> QueryResult<std::collections::HashSet<Uuid>> {
    #[derive(QueryableByName)]
    struct Deleted {
        #[diesel(sql_type = SqlUuid)]
        id: Uuid,
    }
    let deleted: Vec<Deleted> = diesel::sql_query(
        "DELETE FROM usage_reservations r
         USING unnest($1::uuid[], $2::uuid[]) AS s(organization_id, id)
         WHERE r.id = s.id AND r.organization_id = s.organization_id
         RETURNING r.id",
    )
    .bind::<diesel::sql_types::Array<SqlUuid>, _>(settled.iter().map(|s| s.0).collect::<Vec<_>>())
    .bind::<diesel::sql_types::Array<SqlUuid>, _>(settled.iter().map(|s| s.1).collect::<Vec<_>>())
    .load(&mut { conn })
    .await?;
    Ok(deleted.into_iter().map(|row| row.id).collect())
}

/// Gives a reservation back without recording anything: the call never
/// reached a provider that answered.
pub async fn release(app: &AppState, organization_id: Uuid, id: Uuid) -> AppResult<()> {
    let mut conn = app.db().await?;
    delete(&mut conn, organization_id, id).await?;
    Ok(())
}

/// Tokens held in flight, per organization (Quota.tokensReserved);
/// organizations with none are absent.
pub async fn tokens_reserved(
    conn: &mut AsyncPgConnection,
    organization_ids: &[Uuid],
) -> QueryResult<std::collections::HashMap<Uuid, i64>> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = SqlUuid)]
        organization_id: Uuid,
        #[diesel(sql_type = BigInt)]
        tokens: i64,
    }
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT organization_id, sum(tokens)::int8 AS tokens FROM usage_reservations
         WHERE organization_id = ANY($1) GROUP BY organization_id",
    )
    .bind::<diesel::sql_types::Array<SqlUuid>, _>(organization_ids)
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|r| (r.organization_id, r.tokens)).collect())
}

/// Most expired reservations one round settles.
const EXPIRED_BATCH: i64 = 100;

/// One round of the expiry job: each reservation past its expiry (its
/// instance died, or lost it) becomes an estimated PROXY event of its
/// prompt, recorded like any other. Returns how many it settled.
pub async fn settle_expired_once(app: &AppState) -> AppResult<usize> {
    let now = app.now();
    let expired: Vec<ReservationRow> = {
        let mut conn = app.jobs_pool().get().await?;
        usage_reservations::table
            .filter(usage_reservations::expires_at.le(now))
            .order(usage_reservations::expires_at)
            .limit(EXPIRED_BATCH)
            .select(ReservationRow::as_select())
            .load(&mut conn)
            .await?
    };
    let mut settled = 0;
    for row in expired {
        let reporter = Reporter {
            organization_id: row.organization_id,
            api_key_id: row.api_key_id,
            user_id: row.user_id,
        };
        let settlement = Settlement {
            reservation_id: row.id,
            model: row.model,
            provider: row.provider,
            request_id: row.request_id,
            tokens: crate::usage::pricing::Tokens {
                prompt: i64::from(row.prompt_tokens),
                cached: 0,
                completion: 0,
            },
            estimated: true,
        };
        match crate::usage::record::settle(app, reporter, settlement).await {
            Ok(Some(_)) => settled += 1,
            // Another instance settled it first.
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = ?e, reservation = %row.id, "usage: settling an expired reservation failed")
            }
        }
    }
    Ok(settled)
}

/// How often the expiry job looks for abandoned reservations.
const EXPIRY_POLL: std::time::Duration = std::time::Duration::from_secs(30);

/// Starts the expiry job (every instance runs one; they share the work).
pub fn spawn_expiry_job(app: &AppState) {
    let state = app.clone();
    app.tasks().spawn(tollgate_db::hold::scoped(async move {
        let shutdown = state.shutdown_signal().clone();
        while !shutdown.is_cancelled() {
            let pause = match settle_expired_once(&state).await {
                Ok(n) if n as i64 == EXPIRED_BATCH => std::time::Duration::ZERO,
                Ok(_) => EXPIRY_POLL,
                Err(e) => {
                    tracing::warn!(error = ?e, "usage: the reservation expiry round failed");
                    EXPIRY_POLL
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(pause) => {}
            }
        }
    }));
}

/// A gateway call's usage, to record while its reservation is released.
#[derive(Debug, Clone)]
pub struct Settlement {
    /// The reservation the call held.
    pub reservation_id: Uuid,
    /// The model name the caller sent.
    pub model: String,
    /// The provider that served it.
    pub provider: Option<String>,
    /// The gateway's request id (the event's requestId).
    pub request_id: String,
    /// The provider's counts, or the gateway's estimate.
    pub tokens: crate::usage::pricing::Tokens,
    /// True when the gateway counted the tokens itself.
    pub estimated: bool,
}
