//! A per-instance cache of answers the database gave, kept honest by the
//! announcements ([`crate::platform::announcements`]): what the session and
//! API key caches share.
//!
//! An instance drops entries as soon as an announcement says they stopped
//! holding (each cache decides what an announcement means), and answers
//! from memory only while its announcements are current: when they could
//! not be read for a while, every lookup asks the database, and when
//! some may have been missed, everything is dropped. A generation counter
//! stops a lookup that raced with an eviction from putting the stale
//! answer back. The TTL is only a backstop.

use std::{
    borrow::Borrow,
    collections::HashMap,
    hash::Hash,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use crate::announcements::{Announcements, Heard};

/// Entries kept before the cache is swept of stale ones.
const MAX_ENTRIES: usize = 100_000;

/// Answers by key, trusted while announcements are current and they are
/// fresh.
pub struct AnnouncedCache<K, V> {
    inner: Arc<Inner<K, V>>,
}

impl<K, V> Clone for AnnouncedCache<K, V> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

struct Inner<K, V> {
    entries: Mutex<HashMap<K, (V, Instant)>>,
    generation: AtomicU64,
    /// Set by [`AnnouncedCache::follow`]; until then every lookup asks the
    /// database.
    announcements: OnceLock<Announcements>,
    ttl: Duration,
}

impl<K, V> AnnouncedCache<K, V>
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
                announcements: OnceLock::new(),
                ttl,
            }),
        }
    }

    /// The answer for `key`, when it is known and fresh and no
    /// announcement about it can be pending.
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        if !self.inner.announcements.get().is_some_and(Announcements::is_current) {
            return None;
        }
        let entries = self.entries();
        entries
            .get(key)
            .filter(|(_, cached_at)| cached_at.elapsed() < self.inner.ttl)
            .map(|(value, _)| value.clone())
    }

    /// A token to pass to [`AnnouncedCache::remember`]: taken before the
    /// database is asked.
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

    /// Keeps the cache in step with `announcements`: `apply` acts on each
    /// (topic, payload); missed ones clear everything.
    pub fn follow(&self, announcements: &Announcements, apply: impl Fn(&str, &str) + Send + Sync + 'static) {
        let cache = self.clone();
        announcements.listen(move |heard| match heard {
            Heard::Announced { topic, payload } => apply(topic, payload),
            Heard::Lost => cache.clear(),
        });
        // Once: an app builds each cache and follows it once.
        let _ = self.inner.announcements.set(announcements.clone());
    }

    /// Trusts the cache as if announcements were current (for unit tests).
    #[cfg(any(test, feature = "test-support"))]
    pub fn trust(&self) {
        let announcements = Announcements::default();
        announcements.assume_current();
        let _ = self.inner.announcements.set(announcements);
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<K, (V, Instant)>> {
        self.inner.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}
