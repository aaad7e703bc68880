//! recordUsage and recordUsageBatch: reported LLM calls become events,
//! priced at record time and counted in one transaction.
//!
//! Reported usage is billing truth, so a report is refused only for who
//! sends it (credentials, scope, organization) and for impossible numbers;
//! budgets are enforced before the call by authorizeUsage. A batch is one
//! transaction of a fixed number of statements whatever its size: one
//! insert for the events, one upsert for the counters (organization row
//! first), one for the daily rollup.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use uuid::Uuid;

use crate::{
    orgs::access,
    usage::{
        counters::{self, Deltas, SubjectKind},
        daily,
        event::{self, UsageEventRow},
        live::USAGE_RECORDED,
        live_message::UsageUpdateMessage,
        pricing::{Catalog, Tokens},
        quota::{self, QuotaSnapshot},
        thresholds,
        windows::{self, Windows},
    },
};
use tollgate_auth::{AppState, Principal};
use tollgate_core::error::{AppError, AppResult};
use tollgate_platform::mail;

/// Largest token count of one kind in one event.
pub const MAX_TOKENS: i32 = 10_000_000;
/// Most inputs of one recordUsageBatch.
pub const MAX_BATCH: usize = 1_000;
/// Longest model name and requestId, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Largest metadata, as serialized JSON (keeps a bus message under 7 KB).
pub const MAX_METADATA_BYTES: usize = 4 * 1024;
/// How far back occurredAt may lie.
const MAX_AGE_DAYS: i64 = 35;
/// How far ahead occurredAt may lie (client clocks drift).
const MAX_AHEAD_MINUTES: i64 = 5;

/// One reported LLM call, as the client sent it.
#[derive(Debug, Clone)]
pub struct UsageReport {
    /// Required with a user's access token; implied by an API key.
    pub organization_id: Option<String>,
    /// The model name as the provider reported it.
    pub model: String,
    /// Prompt tokens, cached ones included.
    pub prompt_tokens: i32,
    /// Part of promptTokens served from the provider's prompt cache.
    pub cached_tokens: i32,
    /// Completion tokens.
    pub completion_tokens: i32,
    /// Idempotency key: the same requestId in one organization is counted once; the same requestId with different numbers is CONFLICT.
    pub request_id: Option<String>,
    /// When the call happened; default now. At most 35 days back and 5 minutes ahead.
    pub occurred_at: Option<DateTime<Utc>>,
    /// Anything the client wants kept with the event: JSON of at most 4 KiB.
    pub metadata: Option<serde_json::Value>,
}

/// Who usage is recorded for: the organization, the key it was reported
/// with, and the member it counts against (the reporting user, or the
/// key's creator).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reporter {
    /// The organization.
    pub organization_id: Uuid,
    /// The key, when an API key reported it.
    pub api_key_id: Option<Uuid>,
    /// The member it counts against.
    pub user_id: Uuid,
}

/// One checked input.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The model name as reported, trimmed.
    pub model: String,
    /// Token counts.
    pub tokens: Tokens,
    /// Idempotency key.
    pub request_id: Option<String>,
    /// When the call happened; None: when it is received (the recording
    /// transaction's time, so it equals createdAt).
    pub occurred_at: Option<DateTime<Utc>>,
    /// Client metadata.
    pub metadata: Option<serde_json::Value>,
}

/// What recording answered for one input.
#[derive(Debug, Clone)]
pub struct Receipt {
    /// The event: the new one, or the original of a repeated requestId.
    pub event: UsageEventRow,
    /// True when the requestId was already recorded.
    pub duplicate: bool,
}

/// Who reports for which organization; `rule` is the access rule of the
/// operation. With an API key the organization is the key's (another id
/// is FORBIDDEN); with a user's token `organization_id` is required and
/// the caller must be MEMBER or above.
pub async fn reporter(
    app: &AppState,
    principal: &Principal,
    organization_id: Option<&str>,
    rule: &str,
) -> AppResult<Reporter> {
    let reporter = reporter_unchecked(principal, organization_id)?;
    access::authorize(app, principal, reporter.organization_id, rule).await?;
    Ok(reporter)
}

/// Who reports for which organization, before the access rule is applied
/// (the caller applies it to `organization_id` next, as [`reporter`] does).
/// With an API key the organization is the key's (an id that does not
/// parse is FORBIDDEN); with a user's token `organization_id` is required.
pub fn reporter_unchecked(principal: &Principal, organization_id: Option<&str>) -> AppResult<Reporter> {
    if let Some(key) = principal.api_key() {
        let organization_id = match organization_id {
            None => key.organization_id,
            Some(id) => Uuid::parse_str(id).map_err(|_| AppError::forbidden())?,
        };
        return Ok(Reporter {
            organization_id,
            api_key_id: Some(key.key_id),
            user_id: key.created_by,
        });
    }
    let user_id = principal.require_user()?;
    let id = organization_id
        .ok_or_else(|| AppError::bad_input("organizationId", "organizationId is required with a user's token"))?;
    let organization_id = Uuid::parse_str(id).map_err(|_| AppError::not_found("organization"))?;
    Ok(Reporter {
        organization_id,
        api_key_id: None,
        user_id,
    })
}

/// The organizationId a batch is for, checked input by input: with a key,
/// none or the key's own (FORBIDDEN otherwise); with a user's token, given
/// on every input and the same on all (BAD_USER_INPUT otherwise).
pub fn batch_organization(principal: &Principal, inputs: &[UsageReport]) -> AppResult<Option<String>> {
    if let Some(key) = principal.api_key() {
        for (index, input) in inputs.iter().enumerate() {
            let Some(id) = &input.organization_id else { continue };
            if Uuid::parse_str(id.as_str()).ok() != Some(key.organization_id) {
                return Err(AppError::forbidden().at_index(index));
            }
        }
        return Ok(None);
    }
    principal.require_user()?;
    let mut first: Option<Uuid> = None;
    for (index, input) in inputs.iter().enumerate() {
        let id = input.organization_id.as_ref().ok_or_else(|| {
            AppError::bad_input("organizationId", "organizationId is required with a user's token").at_index(index)
        })?;
        let id = Uuid::parse_str(id.as_str()).map_err(|_| AppError::not_found("organization").at_index(index))?;
        match first {
            None => first = Some(id),
            Some(first) if first != id => {
                return Err(
                    AppError::bad_input("organizationId", "all inputs must be of one organization").at_index(index),
                );
            }
            Some(_) => {}
        }
    }
    Ok(first.map(|id| id.to_string()))
}

/// Checks one input against the rules of the contract at `now`.
pub fn check(input: UsageReport, now: DateTime<Utc>) -> AppResult<Report> {
    let model = input.model.trim();
    check_name("model", model)?;
    for (field, value) in [
        ("promptTokens", input.prompt_tokens),
        ("cachedTokens", input.cached_tokens),
        ("completionTokens", input.completion_tokens),
    ] {
        if !(0..=MAX_TOKENS).contains(&value) {
            return Err(AppError::bad_input(
                field,
                format!("{field} must be between 0 and {MAX_TOKENS}"),
            ));
        }
    }
    if input.cached_tokens > input.prompt_tokens {
        return Err(AppError::bad_input(
            "cachedTokens",
            "cachedTokens are part of promptTokens and cannot exceed them",
        ));
    }
    if let Some(request_id) = &input.request_id {
        check_name("requestId", request_id)?;
    }
    let occurred_at = input.occurred_at;
    if let Some(occurred_at) = occurred_at
        && (occurred_at < now - Duration::days(MAX_AGE_DAYS)
            || occurred_at > now + Duration::minutes(MAX_AHEAD_MINUTES))
    {
        return Err(AppError::bad_input(
            "occurredAt",
            "occurredAt must be within the last 35 days and at most 5 minutes ahead",
        ));
    }
    let metadata = input.metadata.filter(|m| !m.is_null());
    if let Some(metadata) = &metadata {
        let size = serde_json::to_string(metadata).map_err(AppError::internal)?.len();
        if size > MAX_METADATA_BYTES {
            return Err(AppError::bad_input(
                "metadata",
                "metadata must be at most 4 KiB of JSON",
            ));
        }
    }
    Ok(unchecked(UsageReport { metadata, ..input }))
}

/// A model name or requestId: 1 to 200 characters, no control characters
/// (they would forge lines in logs and exports).
pub fn check_name(field: &'static str, value: &str) -> AppResult<()> {
    let length = value.chars().count();
    if length == 0 || length > MAX_NAME_CHARS {
        return Err(AppError::bad_input(
            field,
            format!("{field} must be 1 to {MAX_NAME_CHARS} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(AppError::bad_input(
            field,
            format!("{field} must not contain control characters"),
        ));
    }
    Ok(())
}

/// Checks every input for `organization_id` at `now`; `locate` names a
/// refused input in its error (by index, in a batch).
///
/// A repeat of a stored requestId with the same numbers is answered, not
/// judged: the original passed these checks when it was recorded, and a
/// client retrying it days later must get `duplicate: true`, not a refusal
/// for the call's age. With other numbers it is CONFLICT, as it would be
/// had it passed them: the requestId is looked at first. The stored events
/// are looked up only when an input is refused, so the usual report costs
/// no extra statement.
pub async fn check_reports(
    app: &AppState,
    organization_id: Uuid,
    inputs: Vec<UsageReport>,
    now: DateTime<Utc>,
    locate: fn(AppError, usize) -> AppError,
) -> AppResult<Vec<Report>> {
    let checked: Vec<AppResult<Report>> = inputs.iter().map(|input| check(input.clone(), now)).collect();
    if checked.iter().all(Result::is_ok) {
        return checked.into_iter().collect();
    }
    let refused_ids: Vec<&str> = inputs
        .iter()
        .zip(&checked)
        .filter(|(_, result)| result.is_err())
        .filter_map(|(input, _)| input.request_id.as_deref())
        .collect();
    let stored = stored_events(app, organization_id, &refused_ids).await?;
    inputs
        .into_iter()
        .zip(checked)
        .enumerate()
        .map(|(index, (input, result))| match result {
            Ok(report) => Ok(report),
            Err(error) => match input.request_id.as_deref().and_then(|id| stored.get(id)) {
                Some(original) if repeats(original, &input) => Ok(unchecked(input)),
                Some(_) => Err(locate(conflict(), index)),
                None => Err(locate(error, index)),
            },
        })
        .collect()
}

/// The organization's events with these requestIds, by requestId.
async fn stored_events(
    app: &AppState,
    organization_id: Uuid,
    request_ids: &[&str],
) -> AppResult<HashMap<String, UsageEventRow>> {
    if request_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let mut conn = app.db().await?;
    let rows = event::find_by_request_ids(&mut conn, organization_id, request_ids).await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| row.request_id.clone().map(|id| (id, row)))
        .collect())
}

/// Whether `input` reports the same call with the same numbers as the
/// stored `original`.
fn repeats(original: &UsageEventRow, input: &UsageReport) -> bool {
    original.numbers()
        == (
            input.model.trim(),
            input.prompt_tokens,
            input.cached_tokens,
            input.completion_tokens,
        )
}

/// A repeat as a report, without the checks: the write path finds its
/// requestId stored and answers with the original.
fn unchecked(input: UsageReport) -> Report {
    Report {
        model: input.model.trim().to_owned(),
        tokens: Tokens {
            prompt: i64::from(input.prompt_tokens),
            cached: i64::from(input.cached_tokens),
            completion: i64::from(input.completion_tokens),
        },
        request_id: input.request_id,
        occurred_at: input.occurred_at,
        metadata: input.metadata.filter(|m| !m.is_null()),
    }
}

/// Records `reports` for `reporter`, all or nothing, and returns one
/// receipt per report with the organization's quota after the write. Each
/// recorded event is published after commit.
pub async fn record(
    app: &AppState,
    reporter: Reporter,
    reports: Vec<Report>,
) -> AppResult<(Vec<Receipt>, QuotaSnapshot)> {
    let mut conn = app.db().await?;
    let catalog = Catalog::load(&mut conn).await?;
    let written = conn
        .transaction::<_, AppError, _>(async |conn| {
            // Receive time is read under the organization's lock, which
            // resetUsage takes exclusively: every event then falls wholly
            // before or after a reset, in the window its created_at says.
            windows::lock_for_recording(conn, reporter.organization_id).await?;
            let now = app.now();
            let (windows, plan) = windows::of_organization(conn, reporter.organization_id, now)
                .await?
                .ok_or_else(|| AppError::not_found("organization"))?;
            let planned = Planned::new(&reporter, &catalog, reports, now)?;
            let context = WriteContext {
                reporter: &reporter,
                windows: &windows,
                plan: &plan,
                now,
            };
            write(conn, &context, &planned).await
        })
        .await?;
    // Back to the pool before anything else: nothing below needs it.
    drop(conn);
    if written.emailed {
        mail::wake();
    }
    let tokens: u64 = written
        .messages
        .iter()
        .map(|m| u64::try_from(m.event.total_tokens).unwrap_or(0))
        .sum();
    app.metrics().usage_recorded(written.messages.len() as u64, tokens);
    publish(app, &written.messages);
    Ok((written.receipts, written.quota))
}

/// Sends each recorded event to every instance (queued: it waits for
/// nothing). The events are committed whatever happens here, so a failure
/// is logged, not returned.
fn publish(app: &AppState, messages: &[UsageUpdateMessage]) {
    for message in messages {
        let sent = live_json(message).and_then(|json| app.events().publish(USAGE_RECORDED, &json));
        if let Err(error) = sent {
            tracing::warn!(error = ?error, event = %message.event.id, "usage event not published");
        }
    }
}

/// Largest message JSON sent as is. The bus escapes it once more inside
/// its envelope (at most doubling it), and PostgreSQL NOTIFY payloads stop
/// at 8000 bytes.
const LIVE_MESSAGE_BUDGET: usize = 3900;

/// The message as subscribers get it; an event whose metadata would not
/// fit travels without it (the stored event keeps it).
fn live_json(message: &UsageUpdateMessage) -> AppResult<String> {
    let json = message.to_json()?;
    if json.len() <= LIVE_MESSAGE_BUDGET {
        return Ok(json);
    }
    let mut slim = message.clone();
    slim.event.metadata = None;
    slim.to_json()
}

/// Which candidate row an input became.
#[derive(Debug, Clone, Copy)]
enum Slot {
    /// The input's own row (index into `rows`).
    Own(usize),
    /// A repeat, within the batch, of an earlier input's requestId with
    /// the same numbers.
    RepeatOf(usize),
}

/// The rows a batch would insert, before the database has its say on
/// requestIds already stored.
struct Planned {
    /// Candidate events in input order, each requestId once.
    rows: Vec<UsageEventRow>,
    /// The input each row came from (for `extensions.index`).
    input_of: Vec<usize>,
    /// Per input, its row.
    slots: Vec<Slot>,
}

impl Planned {
    /// Prices every report and folds repeats of a requestId within the
    /// batch (different numbers under one requestId: CONFLICT).
    fn new(reporter: &Reporter, catalog: &Catalog, reports: Vec<Report>, now: DateTime<Utc>) -> AppResult<Self> {
        let mut planned = Self {
            rows: Vec::with_capacity(reports.len()),
            input_of: Vec::with_capacity(reports.len()),
            slots: Vec::with_capacity(reports.len()),
        };
        let mut by_request_id: HashMap<String, usize> = HashMap::new();
        for (index, report) in reports.into_iter().enumerate() {
            let row = event_row(reporter, catalog, report, now);
            if let Some(request_id) = &row.request_id {
                if let Some(&earlier) = by_request_id.get(request_id) {
                    if !planned.rows[earlier].same_numbers(&row) {
                        return Err(conflict().at_index(index));
                    }
                    planned.slots.push(Slot::RepeatOf(earlier));
                    continue;
                }
                by_request_id.insert(request_id.clone(), planned.rows.len());
            }
            planned.slots.push(Slot::Own(planned.rows.len()));
            planned.input_of.push(index);
            planned.rows.push(row);
        }
        Ok(planned)
    }

    /// The rows in insertion order: by requestId, so that two transactions
    /// inserting overlapping requestIds wait for each other in the same
    /// order and never deadlock.
    fn insertion_order(&self) -> Vec<UsageEventRow> {
        let mut rows = self.rows.clone();
        rows.sort_by(|a, b| a.request_id.cmp(&b.request_id));
        rows
    }
}

/// A candidate the insert skipped whose original cannot be found: only a
/// bug (or a deletion racing the insert) gets here.
fn unaccounted(row: &UsageEventRow) -> AppError {
    AppError::internal(anyhow::anyhow!("usage event {} neither inserted nor found", row.id))
}

fn conflict() -> AppError {
    AppError::conflict("this requestId was recorded with different numbers")
}

/// The event a report becomes, priced at the catalog's current prices.
fn event_row(reporter: &Reporter, catalog: &Catalog, report: Report, now: DateTime<Utc>) -> UsageEventRow {
    let pricing = catalog.price(&report.model, report.tokens);
    // Validation caps each count at 10M, so these fit an i32.
    let count = |n: i64| i32::try_from(n).unwrap_or(i32::MAX);
    UsageEventRow {
        id: Uuid::now_v7(),
        organization_id: reporter.organization_id,
        api_key_id: reporter.api_key_id,
        user_id: Some(reporter.user_id),
        model: report.model,
        model_id: pricing.model_id,
        prompt_tokens: count(report.tokens.prompt),
        cached_tokens: count(report.tokens.cached),
        completion_tokens: count(report.tokens.completion),
        total_tokens: count(report.tokens.prompt + report.tokens.completion),
        cost_micro_usd: pricing.cost_micro_usd,
        priced: pricing.priced,
        request_id: report.request_id,
        metadata: report.metadata,
        occurred_at: report.occurred_at.unwrap_or(now),
        created_at: now,
    }
}

/// What the writing transaction needs besides the rows.
struct WriteContext<'a> {
    reporter: &'a Reporter,
    windows: &'a Windows,
    plan: &'a crate::plans::model::PlanRow,
    now: DateTime<Utc>,
}

/// What the transaction produced.
struct Written {
    receipts: Vec<Receipt>,
    quota: QuotaSnapshot,
    messages: Vec<UsageUpdateMessage>,
    emailed: bool,
}

/// The transaction's body: insert, sort out requestIds already stored,
/// count, roll up, announce thresholds.
async fn write(conn: &mut AsyncPgConnection, cx: &WriteContext<'_>, planned: &Planned) -> AppResult<Written> {
    let organization_id = cx.reporter.organization_id;
    let inserted = event::insert_new(conn, &planned.insertion_order()).await?;
    let mut stored: HashMap<Uuid, UsageEventRow> = inserted.into_iter().map(|row| (row.id, row)).collect();
    let originals = originals_of_skipped(conn, organization_id, planned, &stored).await?;
    // Each candidate row: (the event to answer with, whether it is new).
    let mut outcomes: Vec<(UsageEventRow, bool)> = Vec::with_capacity(planned.rows.len());
    for row in &planned.rows {
        let outcome = match stored.remove(&row.id) {
            Some(new) => (new, true),
            None => (originals.get(&row.id).cloned().ok_or_else(|| unaccounted(row))?, false),
        };
        outcomes.push(outcome);
    }
    let new_events: Vec<&UsageEventRow> = outcomes.iter().filter(|(_, new)| *new).map(|(e, _)| e).collect();
    let (quota, messages, emailed) = if new_events.is_empty() {
        (
            quota::read(conn, organization_id, cx.windows, cx.plan).await?,
            Vec::new(),
            false,
        )
    } else {
        count(conn, cx, &new_events).await?
    };
    let receipts = planned
        .slots
        .iter()
        .map(|slot| match *slot {
            Slot::Own(row) => Receipt {
                event: outcomes[row].0.clone(),
                duplicate: !outcomes[row].1,
            },
            Slot::RepeatOf(row) => Receipt {
                event: outcomes[row].0.clone(),
                duplicate: true,
            },
        })
        .collect();
    Ok(Written {
        receipts,
        quota,
        messages,
        emailed,
    })
}

/// For each candidate the insert skipped (its requestId was already
/// stored, perhaps by a concurrent request that has since committed), the
/// stored original, keyed by the candidate's id; CONFLICT naming the input
/// when the numbers differ.
async fn originals_of_skipped(
    conn: &mut AsyncPgConnection,
    organization_id: Uuid,
    planned: &Planned,
    stored: &HashMap<Uuid, UsageEventRow>,
) -> AppResult<HashMap<Uuid, UsageEventRow>> {
    let skipped: Vec<(usize, &UsageEventRow)> = planned
        .rows
        .iter()
        .enumerate()
        .filter(|(_, row)| !stored.contains_key(&row.id))
        .collect();
    if skipped.is_empty() {
        return Ok(HashMap::new());
    }
    let request_ids: Vec<&str> = skipped
        .iter()
        .filter_map(|(_, row)| row.request_id.as_deref())
        .collect();
    let existing = event::find_by_request_ids(conn, organization_id, &request_ids).await?;
    let by_request_id: HashMap<&str, &UsageEventRow> = existing
        .iter()
        .filter_map(|row| row.request_id.as_deref().map(|id| (id, row)))
        .collect();
    let mut originals = HashMap::with_capacity(skipped.len());
    for (position, row) in skipped {
        let original = row
            .request_id
            .as_deref()
            .and_then(|id| by_request_id.get(id))
            .ok_or_else(|| unaccounted(row))?;
        if !original.same_numbers(row) {
            return Err(conflict().at_index(planned.input_of[position]));
        }
        originals.insert(row.id, (*original).clone());
    }
    Ok(originals)
}

/// Adds the new events to the counters (organization row first), the
/// rollup and the thresholds; returns the quota after, one bus message per
/// event, and whether emails were queued.
async fn count(
    conn: &mut AsyncPgConnection,
    cx: &WriteContext<'_>,
    events: &[&UsageEventRow],
) -> AppResult<(QuotaSnapshot, Vec<UsageUpdateMessage>, bool)> {
    let organization_id = cx.reporter.organization_id;
    let tokens: i64 = events.iter().map(|e| i64::from(e.total_tokens)).sum();
    let requests = i64::try_from(events.len()).unwrap_or(i64::MAX);
    let windows = cx.windows;
    let mut deltas = Deltas::default();
    deltas.add(
        windows.row(SubjectKind::Organization, organization_id),
        tokens,
        requests,
    );
    if let Some(key_id) = cx.reporter.api_key_id {
        deltas.add(windows.row(SubjectKind::ApiKey, key_id), tokens, requests);
    }
    deltas.add(windows.row(SubjectKind::Member, cx.reporter.user_id), tokens, requests);
    deltas.add(windows.row(SubjectKind::Day, organization_id), tokens, requests);
    let spans = quota::spans(organization_id, windows);
    let totals = counters::add(conn, organization_id, &deltas, &spans).await?;
    let after = quota::from_totals(organization_id, windows, cx.plan, &totals);
    let events: Vec<UsageEventRow> = events.iter().map(|e| (*e).clone()).collect();
    daily::add(conn, organization_id, &events).await?;

    let before_tokens = after.tokens_used - tokens;
    let crossed = thresholds::crossed(before_tokens, after.tokens_used, after.token_limit);
    let claimed = thresholds::claim(conn, organization_id, cx.windows.token_start, &crossed, cx.now).await?;
    let emailed = match (claimed.iter().max(), after.token_limit) {
        (Some(&highest), Some(limit)) => {
            thresholds::email_managers(conn, organization_id, highest, after.tokens_used, limit, cx.now).await? > 0
        }
        _ => false,
    };
    let messages = messages(organization_id, events, after, tokens, requests, &claimed);
    Ok((after, messages, emailed))
}

/// One bus message per new event, each with the quota as it stood just
/// after that event (running totals through the batch) and the highest
/// claimed threshold that event crossed.
fn messages(
    organization_id: Uuid,
    events: Vec<UsageEventRow>,
    after: QuotaSnapshot,
    tokens: i64,
    requests: i64,
    claimed: &[i32],
) -> Vec<UsageUpdateMessage> {
    let claimed: HashSet<i32> = claimed.iter().copied().collect();
    let mut running = QuotaSnapshot {
        tokens_used: after.tokens_used - tokens,
        requests_today: after.requests_today - requests,
        ..after
    };
    events
        .into_iter()
        .map(|event| {
            let before = running.tokens_used;
            running.tokens_used += i64::from(event.total_tokens);
            running.requests_today += 1;
            let threshold_crossed = thresholds::crossed(before, running.tokens_used, running.token_limit)
                .into_iter()
                .filter(|t| claimed.contains(t))
                .max();
            UsageUpdateMessage {
                organization_id,
                event,
                quota: running,
                threshold_crossed,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_core::error::field_of as field;

    fn input() -> UsageReport {
        UsageReport {
            organization_id: None,
            model: " gpt-4o ".into(),
            prompt_tokens: 100,
            cached_tokens: 0,
            completion_tokens: 10,
            request_id: None,
            occurred_at: None,
            metadata: None,
        }
    }

    #[test]
    fn inputs_are_checked_field_by_field() {
        let now = Utc::now();
        assert_eq!(check(input(), now).unwrap().model, "gpt-4o");
        let with = |f: fn(&mut UsageReport)| {
            let mut input = input();
            f(&mut input);
            check(input, now)
        };
        assert_eq!(field(with(|i| i.prompt_tokens = -1)).as_deref(), Some("promptTokens"));
        assert_eq!(
            field(with(|i| i.completion_tokens = MAX_TOKENS + 1)).as_deref(),
            Some("completionTokens")
        );
        assert!(with(|i| i.completion_tokens = MAX_TOKENS).is_ok());
        assert_eq!(field(with(|i| i.cached_tokens = 101)).as_deref(), Some("cachedTokens"));
        assert_eq!(field(with(|i| i.model = "  ".into())).as_deref(), Some("model"));
        assert_eq!(field(with(|i| i.model = "m".repeat(201))).as_deref(), Some("model"));
        assert_eq!(
            field(with(|i| i.request_id = Some(String::new()))).as_deref(),
            Some("requestId")
        );
        assert_eq!(
            field(with(|i| i.request_id = Some("a\nb".into()))).as_deref(),
            Some("requestId")
        );
        let big = serde_json::json!({ "x": "y".repeat(MAX_METADATA_BYTES) });
        let mut too_big = input();
        too_big.metadata = Some(big);
        assert_eq!(field(check(too_big, now)).as_deref(), Some("metadata"));
        let mut old = input();
        old.occurred_at = Some(now - Duration::days(36));
        assert_eq!(field(check(old, now)).as_deref(), Some("occurredAt"));
        let mut ahead = input();
        ahead.occurred_at = Some(now + Duration::minutes(6));
        assert_eq!(field(check(ahead, now)).as_deref(), Some("occurredAt"));
    }
}
