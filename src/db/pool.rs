//! The connection pool, with a statement counter per application so tests
//! can prove a query shape does not grow with the data (no N+1).

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

struct CountStatements(QueryCounter);

impl Instrumentation for CountStatements {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if let InstrumentationEvent::StartQuery { .. } = event {
            self.0.0.fetch_add(1, Ordering::Relaxed);
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
