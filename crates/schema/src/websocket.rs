//! GraphQL subscriptions over websockets: our own driver for the
//! `graphql-transport-ws` protocol and the legacy `graphql-ws`
//! (subscriptions-transport-ws) one.
//!
//! async-graphql's stock driver closes with 1002 where clients expect
//! 4403, cannot be closed by the server, and reports refused subscriptions
//! as `next` instead of `error`; this loop does what the protocols and the
//! contract say, and adds keep-alive pings, a per-connection subscription
//! cap and a send timeout that drops clients too slow to read. A
//! connection ends (4403) when its credentials stop working: revoked or
//! ended (announced; see [`tollgate_platform::announcements`]) or expired (a
//! timer set at connection_init).

use std::{
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use async_graphql::{Request as GqlRequest, Response as GqlResponse};
use axum::{
    extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use futures_util::{
    SinkExt, Stream, StreamExt,
    stream::{self, BoxStream, SplitSink, SplitStream},
};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::{sync::broadcast, time::Sleep};
use tokio_stream::StreamMap;

use crate::{
    HttpState,
    api::usage::live_usage::{Handoff, LeanItem},
    loaders::Loaders,
    request::{refuse_forged_uploads, request_meta, server_error, with_request_data},
};
use tollgate_auth::{
    AppState,
    principal::{self, Principal},
};
use tollgate_core::error::{AppError, ErrorCode};
use tollgate_core::request::RequestMeta;
use tollgate_services::usage::live::{self, AccessChange, ConnectionSlot, MAX_CONNECTIONS_PER_PRINCIPAL, Verdict};

/// How long a client has to send `connection_init`.
const INIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Interval of server keep-alive messages.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);
/// A client that cannot take a message within this time is dropped rather
/// than buffered for without bound.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// Operations one connection may run at once.
pub const MAX_SUBSCRIPTIONS_PER_CONNECTION: usize = 50;
/// How long the closing handshake may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Close reasons must fit a control frame (125 bytes with the code).
const MAX_CLOSE_REASON: usize = 123;
/// Largest client message.
const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// The read buffer each connection allocates up front and keeps
/// (tungstenite's default is 128 KiB): clients send a few small messages
/// (a subscribe is a few hundred bytes), and a larger one still arrives
/// whole, the buffer growing to its length once its header is read. Ten
/// thousand dashboards open at once cost 10 MB here instead of 1.3 GB (4
/// KiB, the size before, cost 40 MB: about 3.8 KB of each subscriber in
/// the reads benchmark).
const READ_BUFFER_BYTES: usize = 1024;
/// What a connection buffers before writing (default 128 KiB): nothing,
/// every message is written (and flushed) as it is sent.
const WRITE_BUFFER_BYTES: usize = 0;
/// Credentials expiring later than this are not timed (a timer that far
/// out would outlive any connection).
const MAX_TIMED_EXPIRY: Duration = Duration::from_secs(400 * 24 * 3600);

/// Close codes of graphql-transport-ws (also used for the legacy protocol).
mod close_code {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const BAD_REQUEST: u16 = 4400;
    pub const UNAUTHORIZED: u16 = 4401;
    pub const FORBIDDEN: u16 = 4403;
    pub const INIT_TIMEOUT: u16 = 4408;
    pub const DUPLICATE_ID: u16 = 4409;
    pub const TOO_MANY_INITS: u16 = 4429;
    /// Not in the protocol: the caller holds too many connections.
    pub const TOO_MANY_CONNECTIONS: u16 = 4430;
}

/// The two subprotocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `graphql-transport-ws` (the graphql-ws library).
    TransportWs,
    /// `graphql-ws` (the legacy subscriptions-transport-ws library).
    Legacy,
}

impl Protocol {
    fn from_header(value: &str) -> Option<Self> {
        match value {
            "graphql-transport-ws" => Some(Self::TransportWs),
            "graphql-ws" => Some(Self::Legacy),
            _ => None,
        }
    }
}

/// Completes the upgrade, choosing one of our subprotocols.
pub fn accept(http: HttpState, peer: SocketAddr, headers: &HeaderMap, upgrade: WebSocketUpgrade) -> Response {
    let upgrade = upgrade
        .protocols(["graphql-transport-ws", "graphql-ws"])
        .max_message_size(MAX_MESSAGE_BYTES)
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES);
    let Some(protocol) = upgrade
        .selected_protocol()
        .and_then(|v| v.to_str().ok())
        .and_then(Protocol::from_header)
    else {
        return (
            StatusCode::BAD_REQUEST,
            "Sec-WebSocket-Protocol must offer graphql-transport-ws or graphql-ws",
        )
            .into_response();
    };
    let meta = request_meta(&http.app, peer, headers);
    let tasks = http.app.tasks().clone();
    upgrade.on_upgrade(move |socket| {
        // Split before the connection's future is made, which therefore
        // keeps two handles instead of room for the whole socket (as its
        // argument) for as long as the socket lives.
        let (sink, incoming) = socket.split();
        let connection = SocketConnection::new(http, protocol, meta).run(sink, incoming);
        tasks.track_future(tollgate_db::hold::scoped(connection))
    })
}

/// A message from the client, in either protocol.
#[derive(Debug, Deserialize)]
struct ClientMessage {
    #[serde(rename = "type")]
    kind: String,
    id: Option<String>,
    payload: Option<Value>,
}

/// What the loop does after handling a client message.
enum Flow {
    Continue,
    Close(u16, String),
}

/// One subscription's responses, ending with `None` so completion is seen.
type OperationStream = BoxStream<'static, Option<OperationItem>>;

/// One response of an operation. (An item lives only on its way from the
/// stream to the socket, so its size costs nothing kept.)
#[allow(clippy::large_enum_variant)]
enum OperationItem {
    /// As the executor gave it.
    Response(GqlResponse),
    /// Written already (`{"data":…}`), shared with other subscribers.
    Written(Arc<String>),
}

impl From<LeanItem> for OperationItem {
    fn from(item: LeanItem) -> Self {
        match item {
            LeanItem::Answer(answer) => Self::Written(answer),
            LeanItem::Refusal(error) => Self::Response(GqlResponse::from_errors(vec![error])),
        }
    }
}

/// An operation's execution until its `usageUpdated` resolver hands over a
/// subscription that needs no executor (see
/// [`crate::api::usage::live_usage::LeanSubscription`]); then that
/// subscription alone, the execution dropped with everything it held.
struct HandOver {
    execution: Option<BoxStream<'static, GqlResponse>>,
    handoff: Handoff,
    lean: Option<BoxStream<'static, LeanItem>>,
}

impl Stream for HandOver {
    type Item = OperationItem;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<OperationItem>> {
        let this = self.get_mut();
        if let Some(lean) = &mut this.lean {
            return lean.poll_next_unpin(cx).map(|item| item.map(OperationItem::from));
        }
        let Some(execution) = &mut this.execution else {
            return Poll::Ready(None);
        };
        let polled = execution.poll_next_unpin(cx);
        // The resolver runs on the execution's first poll, and the
        // execution then waits for good.
        if polled.is_pending()
            && let Some(subscription) = this.handoff.take()
        {
            this.execution = None;
            let lean = this.lean.insert(subscription.into_stream());
            return lean.poll_next_unpin(cx).map(|item| item.map(OperationItem::from));
        }
        polled.map(|response| response.map(OperationItem::Response))
    }
}

/// One websocket connection: its protocol, credentials and running
/// operations. (Not a Relay connection: those are
/// [`crate::api::connection`].)
struct SocketConnection {
    http: HttpState,
    protocol: Protocol,
    meta: RequestMeta,
    principal: Option<Principal>,
    operations: StreamMap<String, OperationStream>,
    /// Access changes heard since before the credentials were checked, so
    /// none that happened after the check is missed.
    access_changes: Option<broadcast::Receiver<AccessChange>>,
    /// One of the caller's connection slots, released on close.
    _slot: Option<ConnectionSlot>,
    /// Fires when the credentials expire (access token, session, key).
    expiry: Option<Pin<Box<Sleep>>>,
}

impl SocketConnection {
    fn new(http: HttpState, protocol: Protocol, meta: RequestMeta) -> Self {
        Self {
            http,
            protocol,
            meta,
            principal: None,
            operations: StreamMap::new(),
            access_changes: None,
            _slot: None,
            expiry: None,
        }
    }

    fn app(&self) -> &AppState {
        &self.http.app
    }

    async fn run(mut self, mut sink: SplitSink<WebSocket, Message>, mut incoming: SplitStream<WebSocket>) {
        let _open = self.app().metrics().websocket_opened();
        let shutdown = self.app().shutdown_signal().clone();
        let init_deadline = tokio::time::sleep(INIT_TIMEOUT);
        tokio::pin!(init_deadline);
        let mut keepalive =
            tokio::time::interval_at(tokio::time::Instant::now() + KEEPALIVE_INTERVAL, KEEPALIVE_INTERVAL);

        let close = loop {
            let outgoing: Vec<Outgoing> = tokio::select! {
                () = shutdown.cancelled() => break Some((close_code::GOING_AWAY, "server shutting down".to_owned())),
                () = &mut init_deadline, if self.principal.is_none() => {
                    break Some((close_code::INIT_TIMEOUT, "Connection initialisation timeout".to_owned()));
                }
                _ = keepalive.tick(), if self.principal.is_some() => vec![self.keepalive_message().into()],
                message = incoming.next() => match message {
                    Some(Ok(Message::Text(text))) => {
                        let mut replies = Vec::new();
                        // Boxed, as is the access check below: the
                        // connection's future lives as long as the socket
                        // and would otherwise reserve room for handling a
                        // message (subscribe, authenticate) all that time.
                        // 10,000 idle subscribers: 424 -> 351 MB.
                        match Box::pin(self.handle(text.as_str(), &mut replies)).await {
                            Flow::Continue => replies.into_iter().map(Outgoing::from).collect(),
                            Flow::Close(code, reason) => {
                                let replies = replies.into_iter().map(Outgoing::from).collect();
                                if send_all(&mut sink, replies).await.is_err() {
                                    break None;
                                }
                                break Some((code, reason));
                            }
                        }
                    }
                    Some(Ok(Message::Binary(_))) => break Some((close_code::BAD_REQUEST, "binary messages are not supported".to_owned())),
                    // Control frames are answered by the websocket layer.
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => Vec::new(),
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break None,
                },
                Some((id, item)) = self.operations.next(), if !self.operations.is_empty() => {
                    self.operation_output(id, item)
                }
                () = expired(&mut self.expiry), if self.expiry.is_some() => {
                    break Some((close_code::FORBIDDEN, "Forbidden: the credentials expired".to_owned()));
                }
                change = next_change(&mut self.access_changes), if self.access_changes.is_some() => {
                    match Box::pin(self.access_changed(change)).await {
                        Flow::Continue => Vec::new(),
                        Flow::Close(code, reason) => break Some((code, reason)),
                    }
                }
            };
            if send_all(&mut sink, outgoing).await.is_err() {
                break None;
            }
        };
        if let Some((code, reason)) = close {
            let frame = CloseFrame {
                code,
                reason: Utf8Bytes::from(close_reason(reason)),
            };
            let _ = tokio::time::timeout(SEND_TIMEOUT, sink.send(Message::Close(Some(frame)))).await;
        }
        // Completes the closing handshake either way: flushes the reply to a
        // client's Close, and reads until the client answers ours, so the
        // close code is seen instead of a reset.
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
            let _ = sink.close().await;
            while let Some(Ok(_)) = incoming.next().await {}
        })
        .await;
    }

    /// Closes the connection when its credentials stopped working (session
    /// ended, key revoked, key's creator gone); subscriptions that only
    /// lost one organization end by themselves.
    async fn access_changed(&mut self, change: Option<AccessChange>) -> Flow {
        let Some(principal) = &self.principal else {
            return Flow::Continue;
        };
        let verdict = match &change {
            Some(change) => live::verdict(principal, change),
            // Fell behind the hub: some change may have been missed.
            None => Verdict::Recheck,
        };
        let ended = match verdict {
            Verdict::Unaffected => false,
            Verdict::Ended => true,
            // A database failure keeps the connection: the next change or
            // the next subscribe checks again.
            Verdict::Recheck => matches!(live::still_valid(self.app(), principal).await, Ok(false)),
        };
        if ended {
            Flow::Close(
                close_code::FORBIDDEN,
                "Forbidden: the credentials stopped working".to_owned(),
            )
        } else {
            Flow::Continue
        }
    }

    /// A timer that fires at `at` by the app's clock; None when it lies
    /// too far ahead to matter.
    fn timer_until(&self, at: DateTime<Utc>) -> Option<Pin<Box<Sleep>>> {
        let left = (at - self.app().now()).to_std().unwrap_or(Duration::ZERO);
        (left <= MAX_TIMED_EXPIRY).then(|| Box::pin(tokio::time::sleep(left)))
    }

    fn keepalive_message(&self) -> Value {
        match self.protocol {
            Protocol::TransportWs => json!({ "type": "ping" }),
            Protocol::Legacy => json!({ "type": "ka" }),
        }
    }

    /// Handles one client message, queueing replies.
    async fn handle(&mut self, text: &str, replies: &mut Vec<Value>) -> Flow {
        let Ok(message) = serde_json::from_str::<ClientMessage>(text) else {
            return Flow::Close(close_code::BAD_REQUEST, "Invalid message received".to_owned());
        };
        match (self.protocol, message.kind.as_str()) {
            (_, "connection_init") => self.init(message.payload, replies).await,
            (Protocol::TransportWs, "ping") => {
                replies.push(match message.payload {
                    Some(payload) => json!({ "type": "pong", "payload": payload }),
                    None => json!({ "type": "pong" }),
                });
                Flow::Continue
            }
            (Protocol::TransportWs, "pong") => Flow::Continue,
            (Protocol::TransportWs, "subscribe") | (Protocol::Legacy, "start") => {
                self.subscribe(message.id, message.payload, replies)
            }
            (Protocol::TransportWs, "complete") | (Protocol::Legacy, "stop") => {
                if let Some(id) = message.id
                    && self.operations.remove(&id).is_some()
                    && self.protocol == Protocol::Legacy
                {
                    replies.push(json!({ "type": "complete", "id": id }));
                }
                Flow::Continue
            }
            (Protocol::Legacy, "connection_terminate") => Flow::Close(close_code::NORMAL, String::new()),
            (_, other) => Flow::Close(close_code::BAD_REQUEST, format!("Invalid message type {other:?}")),
        }
    }

    async fn init(&mut self, payload: Option<Value>, replies: &mut Vec<Value>) -> Flow {
        if self.principal.is_some() {
            return match self.protocol {
                Protocol::TransportWs => Flow::Close(
                    close_code::TOO_MANY_INITS,
                    "Too many initialisation requests".to_owned(),
                ),
                Protocol::Legacy => Flow::Continue,
            };
        }
        let authorization = payload.as_ref().and_then(authorization_from_payload);
        let access_changes = self.http.usage_hub.access_changes();
        match principal::resolve_until(self.app(), authorization.as_deref(), self.meta.client_ip).await {
            Ok((principal, expires_at)) => {
                if let Some(owner) = connection_owner(&principal) {
                    let Some(slot) = self.http.usage_hub.open_connection(owner) else {
                        return Flow::Close(
                            close_code::TOO_MANY_CONNECTIONS,
                            format!("at most {MAX_CONNECTIONS_PER_PRINCIPAL} connections per account or key"),
                        );
                    };
                    self._slot = Some(slot);
                }
                self.access_changes = Some(access_changes);
                self.expiry = expires_at.and_then(|at| self.timer_until(at));
                self.principal = Some(principal);
                replies.push(json!({ "type": "connection_ack" }));
                if self.protocol == Protocol::Legacy {
                    replies.push(json!({ "type": "ka" }));
                }
                Flow::Continue
            }
            Err(error) => {
                if self.protocol == Protocol::Legacy {
                    replies.push(json!({ "type": "connection_error", "payload": server_error(error) }));
                }
                Flow::Close(close_code::FORBIDDEN, "Forbidden".to_owned())
            }
        }
    }

    fn subscribe(&mut self, id: Option<String>, payload: Option<Value>, replies: &mut Vec<Value>) -> Flow {
        let Some(principal) = self.principal.clone() else {
            return Flow::Close(close_code::UNAUTHORIZED, "Unauthorized".to_owned());
        };
        let Some(id) = id.filter(|id| !id.is_empty()) else {
            return Flow::Close(close_code::BAD_REQUEST, "an operation needs an id".to_owned());
        };
        if self.operations.contains_key(&id) {
            return match self.protocol {
                Protocol::TransportWs => {
                    Flow::Close(close_code::DUPLICATE_ID, format!("Subscriber for {id} already exists"))
                }
                Protocol::Legacy => {
                    replies.push(self.error_message(&id, AppError::conflict("an operation with this id is running")));
                    Flow::Continue
                }
            };
        }
        if self.operations.len() >= MAX_SUBSCRIPTIONS_PER_CONNECTION {
            let error = AppError::client(
                ErrorCode::Forbidden,
                format!("at most {MAX_SUBSCRIPTIONS_PER_CONNECTION} operations may run on one connection"),
            );
            replies.push(self.error_message(&id, error));
            return Flow::Continue;
        }
        let request = match payload.map(serde_json::from_value::<GqlRequest>) {
            Some(Ok(request)) => request,
            _ => {
                let error = AppError::client(ErrorCode::GraphqlParseFailed, "the payload is not a GraphQL request");
                replies.push(self.error_message(&id, error));
                return Flow::Continue;
            }
        };
        if let Err(error) = refuse_forged_uploads(&request) {
            replies.push(self.error_message(&id, error));
            return Flow::Continue;
        }
        // A subscription field's own resolver (access checks, before any
        // update) runs outside an execution, so it gets loaders here; each
        // update it sends gets fresh ones.
        let handoff = Handoff::default();
        let request = with_request_data(self.app(), request, principal, self.meta.clone())
            .data(Loaders::new(self.app().pool(), self.app().now()))
            .data(self.http.usage_hub.clone())
            .data(handoff.clone());
        let execution = HandOver {
            execution: Some(self.http.schema.execute_stream(request)),
            handoff,
            lean: None,
        };
        let stream = execution.map(Some).chain(stream::once(async { None }));
        // Operations are polled together by this connection's task: each
        // takes connections in a scope of its own.
        self.operations
            .insert(id, Box::pin(tollgate_db::hold::ScopedStream::new(stream.boxed())));
        Flow::Continue
    }

    /// Turns an operation's next item into protocol messages. An operation
    /// refused before producing data (validation, authorization) gets one
    /// `error` message and ends; otherwise `next` (`data`), then `complete`.
    fn operation_output(&mut self, id: String, item: Option<OperationItem>) -> Vec<Outgoing> {
        let response = match item {
            Some(OperationItem::Response(response)) => response,
            Some(OperationItem::Written(payload)) => return vec![self.written_message(&id, &payload)],
            None => {
                // Removed now, not on the next poll, so the id is free at once.
                self.operations.remove(&id);
                return vec![json!({ "type": "complete", "id": id }).into()];
            }
        };
        if is_refusal(&response) {
            self.operations.remove(&id);
            let payload = match self.protocol {
                Protocol::TransportWs => json!(response.errors),
                Protocol::Legacy => json!(response.errors.first()),
            };
            return vec![json!({ "type": "error", "id": id, "payload": payload }).into()];
        }
        let kind = self.data_kind();
        // Written straight from the response: no JSON tree in between.
        let message = Envelope {
            kind,
            id: &id,
            payload: &response,
        };
        match serde_json::to_string(&message) {
            Ok(text) => vec![Outgoing::Text(text)],
            Err(e) => {
                tracing::error!(error = %e, "a response could not be written");
                vec![self.error_message(&id, AppError::internal(anyhow::anyhow!(e))).into()]
            }
        }
    }

    /// A `next` (or `data`) message around a response written already, as
    /// [`Envelope`] writes one.
    fn written_message(&self, id: &str, payload: &str) -> Outgoing {
        let kind = self.data_kind();
        let id = Value::from(id);
        Outgoing::Text(format!(r#"{{"type":"{kind}","id":{id},"payload":{payload}}}"#))
    }

    fn data_kind(&self) -> &'static str {
        match self.protocol {
            Protocol::TransportWs => "next",
            Protocol::Legacy => "data",
        }
    }

    fn error_message(&self, id: &str, error: AppError) -> Value {
        let error = server_error(error);
        let payload = match self.protocol {
            Protocol::TransportWs => json!([error]),
            Protocol::Legacy => json!(error),
        };
        json!({ "type": "error", "id": id, "payload": payload })
    }
}

/// Whether a response refuses the operation: no data, and every error is
/// a request error (no path) or the root field's own (a subscription the
/// caller may not make). A null that reached `data` from a failed field
/// deeper down is an execution result like any other: `next`, and a
/// subscription goes on.
fn is_refusal(response: &GqlResponse) -> bool {
    response.data == async_graphql::Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|error| error.path.len() <= 1)
}

/// Completes when the credentials expire; never without a timer.
async fn expired(expiry: &mut Option<Pin<Box<Sleep>>>) {
    match expiry {
        Some(timer) => timer.as_mut().await,
        None => std::future::pending().await,
    }
}

/// The next access change; None when this connection fell behind.
async fn next_change(changes: &mut Option<broadcast::Receiver<AccessChange>>) -> Option<AccessChange> {
    let changes = changes.as_mut()?;
    loop {
        match changes.recv().await {
            Ok(change) => return Some(change),
            Err(broadcast::error::RecvError::Lagged(_)) => return None,
            // The hub lives as long as the app: wait for shutdown instead.
            Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
        }
    }
}

/// Whose connection slots a connection takes: the user's or the key's.
fn connection_owner(principal: &Principal) -> Option<uuid::Uuid> {
    match principal {
        Principal::Anonymous => None,
        Principal::User { user_id, .. } => Some(*user_id),
        Principal::ApiKey(key) => Some(key.key_id),
    }
}

/// Cuts a close reason to what a close frame can carry, on a character
/// boundary (reasons may quote client input).
fn close_reason(mut reason: String) -> String {
    if reason.len() > MAX_CLOSE_REASON {
        let mut end = MAX_CLOSE_REASON;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
    }
    reason
}

/// `Authorization` (or `authorization`) from a connection_init payload,
/// with or without the `Bearer ` prefix.
fn authorization_from_payload(payload: &Value) -> Option<String> {
    let object = payload.as_object()?;
    let value = object
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case("authorization"))
        .map(|(_, value)| value)?;
    // A present but non-string value is a bad credential, not anonymity.
    Some(value.as_str().unwrap_or_default().to_owned())
}

/// A protocol message with a payload, as it is written.
#[derive(serde::Serialize)]
struct Envelope<'a, P> {
    #[serde(rename = "type")]
    kind: &'a str,
    id: &'a str,
    payload: P,
}

/// A message to send: built as JSON, or written already.
enum Outgoing {
    Json(Value),
    Text(String),
}

impl From<Value> for Outgoing {
    fn from(value: Value) -> Self {
        Outgoing::Json(value)
    }
}

async fn send_all<S>(sink: &mut S, messages: Vec<Outgoing>) -> Result<(), ()>
where
    S: futures_util::Sink<Message> + Unpin,
{
    for message in messages {
        let text = match message {
            Outgoing::Json(value) => value.to_string(),
            Outgoing::Text(text) => text,
        };
        let text = Message::Text(Utf8Bytes::from(text));
        match tokio::time::timeout(SEND_TIMEOUT, sink.send(text)).await {
            Ok(Ok(())) => {}
            _ => return Err(()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reasons_fit_a_control_frame() {
        assert_eq!(close_reason("é".repeat(100)).len(), 122);
        assert_eq!(close_reason("ok".to_owned()), "ok");
    }

    #[test]
    fn authorization_is_found_in_either_case() {
        assert_eq!(
            authorization_from_payload(&json!({ "Authorization": "Bearer x" })).as_deref(),
            Some("Bearer x")
        );
        assert_eq!(
            authorization_from_payload(&json!({ "authorization": "x" })).as_deref(),
            Some("x")
        );
        assert_eq!(authorization_from_payload(&json!({})), None);
        assert_eq!(authorization_from_payload(&json!("x")), None);
    }
}
