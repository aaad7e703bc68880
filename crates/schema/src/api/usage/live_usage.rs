//! Live usage: the GraphQL subscription root, whose `usageUpdated` field
//! streams an organization's usage as it is recorded, on any instance,
//! until the subscriber loses access. (Not a billing subscription: those
//! are [`crate::api::billing`]'s.)

use async_graphql::{Context, ID, Subscription};
use futures_util::{Stream, stream};
use tokio::sync::broadcast::{self, error::RecvError};
use uuid::Uuid;

use crate::{
    access,
    api::usage::query::UsageUpdate,
    context::ContextExt,
    error::{ApiError, ApiResult},
};
use tollgate_auth::{AppState, Principal};
use tollgate_core::error::{AppError, ErrorCode};
use tollgate_services::usage::{
    live::{self, AccessChange, UsageHub},
    live_message::UsageUpdateMessage,
};

/// The GraphQL `Subscription` root: every subscription field.
#[derive(Default)]
pub struct SubscriptionRoot;

#[Subscription(name = "Subscription")]
impl SubscriptionRoot {
    /// Every usage event of the organization as it is recorded, on any server instance. For members (VIEWER and above), staff, or an API key of the organization with USAGE_READ.
    async fn usage_updated(
        &self,
        ctx: &Context<'_>,
        organization_id: ID,
    ) -> Result<impl Stream<Item = ApiResult<UsageUpdate>> + use<>, ApiError> {
        let organization_id = Uuid::parse_str(&organization_id).map_err(|_| AppError::not_found("organization"))?;
        let app = ctx.app()?.clone();
        let hub = ctx.data::<UsageHub>()?.clone();
        // Access changes are heard from before the check, so none that
        // happens right after it is missed. The organization's channel is
        // made only after it: refused callers leave nothing behind.
        let changes = hub.access_changes();
        access::authorize(ctx, organization_id, "Subscription.usageUpdated").await?;
        let feed = Feed {
            updates: hub.follow_organization(organization_id),
            hub,
            changes,
            principal: ctx.principal()?.clone(),
            organization_id,
            app,
            finished: false,
        };
        Ok(stream::unfold(feed, Feed::next))
    }
}

/// One subscriber's view of the hub.
struct Feed {
    app: AppState,
    hub: UsageHub,
    principal: Principal,
    organization_id: Uuid,
    updates: broadcast::Receiver<std::sync::Arc<str>>,
    changes: broadcast::Receiver<AccessChange>,
    finished: bool,
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.hub.release_organization(self.organization_id);
    }
}

impl Feed {
    /// The next update, or a last error and the end.
    async fn next(mut self) -> Option<(ApiResult<UsageUpdate>, Self)> {
        if self.finished {
            return None;
        }
        loop {
            tokio::select! {
                update = self.updates.recv() => match update {
                    Ok(payload) => match UsageUpdateMessage::from_json(&payload) {
                        Ok(message) => return Some((Ok(UsageUpdate::from(message)), self)),
                        Err(e) => tracing::warn!(error = ?e, "unreadable usage update skipped"),
                    },
                    Err(RecvError::Lagged(missed)) => {
                        tracing::info!(missed, "usage subscriber too slow; dropped");
                        return self.finish(AppError::client(
                            ErrorCode::ServiceUnavailable,
                            "the subscriber fell behind and was dropped; subscribe again",
                        ));
                    }
                    Err(RecvError::Closed) => return None,
                },
                change = self.changes.recv() => {
                    if self.concerns_me(change) && !self.may_still_watch().await {
                        return self.finish(AppError::forbidden());
                    }
                }
            }
        }
    }

    fn finish(mut self, error: AppError) -> Option<(ApiResult<UsageUpdate>, Self)> {
        self.finished = true;
        Some((Err(error.into()), self))
    }

    /// Whether the change may have taken this subscriber's access to the
    /// organization. Ended credentials close the whole connection
    /// elsewhere; here it is about membership and platform role.
    fn concerns_me(&self, change: Result<AccessChange, RecvError>) -> bool {
        match change {
            Ok(AccessChange::MembershipEnded(ended)) => {
                ended.organization_id == self.organization_id && self.principal.user_id() == Some(ended.user_id)
            }
            // Staff may watch organizations they are not in; a demotion
            // may end that.
            Ok(AccessChange::RoleChanged(changed)) => self.principal.user_id() == Some(changed.user_id),
            Ok(AccessChange::Unknown) | Err(RecvError::Lagged(_)) => true,
            Ok(_) | Err(RecvError::Closed) => false,
        }
    }

    /// Asked of the database: a failure keeps the subscription (the next
    /// change asks again) rather than cutting off every subscriber while
    /// the database is briefly away.
    async fn may_still_watch(&self) -> bool {
        live::may_watch(&self.app, &self.principal, self.organization_id)
            .await
            .unwrap_or(true)
    }
}
