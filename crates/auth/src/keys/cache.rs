//! Resolved API keys, remembered per instance by secret hash so a request
//! made with a key costs no database round trip for the key itself.
//!
//! A key that stops working, or whose powers shrink, is announced
//! (`api_key.revoked` when it is revoked, `membership.ended` when its
//! creator leaves the organization, `membership.role_changed` when the
//! creator's role there changes, `session.revoked` naming a user whose
//! every session ended, as a suspension does) and every instance drops it
//! at once; the rules every announced cache follows are in
//! [`tollgate_platform::announced_cache`].
//!
//! It also throttles `lastUsedAt` writes to one a minute per key.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, Utc};
use ipnet::IpNet;
use uuid::Uuid;

use tollgate_platform::{announced_cache::AnnouncedCache, announcements::Announcements};

use crate::{
    KeyIdentity,
    keys::{
        events::{KEY_REVOKED, KeyRevoked},
        model::LAST_USED_RESOLUTION,
    },
    membership_events::{MEMBERSHIP_ENDED, MEMBERSHIP_ROLE_CHANGED, MemberRoleChanged, MembershipEnded},
    session_cache::{Revocation, SESSION_REVOKED},
};

/// How long a cached key is trusted at most (a backstop: changes arrive as
/// announcements).
const TTL: Duration = Duration::from_secs(30);
/// Entries kept before the cache is swept.
const MAX_ENTRIES: usize = 100_000;

/// A key as requests need it, with what must be checked on every use.
#[derive(Debug, Clone)]
pub struct CachedKey {
    /// What the request acts as.
    pub identity: Arc<KeyIdentity>,
    /// Networks it may be used from; None = any.
    pub allowed_ips: Option<Arc<[IpNet]>>,
    /// When it stops working by itself.
    pub expires_at: Option<DateTime<Utc>>,
}

/// Which cached keys to drop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    /// One key.
    Key(Uuid),
    /// Keys a person created in an organization where they are no longer
    /// a member, or are one with another role.
    Membership {
        /// The organization.
        organization_id: Uuid,
        /// The former member.
        user_id: Uuid,
    },
    /// Every key a person created (suspended or deleted).
    Creator(Uuid),
}

impl Eviction {
    fn matches(self, key: &KeyIdentity) -> bool {
        match self {
            Self::Key(id) => key.key_id == id,
            Self::Membership {
                organization_id,
                user_id,
            } => key.organization_id == organization_id && key.created_by == user_id,
            Self::Creator(user_id) => key.created_by == user_id,
        }
    }
}

/// Keys this instance resolved recently, by secret hash.
#[derive(Clone)]
pub struct KeyCache {
    keys: AnnouncedCache<Vec<u8>, CachedKey>,
    /// When this instance last wrote each key's `last_used_at`.
    last_used: Arc<Mutex<HashMap<Uuid, DateTime<Utc>>>>,
}

impl Default for KeyCache {
    fn default() -> Self {
        Self {
            keys: AnnouncedCache::new(TTL),
            last_used: Arc::default(),
        }
    }
}

impl KeyCache {
    /// The key with this secret hash, when it is known and fresh.
    pub fn get(&self, hash: &[u8]) -> Option<CachedKey> {
        self.keys.get(hash)
    }

    /// A token to pass to [`KeyCache::remember`]: taken before the database
    /// is asked.
    pub fn generation(&self) -> u64 {
        self.keys.generation()
    }

    /// Records a key the database said is usable, unless an eviction
    /// arrived since `generation` was taken.
    pub fn remember(&self, generation: u64, hash: Vec<u8>, key: CachedKey) {
        self.keys.remember(generation, hash, key);
    }

    /// Drops the keys `eviction` names.
    pub fn forget(&self, eviction: Eviction) {
        self.keys.forget_where(|_, key| eviction.matches(&key.identity));
    }

    /// Whether this use of `key_id` at `now` should be written as its
    /// `lastUsedAt`: at most once per [`LAST_USED_RESOLUTION`] per instance
    /// (the conditional UPDATE takes care of the other instances).
    pub fn should_touch(&self, key_id: Uuid, now: DateTime<Utc>) -> bool {
        let mut last_used = self.last_used.lock().unwrap_or_else(|p| p.into_inner());
        if last_used
            .get(&key_id)
            .is_some_and(|at| now - *at < LAST_USED_RESOLUTION)
        {
            return false;
        }
        if last_used.len() >= MAX_ENTRIES {
            last_used.retain(|_, at| now - *at < LAST_USED_RESOLUTION);
        }
        last_used.insert(key_id, now);
        true
    }

    /// Keeps the cache in step with the announcements.
    pub fn follow(&self, announcements: &Announcements) {
        let cache = self.clone();
        self.keys
            .follow(announcements, move |topic, payload| cache.apply(topic, payload));
    }

    /// Applies one announcement; an unreadable one about keys clears
    /// everything (it may have named any key).
    fn apply(&self, topic: &str, payload: &str) {
        let eviction = match topic {
            KEY_REVOKED => serde_json::from_str::<KeyRevoked>(payload).map(|e| Some(Eviction::Key(e.key_id))),
            MEMBERSHIP_ENDED => serde_json::from_str::<MembershipEnded>(payload).map(|e| {
                Some(Eviction::Membership {
                    organization_id: e.organization_id,
                    user_id: e.user_id,
                })
            }),
            // The creator's role bounds what the key may do.
            MEMBERSHIP_ROLE_CHANGED => serde_json::from_str::<MemberRoleChanged>(payload).map(|e| {
                Some(Eviction::Membership {
                    organization_id: e.organization_id,
                    user_id: e.user_id,
                })
            }),
            // Ended sessions matter only when they are all of a user's.
            SESSION_REVOKED => serde_json::from_str::<Revocation>(payload).map(|r| r.user.map(Eviction::Creator)),
            _ => return,
        };
        match eviction {
            Ok(Some(eviction)) => self.forget(eviction),
            Ok(None) => {}
            Err(_) => self.keys.clear(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(organization_id: Uuid, created_by: Uuid) -> CachedKey {
        CachedKey {
            identity: Arc::new(KeyIdentity {
                key_id: Uuid::new_v4(),
                organization_id,
                created_by,
                scopes: Default::default(),
                allowed_models: None,
                token_limit: None,
            }),
            allowed_ips: None,
            expires_at: None,
        }
    }

    fn trusted() -> KeyCache {
        let cache = KeyCache::default();
        cache.keys.trust();
        cache
    }

    #[test]
    fn an_eviction_racing_a_lookup_wins() {
        let cache = trusted();
        let entry = key(Uuid::new_v4(), Uuid::new_v4());
        let before_lookup = cache.generation();
        cache.forget(Eviction::Key(entry.identity.key_id));
        cache.remember(before_lookup, b"hash".to_vec(), entry.clone());
        assert!(cache.get(b"hash").is_none());
        cache.remember(cache.generation(), b"hash".to_vec(), entry);
        assert!(cache.get(b"hash").is_some());
    }

    #[test]
    fn a_role_change_drops_the_keys_its_member_made_there() {
        let cache = trusted();
        let (org, member) = (Uuid::new_v4(), Uuid::new_v4());
        cache.remember(0, b"a".to_vec(), key(org, member));
        cache.remember(0, b"b".to_vec(), key(Uuid::new_v4(), member));
        let changed = MemberRoleChanged {
            organization_id: org,
            user_id: member,
        };
        cache.apply(MEMBERSHIP_ROLE_CHANGED, &serde_json::to_string(&changed).unwrap());
        assert!(cache.get(b"a").is_none());
        assert!(cache.get(b"b").is_some());
    }

    #[test]
    fn evictions_name_a_key_a_membership_or_a_creator() {
        let cache = trusted();
        let (org, other_org, creator) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        cache.remember(0, b"a".to_vec(), key(org, creator));
        cache.remember(0, b"b".to_vec(), key(other_org, creator));
        cache.remember(0, b"c".to_vec(), key(org, Uuid::new_v4()));
        cache.apply(
            MEMBERSHIP_ENDED,
            &serde_json::to_string(&MembershipEnded {
                organization_id: org,
                user_id: creator,
            })
            .unwrap(),
        );
        assert!(cache.get(b"a").is_none());
        assert!(cache.get(b"b").is_some());
        // Ended sessions of unnamed users say nothing about keys.
        cache.apply(
            SESSION_REVOKED,
            r#"{"sessions":["00000000-0000-0000-0000-000000000001"]}"#,
        );
        assert!(cache.get(b"b").is_some());
        cache.apply(SESSION_REVOKED, &format!(r#"{{"user":"{creator}"}}"#));
        assert!(cache.get(b"b").is_none());
        assert!(cache.get(b"c").is_some());
        cache.apply(KEY_REVOKED, "not json");
        assert!(cache.get(b"c").is_none());
    }

    #[test]
    fn nothing_is_trusted_before_the_bus_connects() {
        let cache = KeyCache::default();
        cache.remember(0, b"a".to_vec(), key(Uuid::new_v4(), Uuid::new_v4()));
        assert!(cache.get(b"a").is_none());
    }

    #[test]
    fn last_used_is_written_once_a_minute() {
        let cache = KeyCache::default();
        let (id, now) = (Uuid::new_v4(), Utc::now());
        assert!(cache.should_touch(id, now));
        assert!(!cache.should_touch(id, now + chrono::Duration::seconds(59)));
        assert!(cache.should_touch(id, now + chrono::Duration::seconds(61)));
    }
}
