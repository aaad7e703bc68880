//! The connection pool, with a statement counter per application so tests
//! can prove a query shape does not grow with the data (no N+1), one per
//! GraphQL operation so a query cannot run without bound, a count of the
//! tasks waiting for a connection, and the one way to take a connection:
//! [`DbPool::get`], which refuses a second connection to work that holds
//! one (see [`crate::hold`]).

use std::{
    ops::{Deref, DerefMut},
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use diesel::connection::{Instrumentation, InstrumentationEvent};
use diesel_async::{
    AsyncConnection, AsyncPgConnection,
    pooled_connection::{AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod, deadpool},
};

use super::hold::{self, Hold, SecondConnection};
use tollgate_core::AppError;

/// How long a request waits for a connection before SERVICE_UNAVAILABLE.
const WAIT_TIMEOUT: Duration = Duration::from_secs(10);

/// A pool of PostgreSQL connections.
#[derive(Clone)]
pub struct DbPool {
    inner: deadpool::Pool<AsyncPgConnection>,
    /// Tasks inside [`DbPool::get`] that have no connection yet.
    waiting: Arc<AtomicUsize>,
}

/// A connection taken from the pool, counted against the work that took
/// it until dropped.
pub struct DbConn {
    conn: deadpool::Object<AsyncPgConnection>,
    _hold: Hold,
}

impl Deref for DbConn {
    type Target = AsyncPgConnection;

    fn deref(&self) -> &AsyncPgConnection {
        &self.conn
    }
}

impl DerefMut for DbConn {
    fn deref_mut(&mut self) -> &mut AsyncPgConnection {
        &mut self.conn
    }
}

/// Why no connection was handed out.
#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    /// The database could not be reached, or no connection freed up in time.
    #[error("no database connection: {0}")]
    Unavailable(#[from] deadpool::PoolError),
    /// The caller already holds one (a bug; see [`crate::hold`]).
    #[error(transparent)]
    SecondConnection(#[from] SecondConnection),
}

impl From<CheckoutError> for AppError {
    fn from(err: CheckoutError) -> Self {
        match err {
            CheckoutError::Unavailable(e) => AppError::unavailable(e),
            CheckoutError::SecondConnection(e) => AppError::internal(e),
        }
    }
}

impl From<SecondConnection> for AppError {
    fn from(err: SecondConnection) -> Self {
        AppError::internal(err)
    }
}

/// What the pool holds right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStatus {
    /// The most connections it opens.
    pub max_size: usize,
    /// Connections handed out.
    pub in_use: usize,
    /// Open connections nobody uses.
    pub idle: usize,
    /// Tasks waiting for a connection.
    pub waiting: usize,
}

impl DbPool {
    /// A connection; refused at once to work that holds one already,
    /// SERVICE_UNAVAILABLE after [`WAIT_TIMEOUT`] without a free one.
    pub async fn get(&self) -> Result<DbConn, CheckoutError> {
        let hold = hold::claim()?;
        let conn = {
            let _waiting = Waiting::start(&self.waiting);
            self.inner.get().await?
        };
        Ok(DbConn { conn, _hold: hold })
    }

    /// Connections in use and idle, and tasks waiting for one.
    pub fn status(&self) -> PoolStatus {
        let status = self.inner.status();
        PoolStatus {
            max_size: status.max_size,
            in_use: status.size.saturating_sub(status.available),
            idle: status.available,
            waiting: self.waiting.load(Ordering::SeqCst),
        }
    }
}

/// Counts one waiting task until dropped (also when the wait is
/// cancelled or times out).
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn start(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How many SQL statements an application's connections have run.
#[derive(Debug, Clone, Default)]
pub struct QueryCounter(Arc<AtomicU64>);

impl QueryCounter {
    /// Statements started so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

tokio::task_local! {
    /// The operation whose future is being polled, if any.
    static OPERATION: OperationStatements;
}

/// Statements started on behalf of one GraphQL operation, against its cap.
///
/// Statements are counted where they start, in the task that polls the
/// operation: a future runs inside the operation through
/// [`OperationStatements::scope`], and work it spawns (batch loaders) keeps
/// counting through [`spawn_in_operation`]. Cheap to clone; clones share
/// the count.
#[derive(Debug, Clone)]
pub struct OperationStatements(Arc<OperationCount>);

#[derive(Debug)]
struct OperationCount {
    started: AtomicU64,
    limit: u64,
    over: tokio::sync::Notify,
}

impl OperationStatements {
    /// A fresh count that allows `limit` statements.
    pub fn new(limit: u64) -> Self {
        Self(Arc::new(OperationCount {
            started: AtomicU64::new(0),
            limit,
            over: tokio::sync::Notify::new(),
        }))
    }

    /// Statements started so far.
    pub fn started(&self) -> u64 {
        self.0.started.load(Ordering::Relaxed)
    }

    /// Whether more statements started than the limit allows.
    pub fn exceeded(&self) -> bool {
        self.started() > self.0.limit
    }

    /// Runs `future` as part of this operation: its statements count here.
    pub fn scope<F: Future>(&self, future: F) -> tokio::task::futures::TaskLocalFuture<Self, F> {
        OPERATION.scope(self.clone(), future)
    }

    /// Completes once more statements started than the limit allows.
    pub async fn over_limit(&self) {
        loop {
            let notified = self.0.over.notified();
            tokio::pin!(notified);
            // Registered before the check, so a statement counted in between
            // still wakes this waiter.
            notified.as_mut().enable();
            if self.exceeded() {
                return;
            }
            notified.await;
        }
    }

    /// The operation the current task is running, if any.
    pub fn current() -> Option<Self> {
        OPERATION.try_with(Clone::clone).ok()
    }

    fn count_one(&self) {
        let started = self.0.started.fetch_add(1, Ordering::Relaxed) + 1;
        if started > self.0.limit {
            self.0.over.notify_waiters();
        }
    }
}

/// `tokio::spawn` that keeps counting the spawned work's statements against
/// the operation that spawned it (for batch loaders).
pub fn spawn_in_operation<F>(future: F) -> tokio::task::JoinHandle<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    match OperationStatements::current() {
        Some(operation) => tokio::spawn(operation.scope(future)),
        None => tokio::spawn(future),
    }
}

struct CountStatements(QueryCounter);

impl Instrumentation for CountStatements {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if let InstrumentationEvent::StartQuery { .. } = event {
            self.0.0.fetch_add(1, Ordering::Relaxed);
            // Outside any operation (jobs, the bus, startup) nothing else counts.
            let _ = OPERATION.try_with(OperationStatements::count_one);
        }
    }
}

/// Builds a pool whose connections report to `counter`. No connection is
/// opened until one is needed.
pub fn build_pool(database_url: &str, max_size: usize, counter: QueryCounter) -> anyhow::Result<DbPool> {
    let mut config = ManagerConfig::default();
    // No `SELECT 1` on every checkout: a dead connection is noticed by the
    // driver (and discarded), and counted statements stay the app's own.
    config.recycling_method = RecyclingMethod::Fast;
    config.custom_setup = Box::new(move |url| {
        let counter = counter.clone();
        Box::pin(async move {
            let mut conn = AsyncPgConnection::establish(url).await?;
            conn.set_instrumentation(CountStatements(counter));
            Ok(conn)
        })
    });
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(database_url, config);
    let inner = deadpool::Pool::builder(manager)
        .max_size(max_size)
        .wait_timeout(Some(WAIT_TIMEOUT))
        .create_timeout(Some(Duration::from_secs(10)))
        .runtime(::deadpool::Runtime::Tokio1)
        .build()?;
    Ok(DbPool {
        inner,
        waiting: Arc::default(),
    })
}
