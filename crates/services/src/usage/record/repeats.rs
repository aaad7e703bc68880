//! Idempotency repair: a refused input that repeats a stored requestId is
//! answered with the original, not judged again.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::check::{Report, UsageReport, check, unchecked};
use crate::usage::event::{self, UsageEventRow};
use tollgate_auth::AppState;
use tollgate_core::error::{AppError, AppResult};

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

/// A requestId already recorded with other numbers.
pub(super) fn conflict() -> AppError {
    AppError::conflict("this requestId was recorded with different numbers")
}
