//! The event bus between instances: Redis pub/sub when REDIS_URL is set,
//! PostgreSQL LISTEN/NOTIFY otherwise.
//!
//! Every instance keeps one subscriber connection and fans messages out to
//! local listeners through a broadcast channel. Whenever that connection is
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

use diesel::sql_types::Text;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures_util::StreamExt;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, oneshot};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    db::DbPool,
    error::{AppError, AppResult},
};

/// The PostgreSQL NOTIFY channel (notifications are scoped to one database).
const PG_CHANNEL: &str = "tollgate_events";
/// Messages a slow local listener may fall behind before it must resync.
const LOCAL_CAPACITY: usize = 4096;
/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

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

enum Backend {
    Redis {
        client: redis::Client,
        publisher: redis::aio::ConnectionManager,
        channel: String,
    },
    Postgres {
        pool: DbPool,
        url: SecretString,
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
        /// Pool for publishing.
        pool: DbPool,
        /// URL for the dedicated listening connection.
        url: SecretString,
    },
}

impl EventBus {
    /// Starts the subscriber and waits (up to 10 s) until it listens, so
    /// nothing published after start-up is missed.
    pub async fn start(config: BusConfig, tasks: &TaskTracker, shutdown: CancellationToken) -> anyhow::Result<Self> {
        let backend = match config {
            BusConfig::Redis {
                client,
                publisher,
                prefix,
            } => Backend::Redis {
                client,
                publisher,
                channel: format!("{prefix}events"),
            },
            BusConfig::Postgres { pool, url } => Backend::Postgres { pool, url },
        };
        let (local, _) = broadcast::channel(LOCAL_CAPACITY);
        let bus = Self {
            inner: Arc::new(Inner {
                backend,
                local,
                connected: AtomicBool::new(false),
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

    /// Sends an event to every instance. Call it after the change it
    /// announces has committed.
    pub async fn publish(&self, topic: &str, payload: &str) -> AppResult<()> {
        let envelope = Envelope {
            topic: topic.into(),
            payload: payload.into(),
        };
        let message = serde_json::to_string(&envelope).map_err(AppError::internal)?;
        match &self.inner.backend {
            Backend::Redis { publisher, channel, .. } => {
                let mut conn = publisher.clone();
                let _: i64 = redis::cmd("PUBLISH")
                    .arg(channel)
                    .arg(message)
                    .query_async(&mut conn)
                    .await?;
            }
            Backend::Postgres { pool, .. } => {
                let mut conn = pool.get().await?;
                diesel::sql_query("SELECT pg_notify($1, $2)")
                    .bind::<Text, _>(PG_CHANNEL)
                    .bind::<Text, _>(message)
                    .execute(&mut conn)
                    .await?;
            }
        }
        Ok(())
    }

    async fn listen(self, shutdown: CancellationToken, ready: oneshot::Sender<()>) {
        let mut ready = Some(ready);
        let mut backoff = Duration::from_millis(100);
        loop {
            let outcome = match &self.inner.backend {
                Backend::Redis { client, channel, .. } => {
                    self.listen_redis(client, channel, &shutdown, &mut ready).await
                }
                Backend::Postgres { url, .. } => self.listen_postgres(url, &shutdown, &mut ready).await,
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
