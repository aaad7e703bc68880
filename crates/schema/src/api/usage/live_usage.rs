//! Live usage: the GraphQL subscription root, whose `usageUpdated` field
//! streams an organization's usage as it is recorded, on any instance,
//! until the subscriber loses access. (Not a billing subscription: those
//! are [`crate::api::billing`]'s.)

use std::{
    borrow::Cow,
    fmt::Write,
    sync::{Arc, LazyLock, Mutex},
};

use async_graphql::{
    Context, ContextSelectionSet, EmptyMutation, EmptySubscription, ID, Name, Object, OutputType, PathSegment, Pos,
    Positioned, Request, Schema, ServerError, ServerResult, Subscription, Value,
    parser::types::{Field, Selection, SelectionSet},
    registry::Registry,
};
use futures_util::{
    Stream, StreamExt,
    future::Either,
    stream::{self, BoxStream},
};
use tokio::sync::broadcast::{self, error::RecvError};
use uuid::Uuid;

use crate::{
    access,
    api::usage::query::UsageUpdate,
    context::ContextExt,
    error::{ApiError, ApiResult},
    limits::answer_too_large,
    request::server_error,
};
use tollgate_auth::{AppState, Principal};
use tollgate_core::error::{AppError, ErrorCode};
use tollgate_services::usage::live::{self, AccessChange, LiveUsage, UsageHub};

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
    ) -> Result<impl Stream<Item = ApiResult<LiveUpdate>> + use<>, ApiError> {
        let organization_id = Uuid::parse_str(&organization_id).map_err(|_| AppError::not_found("organization"))?;
        let app = ctx.app()?.clone();
        let hub = ctx.data::<UsageHub>()?.clone();
        // Access changes are heard from before the check, so none that
        // happens right after it is missed. The organization's channel is
        // made only after it: refused callers leave nothing behind.
        let changes = hub.access_changes();
        access::authorize(ctx, organization_id, "Subscription.usageUpdated").await?;
        let lean = ctx
            .data_opt::<Handoff>()
            .and_then(|handoff| Some((handoff, LeanAnswer::for_field(ctx, &app)?)));
        let feed = Feed {
            updates: hub.follow_organization(organization_id),
            hub,
            changes,
            principal: ctx.principal()?.clone(),
            organization_id,
            app,
            finished: false,
        };
        if let Some((handoff, answer)) = lean {
            handoff.offer(LeanSubscription { feed, answer });
            // The connection drops this operation's execution for the
            // subscription it was handed.
            return Ok(Either::Left(stream::pending()));
        }
        Ok(Either::Right(stream::unfold(feed, Feed::next)))
    }
}

/// Where a websocket connection takes over a subscription the executor
/// need not carry (see [`LeanSubscription`]): put in the request's data
/// by the connection, filled by the `usageUpdated` resolver.
#[derive(Clone, Default)]
pub struct Handoff(Arc<Mutex<Option<LeanSubscription>>>);

impl Handoff {
    fn offer(&self, subscription: LeanSubscription) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(subscription);
    }

    /// The subscription handed over, once.
    pub fn take(&self) -> Option<LeanSubscription> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// A `usageUpdated` subscription whose every event is answered from the
/// event alone ([`SHARED_FIELDS`]) and which is its
/// operation's only field. It is carried by its feed and the text of its
/// answer's shape, without the executor's state (the parsed document,
/// the request's data and loaders, the extensions: two thirds of an idle
/// subscriber's memory), and each event's answer is written once for all
/// its subscribers with the same shape instead of resolved and written for
/// each.
pub struct LeanSubscription {
    feed: Feed,
    answer: LeanAnswer,
}

/// What one event means to a lean subscriber.
pub enum LeanItem {
    /// The response to send, as JSON (`{"data":…}`).
    Answer(Arc<String>),
    /// The response that ends the subscription: the field's error, as the
    /// executor would have given it.
    Refusal(ServerError),
}

impl LeanSubscription {
    /// The subscription's answers, one per event, until it ends.
    pub fn into_stream(self) -> BoxStream<'static, LeanItem> {
        let answer = Arc::new(self.answer);
        stream::unfold(self.feed, Feed::next)
            .then(move |update| {
                let answer = answer.clone();
                async move { answer.item(update).await }
            })
            .boxed()
    }
}

/// How a lean subscription's events are answered.
struct LeanAnswer {
    /// The query that makes the answer with [`answer_schema`]: the field's
    /// response key and selection, written out. It also names the answer
    /// among the event's renderings.
    query: String,
    /// The field's response key, for its errors' path.
    key: Name,
    /// The field's position, for its errors' locations.
    pos: Pos,
    /// The largest answer sent, as the limits extension caps each event.
    max_bytes: usize,
}

impl LeanAnswer {
    /// The answer of the field being resolved, when it can be made from
    /// the event alone. Anything else stays with the executor: other root
    /// fields beside it, directives, fragments, arguments, fields that
    /// depend on who looks.
    fn for_field(ctx: &Context<'_>, app: &AppState) -> Option<Self> {
        let operation = &ctx.query_env.operation.node;
        let [only] = operation.selection_set.node.items.as_slice() else {
            return None;
        };
        let field = &ctx.item.node;
        if !matches!(only.node, Selection::Field(_)) || !operation.directives.is_empty() || !field.directives.is_empty()
        {
            return None;
        }
        let mut shape = String::new();
        shared_shape(&field.selection_set.node, "UsageUpdate", &mut shape)?;
        let key = field.response_key().node.clone();
        Some(Self {
            query: format!("{{{key}:usageUpdated {shape}}}"),
            key,
            pos: ctx.item.pos,
            max_bytes: app.config().graphql_max_response_bytes,
        })
    }

    async fn item(&self, update: ApiResult<LiveUpdate>) -> LeanItem {
        let event = match update {
            Ok(LiveUpdate(event)) => event,
            Err(error) => {
                let mut error = async_graphql::Error::from(error).into_server_error(self.pos);
                error.path = vec![PathSegment::Field(self.key.to_string())];
                return LeanItem::Refusal(error);
            }
        };
        match self.answer(&event).await {
            Ok(answer) if answer.len() <= self.max_bytes => LeanItem::Answer(answer),
            Ok(_) => LeanItem::Refusal(answer_too_large(self.max_bytes)),
            Err(error) => LeanItem::Refusal(server_error(error)),
        }
    }

    /// The event's answer to this shape: made by the first subscriber to
    /// ask, shared by the rest.
    async fn answer(&self, event: &Arc<LiveUsage>) -> Result<Arc<String>, AppError> {
        if let Some(answer) = event.rendering(&self.query) {
            return Ok(answer);
        }
        let response = answer_schema()
            .execute(Request::new(self.query.as_str()).data(event.clone()))
            .await;
        let answer = Arc::new(serde_json::to_string(&response).map_err(AppError::internal)?);
        event.keep(self.query.clone(), answer.clone());
        Ok(answer)
    }
}

/// The schema lean answers are made with: its one field answers the event
/// in the request's data with the subscription's own types, so the answer
/// is the one the executor would give.
fn answer_schema() -> &'static Schema<AnswerRoot, EmptyMutation, EmptySubscription> {
    static SCHEMA: LazyLock<Schema<AnswerRoot, EmptyMutation, EmptySubscription>> =
        LazyLock::new(|| Schema::build(AnswerRoot, EmptyMutation, EmptySubscription).finish());
    &SCHEMA
}

/// The root of [`answer_schema`].
struct AnswerRoot;

#[Object]
impl AnswerRoot {
    /// The event in the request's data, as `Subscription.usageUpdated` gives it.
    async fn usage_updated(&self, ctx: &Context<'_>) -> async_graphql::Result<UsageUpdate> {
        let event = ctx.data::<Arc<LiveUsage>>()?;
        Ok(UsageUpdate::from(event.message.clone()))
    }
}

/// One subscriber's view of the hub.
struct Feed {
    app: AppState,
    hub: UsageHub,
    principal: Principal,
    organization_id: Uuid,
    updates: broadcast::Receiver<Arc<LiveUsage>>,
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
    async fn next(mut self) -> Option<(ApiResult<LiveUpdate>, Self)> {
        if self.finished {
            return None;
        }
        loop {
            tokio::select! {
                update = self.updates.recv() => match update {
                    // Read once by the hub, shared by every subscriber.
                    Ok(event) => return Some((Ok(LiveUpdate(event)), self)),
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
                    // Boxed: an idle subscriber waits inside this future,
                    // which would otherwise reserve room for the access
                    // check's (4 KB of each subscriber's memory).
                    if self.concerns_me(change) && !Box::pin(self.may_still_watch()).await {
                        return self.finish(AppError::forbidden());
                    }
                }
            }
        }
    }

    fn finish(mut self, error: AppError) -> Option<(ApiResult<LiveUpdate>, Self)> {
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

/// One event as a subscriber receives it: the GraphQL `UsageUpdate`. The
/// executor resolves it for each subscriber it carries (their selections
/// read more than the event, or say more than [`LeanAnswer`] reads); lean
/// subscribers share one answer per shape instead.
pub struct LiveUpdate(Arc<LiveUsage>);

/// The fields read from the message alone, by type: (type, field, the
/// field's own type when it is an object).
const SHARED_FIELDS: &[(&str, &str, Option<&str>)] = &[
    ("UsageUpdate", "event", Some("UsageEvent")),
    ("UsageUpdate", "quota", Some("Quota")),
    ("UsageUpdate", "thresholdCrossed", None),
    ("UsageEvent", "id", None),
    ("UsageEvent", "model", None),
    ("UsageEvent", "promptTokens", None),
    ("UsageEvent", "cachedTokens", None),
    ("UsageEvent", "completionTokens", None),
    ("UsageEvent", "totalTokens", None),
    ("UsageEvent", "costMicroUsd", None),
    ("UsageEvent", "priced", None),
    ("UsageEvent", "requestId", None),
    ("UsageEvent", "source", None),
    ("UsageEvent", "estimated", None),
    ("UsageEvent", "provider", None),
    ("UsageEvent", "metadata", None),
    ("UsageEvent", "occurredAt", None),
    ("UsageEvent", "createdAt", None),
    ("Quota", "periodStart", None),
    ("Quota", "periodEnd", None),
    ("Quota", "tokensUsed", None),
    ("Quota", "tokenLimit", None),
    ("Quota", "remaining", None),
    ("Quota", "exceeded", None),
    ("Quota", "requestsToday", None),
    ("Quota", "dailyRequestLimit", None),
];

/// The selection written out (names, aliases, nesting) when every field
/// of it is one of [`SHARED_FIELDS`] (or `__typename`) without arguments
/// or directives; None otherwise.
fn shared_shape(set: &SelectionSet, ty: &str, shape: &mut String) -> Option<()> {
    shape.push('{');
    for selection in &set.items {
        let Selection::Field(field) = &selection.node else {
            return None;
        };
        let field = &field.node;
        if !field.arguments.is_empty() || !field.directives.is_empty() {
            return None;
        }
        let name = field.name.node.as_str();
        let child = if name == "__typename" {
            None
        } else {
            SHARED_FIELDS
                .iter()
                .find(|(parent, shared, _)| *parent == ty && *shared == name)
                .map(|(_, _, child)| *child)?
        };
        if let Some(alias) = &field.alias {
            let _ = write!(shape, "{}:", alias.node);
        }
        shape.push_str(name);
        shape.push(' ');
        if let Some(child) = child {
            shared_shape(&field.selection_set.node, child, shape)?;
        }
    }
    shape.push('}');
    Some(())
}

impl OutputType for LiveUpdate {
    fn type_name() -> Cow<'static, str> {
        UsageUpdate::type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        UsageUpdate::create_type_info(registry)
    }

    async fn resolve(&self, ctx: &ContextSelectionSet<'_>, field: &Positioned<Field>) -> ServerResult<Value> {
        let update = UsageUpdate::from(self.0.message.clone());
        OutputType::resolve(&update, ctx, field).await
    }
}
