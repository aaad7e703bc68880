//! Many live-usage subscribers over `graphql-transport-ws`, as browsers
//! holding a dashboard open: each connects with one of many API keys
//! (a principal may hold only 20 sockets), subscribes to one
//! organization's `usageUpdated`, answers pings, and notes when each
//! update arrives.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Result, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};
use tokio_tungstenite::tungstenite::{
    Message,
    client::IntoClientRequest,
    protocol::{CloseFrame, WebSocketConfig, frame::coding::CloseCode},
};
use tokio_util::sync::CancellationToken;

/// What each subscriber asks for: the fields a dashboard's live counter
/// shows.
pub const SUBSCRIPTION: &str = "subscription ($id: ID!) { usageUpdated(organizationId: $id) { \
     event { id model totalTokens costMicroUsd occurredAt } quota { tokensUsed tokenLimit remaining } thresholdCrossed } }";
/// Handshakes in flight at once.
const CONNECTING_AT_ONCE: usize = 64;
/// How long one handshake (TCP, upgrade, connection_init, ack) may take.
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(60);

/// An update as one subscriber received it.
#[derive(Clone, Copy, Debug)]
pub struct Arrival {
    /// Which subscriber.
    pub subscriber: usize,
    /// When its `next` message was read.
    pub at: Instant,
}

/// The subscribers, connected and subscribed; closed by [`Subscribers::close`].
pub struct Subscribers {
    /// Arrivals of updates, in the order they were read.
    pub arrivals: mpsc::UnboundedReceiver<Arrival>,
    /// How many are connected now.
    pub connected: Arc<AtomicUsize>,
    /// Failures seen (handshake refused, socket closed by the server).
    pub failures: Arc<AtomicUsize>,
    /// The first failure, to say why.
    pub first_failure: Arc<std::sync::Mutex<Option<String>>>,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Opens `count` subscribers on `ws_url`, subscriber `i` with
/// `keys[i % keys.len()]`, all watching `organization_id`. Returns once
/// every handshake is done (acknowledged or failed) and every `subscribe`
/// is sent; the server may still be running their access checks.
pub async fn open(ws_url: &str, keys: &[String], count: usize, organization_id: &str) -> Result<Subscribers> {
    if keys.is_empty() {
        bail!("subscribers need keys");
    }
    let (arrived, arrivals) = mpsc::unbounded_channel();
    let connected = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicUsize::new(0));
    let first_failure = Arc::new(std::sync::Mutex::new(None));
    let stop = CancellationToken::new();
    let gate = Arc::new(Semaphore::new(CONNECTING_AT_ONCE));
    let handshakes_done = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::with_capacity(count);
    for subscriber in 0..count {
        let setup = Setup {
            url: ws_url.to_owned(),
            key: keys[subscriber % keys.len()].clone(),
            organization_id: organization_id.to_owned(),
            subscriber,
        };
        let shared = Shared {
            arrived: arrived.clone(),
            connected: connected.clone(),
            failures: failures.clone(),
            first_failure: first_failure.clone(),
            stop: stop.clone(),
            gate: gate.clone(),
            handshakes_done: handshakes_done.clone(),
        };
        tasks.push(tokio::spawn(async move {
            if let Err(e) = subscriber_loop(setup, &shared).await {
                shared.failures.fetch_add(1, Ordering::Relaxed);
                shared
                    .first_failure
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get_or_insert(format!("{e:#}"));
            }
        }));
    }
    let deadline = Instant::now() + HANDSHAKE_LIMIT + Duration::from_secs(count as u64 / 50);
    while handshakes_done.load(Ordering::Relaxed) < count {
        if Instant::now() > deadline {
            bail!(
                "only {} of {count} handshakes finished in time",
                handshakes_done.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(Subscribers {
        arrivals,
        connected,
        failures,
        first_failure,
        stop,
        tasks,
    })
}

impl Subscribers {
    /// The first failure, if any.
    pub fn first_failure(&self) -> Option<String> {
        self.first_failure.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Arrivals read until `expected` came or `limit` passed.
    pub async fn collect(&mut self, expected: usize, limit: Duration) -> Vec<Arrival> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut got = Vec::with_capacity(expected);
        while got.len() < expected {
            match tokio::time::timeout_at(deadline, self.arrivals.recv()).await {
                Ok(Some(arrival)) => got.push(arrival),
                Ok(None) | Err(_) => break,
            }
        }
        got
    }

    /// Closes every socket (normal closure) and waits for the tasks.
    pub async fn close(self) {
        self.stop.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

struct Setup {
    url: String,
    key: String,
    organization_id: String,
    subscriber: usize,
}

struct Shared {
    arrived: mpsc::UnboundedSender<Arrival>,
    connected: Arc<AtomicUsize>,
    failures: Arc<AtomicUsize>,
    first_failure: Arc<std::sync::Mutex<Option<String>>>,
    stop: CancellationToken,
    gate: Arc<Semaphore>,
    handshakes_done: Arc<AtomicUsize>,
}

/// The client's buffers sized for small messages: ten thousand of them
/// share this process.
fn small_buffers() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0)
}

async fn subscriber_loop(setup: Setup, shared: &Shared) -> Result<()> {
    let handshake = async {
        let _turn = shared.gate.acquire().await?;
        let mut request = setup.url.as_str().into_client_request()?;
        request
            .headers_mut()
            .insert("sec-websocket-protocol", "graphql-transport-ws".parse()?);
        let (mut socket, _) =
            tokio_tungstenite::connect_async_with_config(request, Some(small_buffers()), true).await?;
        let init =
            json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {}", setup.key) } });
        socket.send(Message::text(init.to_string())).await?;
        loop {
            match socket.next().await {
                Some(Ok(Message::Text(text))) => {
                    let message: Value = serde_json::from_str(&text)?;
                    if message["type"] == "connection_ack" {
                        break;
                    }
                }
                Some(Ok(Message::Close(frame))) => bail!("refused: {frame:?}"),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => bail!("closed during the handshake"),
            }
        }
        let subscribe = json!({
            "type": "subscribe",
            "id": "1",
            "payload": { "query": SUBSCRIPTION, "variables": { "id": setup.organization_id } }
        });
        socket.send(Message::text(subscribe.to_string())).await?;
        anyhow::Ok(socket)
    };
    let socket = tokio::time::timeout(HANDSHAKE_LIMIT, handshake).await;
    shared.handshakes_done.fetch_add(1, Ordering::Relaxed);
    let mut socket = socket.map_err(|_| anyhow!("handshake timed out"))??;
    shared.connected.fetch_add(1, Ordering::Relaxed);
    let outcome = async {
        loop {
            let message = tokio::select! {
                () = shared.stop.cancelled() => {
                    let frame = CloseFrame { code: CloseCode::Normal, reason: "".into() };
                    let _ = tokio::time::timeout(Duration::from_secs(5), socket.close(Some(frame))).await;
                    return Ok(());
                }
                message = socket.next() => message,
            };
            match message {
                Some(Ok(Message::Text(text))) => {
                    let at = Instant::now();
                    let message: Value = serde_json::from_str(&text)?;
                    match message["type"].as_str() {
                        Some("next") => {
                            if message["payload"]["errors"].is_array() {
                                bail!("an update with errors: {}", message["payload"]["errors"]);
                            }
                            let _ = shared.arrived.send(Arrival {
                                subscriber: setup.subscriber,
                                at,
                            });
                        }
                        Some("ping") => socket.send(Message::text(r#"{"type":"pong"}"#)).await?,
                        Some("error") => bail!("subscription refused: {}", message["payload"]),
                        Some("complete") => bail!("the server completed the subscription"),
                        _ => {}
                    }
                }
                Some(Ok(Message::Close(frame))) => bail!("closed by the server: {frame:?}"),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => bail!("the socket ended"),
            }
        }
    }
    .await;
    shared.connected.fetch_sub(1, Ordering::Relaxed);
    outcome
}
