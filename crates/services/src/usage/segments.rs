//! Boundaries learned late. Recording adds to the row of the segment that
//! starts at the latest boundary known at receive time (see
//! [`crate::usage::windows`]). A subscription's period start can become
//! known after it began (the webhook of a payment arrives seconds later, a
//! subscription is backdated, Stripe's dates differ from our roll after
//! missed renewals): events received since then sit in the previous
//! segment's rows, and the new period would not count them. When a period
//! start changes, those events' counts move to rows starting there, as if
//! the boundary had been known all along.

use chrono::{DateTime, Utc};
use diesel::{
    dsl::{count_star, max, min, sum},
    prelude::*,
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::usage::counters::{self, CounterKey, Deltas, SubjectKind};
use tollgate_core::error::{AppError, AppResult};
use tollgate_db::schema::{organizations, usage_counters, usage_events};

/// Holds the organization's row until the transaction ends, so that no
/// recording is in flight (recordings share it) while segments are looked
/// at or moved. Key-share holders (a webhook, a cancellation) do not
/// conflict, so this never waits on a lock its own caller's peers hold
/// while they wait for the subscription row.
pub async fn hold(conn: &mut AsyncPgConnection, organization_id: Uuid) -> AppResult<()> {
    organizations::table
        .find(organization_id)
        .select(organizations::id)
        .for_no_key_update()
        .first::<Uuid>(conn)
        .await?;
    Ok(())
}

/// The start of the organization's latest segment: recording never goes
/// back before it. Call under [`hold`].
pub async fn latest_start(conn: &mut AsyncPgConnection, organization_id: Uuid) -> AppResult<Option<DateTime<Utc>>> {
    Ok(organization_segments(organization_id)
        .select(max(usage_counters::window_start))
        .first(conn)
        .await?)
}

/// The organization's own counter rows: one per segment it recorded in.
fn organization_segments(organization_id: Uuid) -> usage_counters::BoxedQuery<'static, diesel::pg::Pg> {
    usage_counters::table
        .filter(usage_counters::organization_id.eq(organization_id))
        .filter(usage_counters::subject_kind.eq(SubjectKind::Organization))
        .filter(usage_counters::subject_id.eq(organization_id))
        .into_boxed()
}

/// Events received by one key and member: (key, member, tokens, events).
type Received = (Option<Uuid>, Option<Uuid>, Option<i64>, i64);

/// Makes `start` a segment boundary of the organization's token counters
/// (organization, keys, members) as if it had been one all along, under
/// [`hold`]. Nothing to do for a boundary that
/// already starts a segment, or without events received since it in an
/// earlier segment.
///
/// Segments never go back in time (see [`crate::usage::windows`]), so the
/// events received since `start` that no later segment holds are all in
/// the rows of the last segment before it. Should that ever not hold (a
/// row missing, or smaller than what it should give up), nothing moves
/// and the fault is logged: the plan change that asked for the move must
/// still apply.
pub async fn split_at(conn: &mut AsyncPgConnection, organization_id: Uuid, start: DateTime<Utc>) -> AppResult<()> {
    hold(conn, organization_id).await?;
    let before: Option<DateTime<Utc>> = organization_segments(organization_id)
        .filter(usage_counters::window_start.lt(start))
        .select(max(usage_counters::window_start))
        .first(conn)
        .await?;
    let from_start: Option<DateTime<Utc>> = organization_segments(organization_id)
        .filter(usage_counters::window_start.ge(start))
        .select(min(usage_counters::window_start))
        .first(conn)
        .await?;
    let Some(previous) = before else {
        return Ok(());
    };
    if from_start == Some(start) {
        return Ok(());
    }
    let until = from_start.unwrap_or(DateTime::<Utc>::MAX_UTC);
    let moved: Vec<Received> = usage_events::table
        .filter(usage_events::organization_id.eq(organization_id))
        .filter(usage_events::created_at.ge(start))
        .filter(usage_events::created_at.lt(until))
        .group_by((usage_events::api_key_id, usage_events::user_id))
        .select((
            usage_events::api_key_id,
            usage_events::user_id,
            sum(usage_events::total_tokens),
            count_star(),
        ))
        .load(conn)
        .await?;
    let (mut taken, mut added) = (Deltas::default(), Deltas::default());
    for (api_key_id, user_id, tokens, requests) in moved {
        let tokens = tokens.unwrap_or(0);
        let subjects = [
            Some((SubjectKind::Organization, organization_id)),
            api_key_id.map(|id| (SubjectKind::ApiKey, id)),
            user_id.map(|id| (SubjectKind::Member, id)),
        ];
        for (kind, subject_id) in subjects.into_iter().flatten() {
            let row = |window_start| CounterKey {
                kind,
                subject_id,
                window_start,
            };
            taken.add(row(previous), tokens, requests);
            added.add(row(start), tokens, requests);
        }
    }
    let moving = conn
        .transaction::<_, AppError, _>(async |conn| {
            let updated = counters::subtract(conn, organization_id, &taken).await?;
            if updated != taken.len() {
                return Err(AppError::internal(anyhow::anyhow!(
                    "{updated} of {} counter rows could give up usage received since {start}",
                    taken.len()
                )));
            }
            counters::add(conn, organization_id, &added, &[]).await?;
            Ok(())
        })
        .await;
    if let Err(error) = moving {
        tracing::error!(organization = %organization_id, %start, error = ?error, "usage counters not split");
    }
    Ok(())
}
