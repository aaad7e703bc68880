//! Which sessions are still live, remembered per instance so checking an
//! access token costs no database round trip.
//!
//! Ending a session (logout, revocation, password reset, suspension)
//! publishes `session.revoked` on the event bus; every instance drops the
//! session from its cache at once, and drops everything when its bus
//! subscription is re-established (it may have missed messages). A
//! generation counter stops a lookup that raced with a revocation from
//! putting the stale answer back. The TTL is only a backstop.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::platform::events::{BusMessage, EventBus};

/// The bus topic that announces ended sessions.
pub const SESSION_REVOKED: &str = "session.revoked";
/// How long a cached answer is trusted without any message: the bound on
/// a revocation missed by a connection that failed without closing.
const TTL: Duration = Duration::from_secs(10);
/// Entries kept before the cache is swept.
const MAX_ENTRIES: usize = 100_000;

/// What `session.revoked` carries: some sessions, or all of a user's.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Revocation {
    /// Sessions that ended.
    #[serde(default)]
    pub sessions: Vec<Uuid>,
    /// A user all of whose sessions ended.
    #[serde(default)]
    pub user: Option<Uuid>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    user_id: Uuid,
    expires_at: DateTime<Utc>,
    cached_at: Instant,
}

/// Live sessions this instance has seen recently.
#[derive(Clone, Default)]
pub struct SessionCache {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: Mutex<HashMap<Uuid, Entry>>,
    generation: AtomicU64,
    /// False while the bus is down (and before it first connects): every
    /// check then asks the database.
    trusted: AtomicBool,
}

impl SessionCache {
    /// Whether `session_id` of `user_id` is known live at `now`.
    pub fn is_live(&self, session_id: Uuid, user_id: Uuid, now: DateTime<Utc>) -> bool {
        self.live_until(session_id, user_id, now).is_some()
    }

    /// When the session expires, if it is known live at `now`.
    pub fn live_until(&self, session_id: Uuid, user_id: Uuid, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if !self.inner.trusted.load(Ordering::SeqCst) {
            return None;
        }
        let entries = self.inner.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(&session_id)
            .filter(|e| e.user_id == user_id && e.expires_at > now && e.cached_at.elapsed() < TTL)
            .map(|e| e.expires_at)
    }

    /// A token to pass to [`SessionCache::remember`]: taken before the
    /// database is asked.
    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::SeqCst)
    }

    /// Records a session the database said is live, unless a revocation
    /// arrived since `generation` was taken.
    pub fn remember(&self, generation: u64, session_id: Uuid, user_id: Uuid, expires_at: DateTime<Utc>) {
        let mut entries = self.inner.entries.lock().unwrap_or_else(|p| p.into_inner());
        if self.generation() != generation {
            return;
        }
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, e| e.cached_at.elapsed() < TTL);
        }
        entries.insert(
            session_id,
            Entry {
                user_id,
                expires_at,
                cached_at: Instant::now(),
            },
        );
    }

    /// Applies a revocation.
    pub fn forget(&self, revocation: &Revocation) {
        let mut entries = self.inner.entries.lock().unwrap_or_else(|p| p.into_inner());
        self.inner.generation.fetch_add(1, Ordering::SeqCst);
        for session in &revocation.sessions {
            entries.remove(session);
        }
        if let Some(user) = revocation.user {
            entries.retain(|_, e| e.user_id != user);
        }
    }

    /// Forgets everything.
    pub fn clear(&self) {
        let mut entries = self.inner.entries.lock().unwrap_or_else(|p| p.into_inner());
        self.inner.generation.fetch_add(1, Ordering::SeqCst);
        entries.clear();
    }

    /// Keeps the cache in step with the bus until shutdown.
    pub fn follow(&self, bus: &EventBus, shutdown: CancellationToken) -> impl Future<Output = ()> + Send + 'static {
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
                    Ok(BusMessage::Event { topic, payload }) if &*topic == SESSION_REVOKED => {
                        match serde_json::from_str::<Revocation>(&payload) {
                            Ok(revocation) => cache.forget(&revocation),
                            Err(_) => cache.clear(),
                        }
                    }
                    Ok(BusMessage::Event { .. }) => {}
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revocation_racing_a_lookup_wins() {
        let cache = SessionCache::default();
        cache.inner.trusted.store(true, Ordering::SeqCst);
        let (session, user, later) = (Uuid::new_v4(), Uuid::new_v4(), Utc::now() + chrono::Duration::hours(1));
        let before_lookup = cache.generation();
        cache.forget(&Revocation {
            sessions: vec![session],
            user: None,
        });
        cache.remember(before_lookup, session, user, later);
        assert!(!cache.is_live(session, user, Utc::now()));

        cache.remember(cache.generation(), session, user, later);
        assert!(cache.is_live(session, user, Utc::now()));
        cache.forget(&Revocation {
            sessions: vec![],
            user: Some(user),
        });
        assert!(!cache.is_live(session, user, Utc::now()));
    }
}
