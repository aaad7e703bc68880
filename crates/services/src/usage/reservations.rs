//! Reservations: the tokens a gateway call may spend, held before the call
//! so that concurrent calls cannot together pass a budget.
//!
//! A call reserves its prompt estimate plus its output limit against the
//! organization's, the key's and the member's budgets in one step that
//! holds the organization's reservation lock (a transaction-scoped
//! advisory lock), so reservations of one organization are decided one
//! after another, each seeing every earlier one. The recording
//! transaction that settles a call takes the same lock before it deletes
//! the reservation and counts the event, so a reservation never sees a
//! call half settled (counted but still reserved, or neither).
//!
//! Reservations are not tied to a period: one taken just before a period
//! ends still holds until it is settled. One whose instance died expires
//! (after `LLM_TIMEOUT_SECS` and a margin) and is settled by
//! [`settle_expired_once`] as an estimated event of its prompt.

use chrono::{DateTime, Utc};
use diesel::{
    prelude::*,
    sql_types::{BigInt, Nullable, Uuid as SqlUuid},
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::usage::{
    authorize::{UsageDenial, check_rate, member_token_limit},
    counters::{self, SubjectKind},
    quota,
    record::Reporter,
    windows,
};
use tollgate_auth::AppState;
use tollgate_core::error::{AppError, AppResult};
use tollgate_db::schema::usage_reservations;

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

/// Tokens held by calls in flight, per subject.
#[derive(Debug, Clone, Copy, Default, QueryableByName)]
struct Held {
    #[diesel(sql_type = BigInt)]
    organization: i64,
    #[diesel(sql_type = BigInt)]
    member: i64,
    #[diesel(sql_type = BigInt)]
    key: i64,
    #[diesel(sql_type = BigInt)]
    calls: i64,
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

/// Checks the plan's rate, every budget and the daily request limit, and
/// holds the call's tokens if they fit (see the module documentation).
pub async fn reserve(app: &AppState, ask: &Ask<'_>) -> AppResult<Reserved> {
    let organization_id = ask.reporter.organization_id;
    let now = app.now();
    let mut conn = app.db().await?;
    let (windows, plan) = windows::of_organization(&mut conn, organization_id, now)
        .await?
        .ok_or_else(|| AppError::not_found("organization"))?;
    check_rate(app, &plan, ask.reporter, ask.key, now).await?;
    conn.transaction::<_, AppError, _>(async |conn| {
        lock(conn, organization_id).await?;
        let key_span = ask
            .reporter
            .api_key_id
            .map(|key| windows.span(SubjectKind::ApiKey, key));
        let member_span = windows.span(SubjectKind::Member, ask.reporter.user_id);
        let mut wanted = quota::spans(organization_id, &windows).to_vec();
        wanted.push(member_span);
        wanted.extend(key_span);
        let totals = counters::sum(conn, organization_id, &wanted).await?;
        let used = |span: Option<counters::CounterSpan>| span.and_then(|s| totals.get(&s)).map_or(0, |t| t.0);
        let quota = quota::from_totals(organization_id, &windows, &plan, &totals);
        let held = held(conn, ask.reporter).await?;
        let member_limit = member_token_limit(conn, organization_id, ask.reporter.user_id).await?;

        let budgets: Vec<Budget> = [
            quota.token_limit.map(|limit| Budget {
                denial: UsageDenial::OrganizationBudget,
                limit,
                used: quota.tokens_used,
                held: held.organization,
            }),
            ask.key_token_limit.filter(|_| key_span.is_some()).map(|limit| Budget {
                denial: UsageDenial::ApiKeyBudget,
                limit,
                used: used(key_span),
                held: held.key,
            }),
            member_limit.map(|limit| Budget {
                denial: UsageDenial::MemberBudget,
                limit,
                used: used(Some(member_span)),
                held: held.member,
            }),
        ]
        .into_iter()
        .flatten()
        .collect();

        if let Some(spent) = budgets.iter().find(|b| b.spent()) {
            return Ok(refused(spent.denial, false));
        }
        if let Some(limit) = quota.daily_request_limit.map(i64::from) {
            if quota.requests_today >= limit {
                return Ok(refused(UsageDenial::DailyRequests, false));
            }
            if quota.requests_today + held.calls >= limit {
                return Ok(refused(UsageDenial::DailyRequests, true));
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
        let tokens = prompt + output;
        if let Some(short) = budgets.iter().find(|b| tokens > b.headroom()) {
            let in_flight = tokens <= (short.limit - short.used);
            return Ok(refused(short.denial, in_flight));
        }
        let row = ReservationRow {
            id: Uuid::now_v7(),
            organization_id,
            user_id: ask.reporter.user_id,
            api_key_id: ask.reporter.api_key_id,
            model: ask.model.to_owned(),
            provider: ask.provider.map(str::to_owned),
            request_id: ask.request_id.to_owned(),
            prompt_tokens: i32::try_from(prompt).unwrap_or(i32::MAX),
            tokens,
            created_at: now,
            expires_at: ask.expires_at,
        };
        diesel::insert_into(usage_reservations::table)
            .values(&row)
            .execute(conn)
            .await?;
        Ok(Reserved::Granted(Reservation {
            id: row.id,
            prompt_tokens: prompt,
            output_tokens: output,
            send_limit,
        }))
    })
    .await
}

fn refused(denial: UsageDenial, in_flight: bool) -> Reserved {
    Reserved::Refused { denial, in_flight }
}

/// Takes the organization's reservation lock until the transaction ends.
pub(crate) async fn lock(conn: &mut AsyncPgConnection, organization_id: Uuid) -> QueryResult<()> {
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

/// Tokens held in the organization, by the member and by the key, and the
/// calls in flight.
async fn held(conn: &mut AsyncPgConnection, reporter: Reporter) -> QueryResult<Held> {
    diesel::sql_query(
        "SELECT COALESCE(sum(tokens), 0)::int8 AS organization,
                COALESCE(sum(tokens) FILTER (WHERE user_id = $2), 0)::int8 AS member,
                COALESCE(sum(tokens) FILTER (WHERE api_key_id = $3), 0)::int8 AS key,
                count(*) AS calls
         FROM usage_reservations WHERE organization_id = $1",
    )
    .bind::<SqlUuid, _>(reporter.organization_id)
    .bind::<SqlUuid, _>(reporter.user_id)
    .bind::<Nullable<SqlUuid>, _>(reporter.api_key_id)
    .get_result(conn)
    .await
}

/// Deletes a reservation inside the settling transaction (which has taken
/// [`lock`]); false when it was already gone (settled by the expiry job).
pub(crate) async fn delete(conn: &mut AsyncPgConnection, organization_id: Uuid, id: Uuid) -> QueryResult<bool> {
    lock(conn, organization_id).await?;
    let deleted = diesel::delete(
        usage_reservations::table
            .filter(usage_reservations::id.eq(id))
            .filter(usage_reservations::organization_id.eq(organization_id)),
    )
    .execute(conn)
    .await?;
    Ok(deleted == 1)
}

/// Gives a reservation back without recording anything: the call never
/// reached a provider that answered.
pub async fn release(app: &AppState, organization_id: Uuid, id: Uuid) -> AppResult<()> {
    let mut conn = app.db().await?;
    conn.transaction::<_, AppError, _>(async |conn| Ok(delete(conn, organization_id, id).await.map(|_| ())?))
        .await
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
