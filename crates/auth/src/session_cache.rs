//! Which sessions are still live, remembered per instance so checking an
//! access token costs no database round trip.
//!
//! Ending a session (logout, revocation, password reset, suspension)
//! announces `session.revoked` in the transaction that ends it; every
//! instance drops the session from its cache at once (the rules every
//! announced cache follows are in [`tollgate_platform::announced_cache`]).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use tollgate_platform::{
    announced_cache::AnnouncedCache,
    announcements::{Announcement, Announcements},
};

/// The bus topic that announces ended sessions.
pub const SESSION_REVOKED: &str = "session.revoked";
/// How long a cached answer is trusted at most (a backstop: revocations
/// arrive as announcements).
const TTL: Duration = Duration::from_secs(10);

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

impl Revocation {
    /// The `session.revoked` announcement.
    pub fn announcement(&self) -> Announcement {
        Announcement::new(SESSION_REVOKED, self)
    }
}

/// A live session as the database described it.
#[derive(Debug, Clone, Copy)]
struct LiveSession {
    user_id: Uuid,
    expires_at: DateTime<Utc>,
}

/// Live sessions this instance has seen recently, by session id.
#[derive(Clone)]
pub struct SessionCache {
    sessions: AnnouncedCache<Uuid, LiveSession>,
}

impl Default for SessionCache {
    fn default() -> Self {
        Self {
            sessions: AnnouncedCache::new(TTL),
        }
    }
}

impl SessionCache {
    /// Whether `session_id` of `user_id` is known live at `now`.
    pub fn is_live(&self, session_id: Uuid, user_id: Uuid, now: DateTime<Utc>) -> bool {
        self.live_until(session_id, user_id, now).is_some()
    }

    /// When the session expires, if it is known live at `now`.
    pub fn live_until(&self, session_id: Uuid, user_id: Uuid, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.sessions
            .get(&session_id)
            .filter(|session| session.user_id == user_id && session.expires_at > now)
            .map(|session| session.expires_at)
    }

    /// A token to pass to [`SessionCache::remember`]: taken before the
    /// database is asked.
    pub fn generation(&self) -> u64 {
        self.sessions.generation()
    }

    /// Records a session the database said is live, unless a revocation
    /// arrived since `generation` was taken.
    pub fn remember(&self, generation: u64, session_id: Uuid, user_id: Uuid, expires_at: DateTime<Utc>) {
        self.sessions
            .remember(generation, session_id, LiveSession { user_id, expires_at });
    }

    /// Applies a revocation.
    pub fn forget(&self, revocation: &Revocation) {
        self.sessions.forget_where(|session_id, session| {
            revocation.sessions.contains(session_id) || revocation.user == Some(session.user_id)
        });
    }

    /// Keeps the cache in step with the announcements; an unreadable
    /// revocation clears everything (it may have named any session).
    pub fn follow(&self, announcements: &Announcements) {
        let cache = self.clone();
        self.sessions.follow(announcements, move |topic, payload| {
            if topic != SESSION_REVOKED {
                return;
            }
            match serde_json::from_str::<Revocation>(payload) {
                Ok(revocation) => cache.forget(&revocation),
                Err(_) => cache.sessions.clear(),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revocation_racing_a_lookup_wins() {
        let cache = SessionCache::default();
        cache.sessions.trust();
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
