//! The recording transaction: insert, sort out requestIds already stored,
//! count, roll up, announce thresholds.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use uuid::Uuid;

use super::{
    Receipt, Reporter, alerts,
    plan::{Planned, Slot},
    publish,
    repeats::conflict,
};
use crate::usage::{
    counters::{self, Deltas, SubjectKind},
    daily,
    event::{self, UsageEventRow},
    live_message::UsageUpdateMessage,
    quota::{self, QuotaSnapshot},
    windows::Windows,
};
use tollgate_core::error::{AppError, AppResult};

/// What the writing transaction needs besides the rows.
pub(super) struct WriteContext<'a> {
    pub(super) reporter: &'a Reporter,
    pub(super) windows: &'a Windows,
    pub(super) plan: &'a crate::plans::model::PlanRow,
    pub(super) now: DateTime<Utc>,
}

/// What the transaction produced.
pub(super) struct Written {
    pub(super) receipts: Vec<Receipt>,
    pub(super) quota: QuotaSnapshot,
    pub(super) messages: Vec<UsageUpdateMessage>,
    pub(super) emailed: bool,
}

/// The transaction's body: insert, sort out requestIds already stored,
/// count, roll up, announce thresholds.
pub(super) async fn write(
    conn: &mut AsyncPgConnection,
    cx: &WriteContext<'_>,
    planned: &Planned,
) -> AppResult<Written> {
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

/// A candidate the insert skipped whose original cannot be found: only a
/// bug (or a deletion racing the insert) gets here.
fn unaccounted(row: &UsageEventRow) -> AppError {
    AppError::internal(anyhow::anyhow!("usage event {} neither inserted nor found", row.id))
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
    let (claimed, emailed) = alerts::claim_and_email(conn, cx, before_tokens, &after).await?;
    let messages = publish::messages(organization_id, events, after, tokens, requests, &claimed);
    Ok((after, messages, emailed))
}
