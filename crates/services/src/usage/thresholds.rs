//! 50, 80 and 100 percent of an organization's token limit: announced once
//! per token window, to subscribers and by email to OWNERs and ADMINs.
//!
//! Whether a recording crossed a threshold is decided from its counter row,
//! which the recording transaction holds locked; the `usage_thresholds` row
//! (ON CONFLICT DO NOTHING) makes the announcement happen once even across
//! a reset's races: only the transaction that inserted it announces.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use tollgate_auth::roles::OrgRole;
use tollgate_db::schema::{memberships, organizations, usage_thresholds, users};
use tollgate_platform::mail;
use tollgate_platform::mail::templates;

/// The announced percentages, lowest first.
pub const THRESHOLDS: [i32; 3] = [50, 80, 100];

/// The thresholds that usage going from `before` to `after` tokens crossed:
/// below `t` percent of `limit` before, at or above it after. None without
/// a positive limit.
pub fn crossed(before: i64, after: i64, limit: Option<i64>) -> Vec<i32> {
    let Some(limit) = limit.filter(|l| *l > 0) else {
        return Vec::new();
    };
    let at_or_above = |tokens: i64, t: i32| i128::from(tokens) * 100 >= i128::from(limit) * i128::from(t);
    THRESHOLDS
        .into_iter()
        .filter(|t| !at_or_above(before, *t) && at_or_above(after, *t))
        .collect()
}

/// Records `thresholds` as announced for the window and returns those this
/// transaction was the first to record.
pub async fn claim(
    conn: &mut AsyncPgConnection,
    organization_id: Uuid,
    window_start: DateTime<Utc>,
    thresholds: &[i32],
    now: DateTime<Utc>,
) -> QueryResult<Vec<i32>> {
    if thresholds.is_empty() {
        return Ok(Vec::new());
    }
    let values: Vec<_> = thresholds
        .iter()
        .filter_map(|t| i16::try_from(*t).ok())
        .map(|t| {
            (
                usage_thresholds::organization_id.eq(organization_id),
                usage_thresholds::window_start.eq(window_start),
                usage_thresholds::threshold.eq(t),
                usage_thresholds::crossed_at.eq(now),
            )
        })
        .collect();
    let claimed: Vec<i16> = diesel::insert_into(usage_thresholds::table)
        .values(values)
        .on_conflict_do_nothing()
        .returning(usage_thresholds::threshold)
        .get_results(conn)
        .await?;
    Ok(claimed.into_iter().map(i32::from).collect())
}

/// Queues the threshold email to every OWNER and ADMIN of the organization
/// (in the caller's transaction); returns how many were queued.
pub async fn email_managers(
    conn: &mut AsyncPgConnection,
    organization_id: Uuid,
    threshold: i32,
    tokens_used: i64,
    token_limit: i64,
    now: DateTime<Utc>,
) -> QueryResult<usize> {
    let name: String = organizations::table
        .find(organization_id)
        .select(organizations::name)
        .first(conn)
        .await?;
    let recipients: Vec<String> = memberships::table
        .inner_join(users::table)
        .filter(memberships::organization_id.eq(organization_id))
        .filter(memberships::role.eq_any([OrgRole::Owner, OrgRole::Admin]))
        .filter(users::deleted_at.is_null())
        .select(users::email)
        .load(conn)
        .await?;
    for to in &recipients {
        let email = templates::usage_threshold(to, &name, threshold, tokens_used, token_limit);
        mail::enqueue(conn, &email, now).await?;
    }
    Ok(recipients.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_threshold_is_crossed_from_below_to_at_or_above() {
        assert_eq!(crossed(0, 49, Some(100)), Vec::<i32>::new());
        assert_eq!(crossed(0, 50, Some(100)), vec![50]);
        assert_eq!(crossed(50, 79, Some(100)), Vec::<i32>::new());
        assert_eq!(crossed(49, 100, Some(100)), vec![50, 80, 100]);
        assert_eq!(crossed(100, 500, Some(100)), Vec::<i32>::new());
        // 50 % of 3 is 1.5: 1 is below, 2 is above.
        assert_eq!(crossed(1, 2, Some(3)), vec![50]);
        assert_eq!(crossed(0, 10, None), Vec::<i32>::new());
        assert_eq!(crossed(0, 10, Some(0)), Vec::<i32>::new());
    }
}
