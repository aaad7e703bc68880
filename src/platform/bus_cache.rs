//! A per-instance cache of answers the database gave, kept honest by the
//! event bus: what the session and API key caches share.
//!
//! An instance drops entries as soon as the bus announces they stopped
//! holding (each cache decides what a message means); it drops everything,
//! and trusts nothing, while its bus subscription is down, because messages
//! may be missed then. A generation counter stops a lookup that raced with
//! an eviction from putting the stale answer back. The TTL is only a
//! backstop, for a connection that fails without closing.

use std::{
    borrow::Borrow,
    collections::HashMap,
    hash::Hash,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::platform::events::{BusMessage, EventBus};

/// Entries kept before the cache is swept of stale ones.
const MAX_ENTRIES: usize = 100_000;

/// Answers by key, trusted while the bus is connected and they are fresh.
pub struct BusCache<K, V> {
    inner: Arc<Inner<K, V>>,
}

impl<K, V> Clone for BusCache<K, V> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

struct Inner<K, V> {
    entries: Mutex<HashMap<K, (V, Instant)>>,
    generation: AtomicU64,
    /// False while the bus is down (and before it first connects): every
    /// lookup then asks the database.
    trusted: AtomicBool,
    ttl: Duration,
}

impl<K, V> BusCache<K, V>
where
    K: Eq + Hash + Send + 'static,
    V: Clone + Send + 'static,
{
    /// An empty cache whose entries are trusted for at most `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                entries: Mutex::new(HashMap::new()),
                generation: AtomicU64::new(0),
                trusted: AtomicBool::new(false),
                ttl,
            }),
        }
    }

    /// The answer for `key`, when it is known and fresh and the bus is up.
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        if !self.inner.trusted.load(Ordering::SeqCst) {
            return None;
        }
        let entries = self.entries();
        entries
            .get(key)
            .filter(|(_, cached_at)| cached_at.elapsed() < self.inner.ttl)
            .map(|(value, _)| value.clone())
    }

    /// A token to pass to [`BusCache::remember`]: taken before the database
    /// is asked.
    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::SeqCst)
    }

    /// Records what the database said, unless an eviction arrived since
    /// `generation` was taken.
    pub fn remember(&self, generation: u64, key: K, value: V) {
        let mut entries = self.entries();
        if self.generation() != generation {
            return;
        }
        if entries.len() >= MAX_ENTRIES {
            let ttl = self.inner.ttl;
            entries.retain(|_, (_, cached_at)| cached_at.elapsed() < ttl);
        }
        entries.insert(key, (value, Instant::now()));
    }

    /// Drops the entries `evicted` names.
    pub fn forget_where(&self, evicted: impl Fn(&K, &V) -> bool) {
        let mut entries = self.entries();
        self.inner.generation.fetch_add(1, Ordering::SeqCst);
        entries.retain(|key, (value, _)| !evicted(key, value));
    }

    /// Drops everything.
    pub fn clear(&self) {
        let mut entries = self.entries();
        self.inner.generation.fetch_add(1, Ordering::SeqCst);
        entries.clear();
    }

    /// Keeps the cache in step with the bus until shutdown; `apply` acts
    /// on each event (topic, payload).
    pub fn follow(
        &self,
        bus: &EventBus,
        shutdown: CancellationToken,
        apply: impl Fn(&str, &str) + Send + 'static,
    ) -> impl Future<Output = ()> + Send + 'static {
        let cache = self.clone();
        let (mut messages, connected) = bus.subscribe();
        cache.inner.trusted.store(connected, Ordering::SeqCst);
        async move {
            loop {
                let message = tokio::select! {
                    () = shutdown.cancelled() => return,
                    message = messages.recv() => message,
                };
                match message {
                    Ok(BusMessage::Event { topic, payload }) => apply(&topic, &payload),
                    Ok(BusMessage::Resync) => {
                        cache.clear();
                        cache.inner.trusted.store(true, Ordering::SeqCst);
                    }
                    Ok(BusMessage::Disconnected) => {
                        cache.inner.trusted.store(false, Ordering::SeqCst);
                        cache.clear();
                    }
                    Err(RecvError::Lagged(_)) => cache.clear(),
                    Err(RecvError::Closed) => return,
                }
            }
        }
    }

    /// Trusts the cache as if the bus were connected (for unit tests).
    #[cfg(test)]
    pub fn trust(&self) {
        self.inner.trusted.store(true, Ordering::SeqCst);
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<K, (V, Instant)>> {
        self.inner.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}
