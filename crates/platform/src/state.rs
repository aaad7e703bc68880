//! What every layer above may use of the running application: the
//! configuration, the database pools, the clock, Redis, the event bus and
//! announcements, the rate limiter, metrics, and the shutdown signal.
//!
//! Higher layers wrap it (the auth layer adds tokens and caches, the server
//! adds the live-usage hub) and dereference to it, so a service written
//! against `&Platform` can be handed any of them.

use std::{
    any::{Any, TypeId},
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Instant,
};

use chrono::{DateTime, Utc};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tollgate_core::{AppResult, Config, clock::SharedClock};
use tollgate_db::{DbConn, DbPool, QueryCounter};

use crate::{
    announcements::Announcements,
    events::EventBus,
    metrics::{self, Metrics},
    rate_limit::RateLimiter,
    secrets::Secrets,
};

/// The application's shared foundation, cheap to clone.
#[derive(Clone)]
pub struct Platform {
    inner: Arc<Inner>,
}

struct Inner {
    parts: PlatformParts,
    metrics: Metrics,
    started: Instant,
    /// Per-app state of higher layers, by type ([`Platform::local`]).
    locals: Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
}

/// The parts a [`Platform`] is made of; the server assembles them.
pub struct PlatformParts {
    /// The configuration the app was built with.
    pub config: Config,
    /// The request pool (its statements counted by `queries`).
    pub pool: DbPool,
    /// The background jobs' own pool.
    pub jobs_pool: DbPool,
    /// The application clock.
    pub clock: SharedClock,
    /// Redis, when configured.
    pub redis: Option<redis::aio::ConnectionManager>,
    /// Events to and from every instance.
    pub events: EventBus,
    /// Revocations and role changes, from every instance.
    pub announcements: Announcements,
    /// Attempt counters.
    pub rate_limiter: RateLimiter,
    /// Encryption of secrets at rest.
    pub secrets: Secrets,
    /// Statements run through `pool`.
    pub queries: QueryCounter,
    /// Cancelled when the server begins to shut down.
    pub shutdown: CancellationToken,
    /// Long-lived tasks shutdown waits for.
    pub tasks: TaskTracker,
}

impl Platform {
    /// Puts the parts together; the uptime starts now.
    pub fn new(parts: PlatformParts) -> Self {
        Self {
            inner: Arc::new(Inner {
                parts,
                metrics: Metrics::default(),
                started: Instant::now(),
                locals: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The configuration the app was built with.
    pub fn config(&self) -> &Config {
        &self.inner.parts.config
    }

    /// A pooled connection; SERVICE_UNAVAILABLE when none can be had.
    pub async fn db(&self) -> AppResult<DbConn> {
        Ok(self.inner.parts.pool.get().await?)
    }

    /// The request pool, for loaders. Its statements are counted.
    pub fn pool(&self) -> &DbPool {
        &self.inner.parts.pool
    }

    /// A small pool of its own for background jobs, so their polling
    /// neither competes with requests for connections nor shows up in the
    /// request statement count.
    pub fn jobs_pool(&self) -> &DbPool {
        &self.inner.parts.jobs_pool
    }

    /// The current time, from the application clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.inner.parts.clock.now()
    }

    /// The application clock.
    pub fn clock(&self) -> &SharedClock {
        &self.inner.parts.clock
    }

    /// Events to and from every instance.
    pub fn events(&self) -> &EventBus {
        &self.inner.parts.events
    }

    /// Revocations and role changes, from every instance.
    pub fn announcements(&self) -> &Announcements {
        &self.inner.parts.announcements
    }

    /// Attempt counters (shared through Redis when configured).
    pub fn rate_limiter(&self) -> &RateLimiter {
        &self.inner.parts.rate_limiter
    }

    /// Encryption of secrets at rest (provider keys, TOTP seeds).
    pub fn secrets(&self) -> &Secrets {
        &self.inner.parts.secrets
    }

    /// Redis, when configured.
    pub fn redis(&self) -> Option<&redis::aio::ConnectionManager> {
        self.inner.parts.redis.as_ref()
    }

    /// This instance's counters for `/metrics`.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// SQL statements run so far by this instance.
    pub fn query_count(&self) -> u64 {
        self.inner.parts.queries.get()
    }

    /// Seconds since the app was built.
    pub fn uptime_secs(&self) -> u64 {
        self.inner.started.elapsed().as_secs()
    }

    /// Cancelled when the server begins to shut down; long-lived work
    /// (websockets, jobs) watches it.
    pub fn shutdown_signal(&self) -> &CancellationToken {
        &self.inner.parts.shutdown
    }

    /// Every metric of this instance, in Prometheus' text format.
    pub fn render_metrics(&self) -> String {
        let readings = metrics::Readings {
            pools: [("requests", self.pool()), ("jobs", self.jobs_pool())],
            statements: self.query_count(),
            uptime_secs: self.uptime_secs(),
        };
        metrics::render(self.metrics(), &readings)
    }

    /// Tracks long-lived tasks so shutdown can wait for them.
    pub fn tasks(&self) -> &TaskTracker {
        &self.inner.parts.tasks
    }

    /// This app's one value of type `T`, made by `init` on first use and
    /// kept for the app's life: per-app state of a higher layer (a cache
    /// that follows the announcements, say) that the layers below cannot
    /// name. Two apps in one process each have their own.
    pub fn local<T: Any + Send + Sync>(&self, init: impl FnOnce(&Platform) -> T) -> Arc<T> {
        let mut locals = self.inner.locals.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(value) = locals
            .get(&TypeId::of::<T>())
            .and_then(|v| Arc::clone(v).downcast::<T>().ok())
        {
            return value;
        }
        let value = Arc::new(init(self));
        locals.insert(TypeId::of::<T>(), Arc::clone(&value) as Arc<dyn Any + Send + Sync>);
        value
    }
}
