//! Announcements: changes every instance must act on at once (sessions
//! ended, API keys revoked, memberships ended, roles changed), delivered
//! through the database rather than the event bus, so a bus hiccup, or
//! instances that use different buses on one database, cannot leave a
//! cache trusting what was revoked.
//!
//! - **Written with the change.** A service calls [`record`] inside the
//!   transaction of the change: the `announcements` row commits with it or
//!   not at all (a transactional outbox). After the commit it hands the
//!   [`Recorded`] value to [`Announcements::committed`], which applies it
//!   on this instance before the answer goes out (each row is delivered
//!   once per instance, by whichever of the two paths comes first).
//! - **Read by id.** Each instance follows the table on a connection of
//!   its own (never a pooled one), applying rows in id order and
//!   remembering the last id it applied. An id below that one can still
//!   commit while its transaction is open; such gaps are read again at
//!   every poll for [`GAP_PATIENCE`].
//! - **Woken, and polled.** A trigger NOTIFYs every instance when a row
//!   commits (whatever bus an instance uses for the rest); without a wake
//!   each instance still reads every [`POLL_INTERVAL`].
//! - **Trusted while current.** Caches answer from memory only while the
//!   follower has read the table within [`MAX_LAG`] ([`Announcements::is_current`]);
//!   otherwise every lookup asks the database. So a revoked credential is
//!   refused within that bound on every instance, bus or no bus.
//! - **Pruned by age.** Rows older than [`RETENTION`] are deleted by one
//!   instance at a time (an advisory lock); every instance has long read
//!   them by then.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use diesel::{
    prelude::*,
    sql_types::{BigInt, Text},
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures_util::{FutureExt, StreamExt};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use tokio::sync::oneshot;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use tollgate_db::schema::announcements;

/// How often an instance reads the table without being woken.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// How long after its last read an instance still trusts its caches.
pub const MAX_LAG: Duration = Duration::from_millis(750);
/// How long an id missing below the last one applied is looked for: the
/// longest a transaction may stay open between writing its announcement
/// and committing.
pub const GAP_PATIENCE: Duration = Duration::from_secs(60);
/// How long rows are kept.
pub const RETENTION: Duration = Duration::from_secs(600);
/// How often an instance tries to prune.
const PRUNE_INTERVAL: Duration = Duration::from_secs(60);
/// Rows read at start-up before the newest, so that announcements still
/// committing then are not skipped (applying one again is harmless).
const STARTUP_REPLAY: i64 = 100;
/// Rows read per statement.
const BATCH: i64 = 500;
/// Missing ids remembered at most.
const MAX_GAPS: usize = 10_000;
/// The NOTIFY channel of the table's trigger.
const CHANNEL: &str = "tollgate_announcements";
/// Advisory lock of the pruning job ("announce").
const PRUNE_LOCK: i64 = 0x616e_6e6f_756e_6365;
/// How long start-up waits for the first read.
const FIRST_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one read may take (connecting included) before it counts as
/// failed: a database that stopped answering must not hold the follower.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// One announcement: a topic and its JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Announcement {
    topic: &'static str,
    payload: serde_json::Value,
}

impl Announcement {
    /// `body` under `topic`. A body that does not serialize (never, for
    /// the plain structs announced) goes out as `null`, which readers take
    /// as "anything may have changed".
    pub fn new<T: Serialize>(topic: &'static str, body: &T) -> Self {
        Self {
            topic,
            payload: serde_json::to_value(body).unwrap_or(serde_json::Value::Null),
        }
    }

    /// What it is about, e.g. `session.revoked`.
    pub fn topic(&self) -> &'static str {
        self.topic
    }
}

/// Announcements written in a transaction, to apply on this instance once
/// it committed ([`Announcements::committed`]).
#[must_use = "apply them on this instance after the commit: Announcements::committed"]
#[derive(Debug, Default)]
pub struct Recorded(Vec<(i64, Announcement)>);

impl Recorded {
    /// Adds what another part of the same transaction recorded.
    pub fn and(mut self, other: Recorded) -> Self {
        self.0.extend(other.0);
        self
    }
}

/// Writes `list` in the caller's transaction.
pub async fn record(conn: &mut AsyncPgConnection, list: Vec<Announcement>) -> QueryResult<Recorded> {
    if list.is_empty() {
        return Ok(Recorded::default());
    }
    let rows: Vec<_> = list
        .iter()
        .map(|a| (announcements::topic.eq(a.topic), announcements::payload.eq(&a.payload)))
        .collect();
    // One multi-row INSERT returns its ids in the order of its rows.
    let ids: Vec<i64> = diesel::insert_into(announcements::table)
        .values(rows)
        .returning(announcements::id)
        .get_results(conn)
        .await?;
    Ok(Recorded(ids.into_iter().zip(list).collect()))
}

/// What a listener hears.
#[derive(Debug, Clone, Copy)]
pub enum Heard<'a> {
    /// An announcement (from this instance or another).
    Announced {
        /// Its topic.
        topic: &'a str,
        /// Its body, JSON.
        payload: &'a str,
    },
    /// Announcements may have been missed (the table could not be read
    /// for a while): whatever was derived from earlier ones must be
    /// checked again.
    Lost,
}

type Listener = Box<dyn Fn(&Heard<'_>) + Send + Sync>;

/// This instance's view of the announcements.
#[derive(Clone)]
pub struct Announcements {
    inner: Arc<Inner>,
}

struct Inner {
    listeners: RwLock<Vec<Listener>>,
    epoch: Instant,
    /// When the last successful read began, in ms since `epoch`;
    /// `u64::MAX` before the first.
    synced_at: AtomicU64,
    /// Rows delivered to the listeners, with when: by the follower, or when
    /// this instance committed them, whichever came first.
    delivered: Mutex<HashMap<i64, Instant>>,
}

impl Default for Announcements {
    fn default() -> Self {
        Self {
            inner: Arc::new(Inner {
                listeners: RwLock::new(Vec::new()),
                epoch: Instant::now(),
                synced_at: AtomicU64::new(u64::MAX),
                delivered: Mutex::new(HashMap::new()),
            }),
        }
    }
}

impl Announcements {
    /// Calls `listener` with every announcement from now on, synchronously
    /// (keep it short: evictions, channel sends).
    pub fn listen(&self, listener: impl Fn(&Heard<'_>) + Send + Sync + 'static) {
        self.inner
            .listeners
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(Box::new(listener));
    }

    /// Whether every announcement committed more than [`MAX_LAG`] ago has
    /// been applied here: what caches need to answer from memory.
    pub fn is_current(&self) -> bool {
        self.is_current_at(Instant::now())
    }

    fn is_current_at(&self, now: Instant) -> bool {
        let synced_at = AtomicU64::load(&self.inner.synced_at, Ordering::SeqCst);
        let now = millis(now.saturating_duration_since(self.inner.epoch));
        synced_at != u64::MAX && now.saturating_sub(synced_at) < millis(MAX_LAG)
    }

    /// Applies what a committed transaction announced on this instance at
    /// once (the others read it from the table).
    pub fn committed(&self, recorded: Recorded) {
        for (id, announcement) in &recorded.0 {
            if !self.first_delivery(*id) {
                continue;
            }
            let payload = announcement.payload.to_string();
            self.deliver(&Heard::Announced {
                topic: announcement.topic,
                payload: &payload,
            });
        }
    }

    /// Follows the table on a connection of its own until shutdown; waits
    /// (a while) for the first read, so caches are trusted from the start.
    pub async fn start(&self, url: SecretString, tasks: &TaskTracker, shutdown: CancellationToken) {
        let (first_read, read) = oneshot::channel();
        let follower = Follower {
            announcements: self.clone(),
            url,
            conn: None,
            cursor: None,
            failing: false,
            pruned_at: Instant::now(),
        };
        tasks.spawn(follower.run(shutdown, first_read));
        if tokio::time::timeout(FIRST_READ_TIMEOUT, read).await.is_err() {
            tracing::warn!("announcements not read yet; caches ask the database until they are");
        }
    }

    /// Whether row `id` is delivered now for the first time (the commit
    /// and the follower race to it).
    fn first_delivery(&self, id: i64) -> bool {
        self.delivered().insert(id, Instant::now()).is_none()
    }

    /// Forgets deliveries older than [`RETENTION`]: their rows are pruned,
    /// so they cannot come again.
    fn forget_old_deliveries(&self) {
        self.delivered()
            .retain(|_, at| at.elapsed() < RETENTION + PRUNE_INTERVAL);
    }

    fn delivered(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Instant>> {
        self.inner.delivered.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn deliver(&self, heard: &Heard<'_>) {
        let listeners = self.inner.listeners.read().unwrap_or_else(|p| p.into_inner());
        for listener in listeners.iter() {
            listener(heard);
        }
    }

    /// Marks everything committed before `started` applied.
    fn synced(&self, started: Instant) {
        let at = millis(started.saturating_duration_since(self.inner.epoch));
        self.inner.synced_at.store(at, Ordering::SeqCst);
    }

    /// Treats the table as read now (for unit tests of caches).
    #[cfg(any(test, feature = "test-support"))]
    pub fn assume_current(&self) {
        self.synced(Instant::now());
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX - 1)
}

/// Where reading stands: the last id applied, and ids below it not seen
/// yet (with when they were first missed).
#[derive(Debug, Default)]
struct Cursor {
    last: i64,
    gaps: BTreeMap<i64, Instant>,
}

impl Cursor {
    fn starting_after(last: i64) -> Self {
        Self {
            last,
            gaps: BTreeMap::new(),
        }
    }

    /// Notes that `id` was read at `now`.
    fn saw(&mut self, id: i64, now: Instant) {
        if id <= self.last {
            self.gaps.remove(&id);
            return;
        }
        let room = i64::try_from(MAX_GAPS.saturating_sub(self.gaps.len())).unwrap_or(0);
        // The ids just below this one are the likeliest still to commit.
        for missing in (self.last + 1).max(id - room)..id {
            self.gaps.insert(missing, now);
        }
        self.last = id;
    }

    /// Stops looking for ids missing longer than [`GAP_PATIENCE`].
    fn expire(&mut self, now: Instant) {
        self.gaps
            .retain(|_, missed_at| now.saturating_duration_since(*missed_at) < GAP_PATIENCE);
    }

    fn gap_ids(&self) -> Vec<i64> {
        self.gaps.keys().copied().collect()
    }
}

/// The task that reads the table.
struct Follower {
    announcements: Announcements,
    url: SecretString,
    conn: Option<AsyncPgConnection>,
    cursor: Option<Cursor>,
    failing: bool,
    pruned_at: Instant,
}

impl Follower {
    async fn run(mut self, shutdown: CancellationToken, first_read: oneshot::Sender<()>) {
        let mut first_read = Some(first_read);
        loop {
            let started = Instant::now();
            let read = tokio::select! {
                () = shutdown.cancelled() => return,
                read = tokio::time::timeout(READ_TIMEOUT, self.read_new()) => {
                    read.unwrap_or_else(|_| Err(anyhow::anyhow!("no answer within {READ_TIMEOUT:?}")))
                }
            };
            match read {
                Ok(()) => {
                    if std::mem::take(&mut self.failing) {
                        tracing::info!("announcements readable again");
                        // Rows may have been pruned or given up meanwhile.
                        self.announcements.deliver(&Heard::Lost);
                    }
                    self.announcements.synced(started);
                    if let Some(first_read) = first_read.take() {
                        let _ = first_read.send(());
                    }
                    self.prune_now_and_then().await;
                }
                Err(e) => {
                    if !std::mem::replace(&mut self.failing, true) {
                        tracing::warn!(error = %e, "cannot read announcements; caches ask the database meanwhile");
                    }
                    self.conn = None;
                }
            }
            if !self.wait(&shutdown).await {
                return;
            }
        }
    }

    /// Applies every row after the cursor, and any gap that committed.
    async fn read_new(&mut self) -> anyhow::Result<()> {
        let conn = match &mut self.conn {
            Some(conn) => conn,
            None => self.conn.insert(listening(&self.url).await?),
        };
        let cursor = match &mut self.cursor {
            Some(cursor) => cursor,
            None => self
                .cursor
                .insert(Cursor::starting_after((newest(conn).await? - STARTUP_REPLAY).max(0))),
        };
        let now = Instant::now();
        cursor.expire(now);
        loop {
            let rows: Vec<(i64, String, String)> = announcements::table
                .filter(
                    announcements::id
                        .gt(cursor.last)
                        .or(announcements::id.eq_any(cursor.gap_ids())),
                )
                .order(announcements::id)
                .select((
                    announcements::id,
                    announcements::topic,
                    diesel::dsl::sql::<Text>("payload::text"),
                ))
                .limit(BATCH)
                .load(conn)
                .await?;
            let full = rows.len() as i64 == BATCH;
            for (id, topic, payload) in rows {
                cursor.saw(id, now);
                if !self.announcements.first_delivery(id) {
                    continue;
                }
                self.announcements.deliver(&Heard::Announced {
                    topic: &topic,
                    payload: &payload,
                });
            }
            if !full {
                return Ok(());
            }
        }
    }

    /// Until a wake, the next poll or shutdown (false).
    async fn wait(&mut self, shutdown: &CancellationToken) -> bool {
        let Some(conn) = &mut self.conn else {
            return tokio::select! {
                () = shutdown.cancelled() => false,
                () = tokio::time::sleep(POLL_INTERVAL) => true,
            };
        };
        let broken = {
            let mut notifications = std::pin::pin!(conn.notifications_stream());
            let broken = tokio::select! {
                () = shutdown.cancelled() => return false,
                () = tokio::time::sleep(POLL_INTERVAL) => false,
                woken = notifications.next() => !matches!(woken, Some(Ok(_))),
            };
            // One read covers every wake that queued meanwhile.
            while let Some(Some(Ok(_))) = notifications.next().now_or_never() {}
            broken
        };
        if broken {
            self.conn = None;
        }
        true
    }

    async fn prune_now_and_then(&mut self) {
        if self.pruned_at.elapsed() < PRUNE_INTERVAL {
            return;
        }
        self.pruned_at = Instant::now();
        self.announcements.forget_old_deliveries();
        let Some(conn) = &mut self.conn else { return };
        if let Err(e) = prune(conn).await {
            tracing::warn!(error = %e, "could not prune announcements");
        }
    }
}

/// A connection that listens for the table's wakes.
async fn listening(url: &SecretString) -> anyhow::Result<AsyncPgConnection> {
    let mut conn = AsyncPgConnection::establish(url.expose_secret()).await?;
    diesel::sql_query(format!("LISTEN {CHANNEL}"))
        .execute(&mut conn)
        .await?;
    Ok(conn)
}

/// The newest id (0 for none).
async fn newest(conn: &mut AsyncPgConnection) -> QueryResult<i64> {
    let newest: Option<i64> = announcements::table
        .select(diesel::dsl::max(announcements::id))
        .first(conn)
        .await?;
    Ok(newest.unwrap_or(0))
}

/// Deletes rows older than [`RETENTION`], unless another instance is at
/// it (one statement: the lock is the transaction's).
async fn prune(conn: &mut AsyncPgConnection) -> QueryResult<usize> {
    diesel::sql_query(
        "DELETE FROM announcements
         WHERE (SELECT pg_try_advisory_xact_lock($1))
           AND created_at < now() - make_interval(secs => $2)",
    )
    .bind::<BigInt, _>(PRUNE_LOCK)
    .bind::<BigInt, _>(i64::try_from(RETENTION.as_secs()).unwrap_or(i64::MAX))
    .execute(conn)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_missing_below_the_last_are_looked_for_until_they_come_or_expire() {
        let start = Instant::now();
        let mut cursor = Cursor::starting_after(10);
        cursor.saw(11, start);
        cursor.saw(14, start);
        assert_eq!(cursor.last, 14);
        assert_eq!(cursor.gap_ids(), [12, 13]);
        // A late commit fills its gap.
        cursor.saw(12, start);
        assert_eq!(cursor.gap_ids(), [13]);
        cursor.expire(start + GAP_PATIENCE - Duration::from_millis(1));
        assert_eq!(cursor.gap_ids(), [13]);
        cursor.expire(start + GAP_PATIENCE);
        assert!(cursor.gap_ids().is_empty());
    }

    #[test]
    fn a_jump_in_ids_keeps_the_gaps_nearest_the_new_one() {
        let mut cursor = Cursor::starting_after(0);
        cursor.saw(1_000_000, Instant::now());
        assert_eq!(cursor.gaps.len(), MAX_GAPS);
        assert_eq!(cursor.gap_ids().last(), Some(&999_999));
    }

    #[test]
    fn caches_are_trusted_only_shortly_after_a_read() {
        let announcements = Announcements::default();
        assert!(!announcements.is_current());
        announcements.assume_current();
        assert!(announcements.is_current());
        let read_at = Instant::now();
        announcements.synced(read_at);
        assert!(announcements.is_current_at(read_at + MAX_LAG - Duration::from_millis(1)));
        assert!(!announcements.is_current_at(read_at + MAX_LAG));
    }

    #[test]
    fn a_committed_announcement_reaches_local_listeners_at_once() {
        let announcements = Announcements::default();
        let heard = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = heard.clone();
        announcements.listen(move |h| {
            if let Heard::Announced { topic, payload } = h {
                sink.lock().unwrap().push(format!("{topic} {payload}"));
            }
        });
        announcements.committed(Recorded(vec![(
            7,
            Announcement::new("api_key.revoked", &serde_json::json!({ "keyId": "k" })),
        )]));
        assert_eq!(*heard.lock().unwrap(), [r#"api_key.revoked {"keyId":"k"}"#]);
        // The follower does not deliver it again.
        assert!(!announcements.first_delivery(7));
        assert!(announcements.first_delivery(8));
    }
}
