//! The connection pool, with a statement counter per application so tests
//! can prove a query shape does not grow with the data (no N+1), and one
//! per GraphQL operation so a query cannot run without bound.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use diesel::connection::{Instrumentation, InstrumentationEvent};
use diesel_async::{
    AsyncConnection, AsyncPgConnection,
    pooled_connection::{AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod, deadpool},
};

/// The application's pool.
pub type DbPool = deadpool::Pool<AsyncPgConnection>;
/// A connection checked out of the pool.
pub type DbConn = deadpool::Object<AsyncPgConnection>;

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
    let pool = deadpool::Pool::builder(manager)
        .max_size(max_size)
        .wait_timeout(Some(Duration::from_secs(10)))
        .create_timeout(Some(Duration::from_secs(10)))
        .runtime(::deadpool::Runtime::Tokio1)
        .build()?;
    Ok(pool)
}
