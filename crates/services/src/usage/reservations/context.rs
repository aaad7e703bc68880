//! What a call needs to know of its organization before anything is
//! decided: windows and plan, the member's budget, the catalog's version.
//!
//! Every gateway call and authorizeUsage asks, so the calls that ask at
//! the same time share one statement (see [`crate::usage::coalesce`]): the
//! first asks at once, as it did alone; those arriving while its statement
//! runs are read together by the next. Each is read after it asked, so it
//! sees everything committed before: a budget, a plan change, a member's
//! removal.

use std::{collections::HashMap, sync::LazyLock};

use chrono::{DateTime, Utc};
use diesel::{prelude::*, sql_types::BigInt};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::{
    plans::{
        model::{self as plan_model, FREE_PLAN_KEY, PlanRow},
        subscription::SubscriptionRow,
    },
    usage::{
        coalesce::Coalescer,
        directory,
        record::Reporter,
        windows::{self, Windows},
    },
};
use tollgate_auth::AppState;
use tollgate_core::error::{AppError, AppResult};
use tollgate_db::schema::{memberships, organizations, plans, subscriptions};

/// What a reservation needs to know of the organization, read in one
/// statement before anything is decided: its windows and plan, the
/// member's budget, and the catalog's version (so the gateway checks its
/// copy of the catalog at no extra round trip).
#[derive(Debug, Clone)]
pub struct Context {
    /// The organization's windows now.
    pub windows: Windows,
    /// The plan in effect.
    pub plan: PlanRow,
    /// The member's token budget; None = none (or no longer a member).
    pub member_limit: Option<i64>,
    /// The catalog's version ([`crate::usage::directory`]).
    pub catalog_version: i64,
    /// When it was asked for.
    pub now: DateTime<Utc>,
}

/// Most calls one statement reads for.
const MAX_READ: usize = 500;

/// A call waiting for its context.
struct Asked {
    reporter: Reporter,
    now: DateTime<Utc>,
    reply: oneshot::Sender<AppResult<Context>>,
}

/// The calls waiting, per application (two apps in one process, as in
/// tests, have their own databases).
static QUEUE: LazyLock<Coalescer<usize, Asked>> = LazyLock::new(Coalescer::default);

/// Reads the [`Context`] of a call by `reporter`, with the calls asking
/// meanwhile. NOT_FOUND when there is no such organization.
pub async fn context(app: &AppState, reporter: Reporter) -> AppResult<Context> {
    let now = app.now();
    let asked = |reply| Asked { reporter, now, reply };
    QUEUE
        .ask(app, "a call's context", asked, take, |app, group| async move {
            read(&app, group).await
        })
        .await
}

/// The next group: up to [`MAX_READ`] in arrival order.
fn take(waiting: &mut Vec<Asked>) -> Vec<Asked> {
    let count = waiting.len().min(MAX_READ);
    waiting.drain(..count).collect()
}

/// Reads and answers a group.
async fn read(app: &AppState, group: Vec<Asked>) {
    let asking: Vec<(Reporter, DateTime<Utc>)> = group.iter().map(|asked| (asked.reporter, asked.now)).collect();
    let read = async {
        let mut conn = app.db().await?;
        Rows::read(&mut conn, &asking).await
    };
    match read.await {
        Ok(rows) => {
            for asked in group {
                let _ = asked.reply.send(rows.context(asked.reporter, asked.now));
            }
        }
        Err(error) => {
            for asked in group {
                let _ = asked.reply.send(Err(error.clone()));
            }
        }
    }
}

/// What one organization's row holds: subscription, plan, last reset and
/// the catalog's version.
type Organization = (SubscriptionRow, PlanRow, Option<DateTime<Utc>>, i64);

/// A row of the read: an organization's, with one member asked about (or
/// none) and the catalog's version.
type Found = (
    SubscriptionRow,
    PlanRow,
    Option<DateTime<Utc>>,
    Option<(Uuid, Option<i64>)>,
    i64,
);

/// The rows of a group's organizations and members.
struct Rows {
    organizations: HashMap<Uuid, Organization>,
    /// Members' budgets by (organization, user); absent = not a member.
    member_limits: HashMap<(Uuid, Uuid), Option<i64>>,
    /// The free plan, read when a subscribed plan has lapsed.
    free: Option<PlanRow>,
}

impl Rows {
    /// One statement for the organizations and the members asked about
    /// (two when a subscribed plan has lapsed).
    async fn read(conn: &mut AsyncPgConnection, asking: &[(Reporter, DateTime<Utc>)]) -> AppResult<Self> {
        let mut organization_ids: Vec<Uuid> = asking.iter().map(|(r, _)| r.organization_id).collect();
        organization_ids.sort_unstable();
        organization_ids.dedup();
        let mut user_ids: Vec<Uuid> = asking.iter().map(|(r, _)| r.user_id).collect();
        user_ids.sort_unstable();
        user_ids.dedup();
        let membership = memberships::table.on(memberships::organization_id
            .eq(subscriptions::organization_id)
            .and(memberships::user_id.eq_any(&user_ids)));
        let found: Vec<Found> = subscriptions::table
            .inner_join(plans::table)
            .inner_join(organizations::table)
            .left_join(membership)
            .filter(subscriptions::organization_id.eq_any(&organization_ids))
            .select((
                SubscriptionRow::as_select(),
                PlanRow::as_select(),
                organizations::usage_reset_at,
                (memberships::user_id, memberships::token_limit).nullable(),
                diesel::dsl::sql::<BigInt>(directory::VERSION_SQL),
            ))
            .load(conn)
            .await?;
        let mut rows = Self {
            organizations: HashMap::new(),
            member_limits: HashMap::new(),
            free: None,
        };
        for (subscription, plan, reset_at, member, version) in found {
            let organization_id = subscription.organization_id;
            if let Some((user_id, limit)) = member {
                rows.member_limits.insert((organization_id, user_id), limit);
            }
            rows.organizations
                .entry(organization_id)
                .or_insert((subscription, plan, reset_at, version));
        }
        let lapsed = asking.iter().any(|(reporter, now)| {
            rows.organizations
                .get(&reporter.organization_id)
                .is_some_and(|organization| !organization.0.plan_counts_at(*now))
        });
        if lapsed {
            rows.free = plan_model::find_by_key(conn, FREE_PLAN_KEY).await?;
        }
        Ok(rows)
    }

    /// The context of a call by `reporter` asked for at `now`.
    fn context(&self, reporter: Reporter, now: DateTime<Utc>) -> AppResult<Context> {
        let (subscription, plan, reset_at, version) = self
            .organizations
            .get(&reporter.organization_id)
            .ok_or_else(|| AppError::not_found("organization"))?;
        let plan = if subscription.plan_counts_at(now) {
            plan.clone()
        } else {
            self.free
                .clone()
                .ok_or_else(|| AppError::internal(anyhow::anyhow!("the free plan is missing")))?
        };
        Ok(Context {
            windows: windows::windows_of(subscription, &plan, *reset_at, now),
            plan,
            member_limit: self
                .member_limits
                .get(&(reporter.organization_id, reporter.user_id))
                .copied()
                .flatten(),
            catalog_version: *version,
            now,
        })
    }
}
