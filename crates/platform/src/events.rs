//! The event bus between instances: Redis pub/sub when REDIS_URL is set,
//! PostgreSQL LISTEN/NOTIFY otherwise.
//!
//! Every instance keeps one subscriber connection and fans messages out to
//! local listeners through a broadcast channel, and one publishing
//! connection of its own (never one of the request pool's: a request that
//! publishes while it holds a pooled connection must not wait for a
//! second one). [`EventBus::publish`] only queues the message; a task
//! sends what has queued in batches, so publishing never waits on the
//! network. Whenever that connection is
//! (re)established, listeners get [`BusMessage::Resync`]: anything that
//! happened while it was down was missed, so caches must start afresh.
//! One shared channel (rather than one per topic) keeps a single
//! subscription per instance whatever the number of topics or tenants.

use std::{
    borrow::Cow,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use diesel::sql_types::{Array, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures_util::StreamExt;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use tollgate_core::error::{AppError, AppResult};

/// The PostgreSQL NOTIFY channel (notifications are scoped to one database).
const PG_CHANNEL: &str = "tollgate_events";
/// Messages a slow local listener may fall behind before it must resync.
const LOCAL_CAPACITY: usize = 4096;
/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Messages queued for publishing before `publish` refuses more: a bus
/// that cannot keep up loses live updates, never blocks requests.
const OUTGOING_CAPACITY: usize = 16_384;
/// Messages sent in one statement or pipeline.
const MAX_BATCH: usize = 256;
/// How long one batch may take (connecting included) before it is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// What local listeners receive.
#[derive(Debug, Clone)]
pub enum BusMessage {
    /// A published event.
    Event {
        /// What it is about, e.g. `session.revoked`.
        topic: Arc<str>,
        /// Topic-specific content (JSON by convention).
        payload: Arc<str>,
    },
    /// The subscription was (re)established: state derived from earlier
    /// events may be stale.
    Resync,
    /// The subscription was lost: until the next `Resync`, events may be
    /// missed, so nothing derived from them can be trusted.
    Disconnected,
}

/// The wire form of an event. Owned strings, because a JSON payload is
/// escaped inside the envelope and cannot be borrowed from it.
#[derive(Serialize, Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "t")]
    topic: Cow<'a, str>,
    #[serde(rename = "p")]
    payload: Cow<'a, str>,
}

/// Where the subscriber listens.
enum Backend {
    Redis { client: redis::Client, channel: String },
    Postgres { url: SecretString },
}

/// Where the publisher sends.
enum Sink {
    Redis {
        publisher: redis::aio::ConnectionManager,
        channel: String,
    },
    Postgres {
        url: SecretString,
        /// Opened on first use, and again after a failure.
        conn: Option<Box<AsyncPgConnection>>,
    },
}

/// Publishes to and receives from every instance.
#[derive(Clone)]
pub struct EventBus {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    local: broadcast::Sender<BusMessage>,
    /// Whether the subscriber connection is up right now.
    connected: AtomicBool,
    /// Messages waiting for the publisher task.
    outgoing: mpsc::Sender<String>,
}

/// Where the bus runs.
pub enum BusConfig {
    /// Redis pub/sub on `{prefix}events`.
    Redis {
        /// Client for the subscriber connection.
        client: redis::Client,
        /// Connection for publishing.
        publisher: redis::aio::ConnectionManager,
        /// Key prefix of this deployment.
        prefix: String,
    },
    /// PostgreSQL LISTEN/NOTIFY.
    Postgres {
        /// URL for the bus's own listening and publishing connections.
        url: SecretString,
    },
}

impl EventBus {
    /// Starts the subscriber and waits (up to 10 s) until it listens, so
    /// nothing published after start-up is missed.
    pub async fn start(config: BusConfig, tasks: &TaskTracker, shutdown: CancellationToken) -> anyhow::Result<Self> {
        let (backend, sink) = match config {
            BusConfig::Redis {
                client,
                publisher,
                prefix,
            } => {
                let channel = format!("{prefix}events");
                (
                    Backend::Redis {
                        client,
                        channel: channel.clone(),
                    },
                    Sink::Redis { publisher, channel },
                )
            }
            BusConfig::Postgres { url } => (
                Backend::Postgres { url: url.clone() },
                Sink::Postgres { url, conn: None },
            ),
        };
        let (local, _) = broadcast::channel(LOCAL_CAPACITY);
        let (outgoing, queued) = mpsc::channel(OUTGOING_CAPACITY);
        tasks.spawn(publish_queued(queued, sink, shutdown.clone()));
        let bus = Self {
            inner: Arc::new(Inner {
                backend,
                local,
                connected: AtomicBool::new(false),
                outgoing,
            }),
        };
        let (ready_tx, ready_rx) = oneshot::channel();
        let listener = bus.clone();
        tasks.spawn(async move { listener.listen(shutdown, ready_tx).await });
        tokio::time::timeout(Duration::from_secs(10), ready_rx)
            .await
            .map_err(|_| anyhow::anyhow!("the event bus did not subscribe within 10 s"))?
            .map_err(|_| anyhow::anyhow!("the event bus stopped before subscribing"))?;
        Ok(bus)
    }

    /// Local listeners: every event from every instance (this one too),
    /// and whether the bus was connected when the listener joined (later
    /// changes arrive as `Resync` / `Disconnected`).
    pub fn subscribe(&self) -> (broadcast::Receiver<BusMessage>, bool) {
        let receiver = self.inner.local.subscribe();
        (receiver, AtomicBool::load(&self.inner.connected, Ordering::SeqCst))
    }

    /// Queues an event for every instance and returns at once: it never
    /// waits for a connection or the network. Call it after the change it
    /// reports has committed. Delivery is best effort (a bus that is down
    /// or far behind loses messages), so nothing that must not be lost
    /// travels only here: announcements go through the database
    /// ([`crate::platform::announcements`]).
    pub fn publish(&self, topic: &str, payload: &str) -> AppResult<()> {
        let envelope = Envelope {
            topic: topic.into(),
            payload: payload.into(),
        };
        let message = serde_json::to_string(&envelope).map_err(AppError::internal)?;
        self.inner
            .outgoing
            .try_send(message)
            .map_err(|e| AppError::unavailable(anyhow::anyhow!("event bus: {e}")))
    }

    async fn listen(self, shutdown: CancellationToken, ready: oneshot::Sender<()>) {
        let mut ready = Some(ready);
        let mut backoff = Duration::from_millis(100);
        loop {
            let outcome = match &self.inner.backend {
                Backend::Redis { client, channel } => self.listen_redis(client, channel, &shutdown, &mut ready).await,
                Backend::Postgres { url } => self.listen_postgres(url, &shutdown, &mut ready).await,
            };
            self.inner.connected.store(false, Ordering::SeqCst);
            if !shutdown.is_cancelled() {
                let _ = self.inner.local.send(BusMessage::Disconnected);
            }
            match outcome {
                Ok(()) if shutdown.is_cancelled() => return,
                Ok(()) => {
                    tracing::warn!("event bus subscription ended; reconnecting");
                    backoff = Duration::from_millis(100);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "event bus subscription failed; retrying");
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
        }
    }

    fn subscribed(&self, ready: &mut Option<oneshot::Sender<()>>) {
        self.inner.connected.store(true, Ordering::SeqCst);
        let _ = self.inner.local.send(BusMessage::Resync);
        if let Some(ready) = ready.take() {
            let _ = ready.send(());
        }
    }

    fn deliver(&self, raw: &str) {
        match serde_json::from_str::<Envelope<'_>>(raw) {
            Ok(envelope) => {
                let _ = self.inner.local.send(BusMessage::Event {
                    topic: Arc::from(envelope.topic.as_ref()),
                    payload: Arc::from(envelope.payload.as_ref()),
                });
            }
            Err(e) => tracing::warn!(error = %e, "ignoring a malformed event bus message"),
        }
    }

    async fn listen_redis(
        &self,
        client: &redis::Client,
        channel: &str,
        shutdown: &CancellationToken,
        ready: &mut Option<oneshot::Sender<()>>,
    ) -> anyhow::Result<()> {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
        self.subscribed(ready);
        let mut messages = pubsub.on_message();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                message = messages.next() => match message {
                    Some(message) => match message.get_payload::<String>() {
                        Ok(raw) => self.deliver(&raw),
                        Err(e) => tracing::warn!(error = %e, "ignoring a non-text event bus message"),
                    },
                    None => return Ok(()),
                },
            }
        }
    }

    async fn listen_postgres(
        &self,
        url: &SecretString,
        shutdown: &CancellationToken,
        ready: &mut Option<oneshot::Sender<()>>,
    ) -> anyhow::Result<()> {
        let mut conn = AsyncPgConnection::establish(url.expose_secret()).await?;
        diesel::sql_query(format!("LISTEN {PG_CHANNEL}"))
            .execute(&mut conn)
            .await?;
        self.subscribed(ready);
        let mut notifications = std::pin::pin!(conn.notifications_stream());
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                notification = notifications.next() => match notification {
                    Some(Ok(notification)) => self.deliver(&notification.payload),
                    Some(Err(e)) => return Err(e.into()),
                    None => return Ok(()),
                },
            }
        }
    }
}

/// Sends queued messages until shutdown, a batch at a time: whatever queued
/// while the previous batch was sent goes in one statement (PostgreSQL) or
/// one pipeline (Redis). A batch that fails is dropped and logged.
async fn publish_queued(mut queued: mpsc::Receiver<String>, mut sink: Sink, shutdown: CancellationToken) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        let received = tokio::select! {
            () = shutdown.cancelled() => return,
            received = queued.recv_many(&mut batch, MAX_BATCH) => received,
        };
        if received == 0 {
            return;
        }
        let sent = tokio::time::timeout(SEND_TIMEOUT, sink.send(&batch))
            .await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("no answer within {SEND_TIMEOUT:?}")));
        if let Err(e) = sent {
            // A send cut short may leave the connection mid-statement.
            sink.reset();
            tracing::warn!(error = %e, messages = batch.len(), "event bus: messages not published");
        }
        batch.clear();
    }
}

impl Sink {
    /// Forgets the PostgreSQL connection, to open afresh (Redis's
    /// connection manager reconnects by itself).
    fn reset(&mut self) {
        if let Self::Postgres { conn, .. } = self {
            *conn = None;
        }
    }

    async fn send(&mut self, messages: &[String]) -> anyhow::Result<()> {
        match self {
            Self::Redis { publisher, channel } => {
                let mut pipe = redis::pipe();
                for message in messages {
                    pipe.cmd("PUBLISH").arg(&*channel).arg(message).ignore();
                }
                let () = pipe.query_async(publisher).await?;
            }
            Self::Postgres { url, conn } => {
                let connection = match conn {
                    Some(connection) => connection,
                    None => conn.insert(Box::new(AsyncPgConnection::establish(url.expose_secret()).await?)),
                };
                // One statement for the whole batch; notifications keep
                // the array's order.
                diesel::sql_query("SELECT pg_notify($1, message) FROM unnest($2::text[]) AS message")
                    .bind::<Text, _>(PG_CHANNEL)
                    .bind::<Array<Text>, _>(messages)
                    .execute(&mut **connection)
                    .await?;
            }
        }
        Ok(())
    }
}
