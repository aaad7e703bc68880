//! Live usage: each recorded event reaches every subscriber of its
//! organization on every instance, and subscriptions end when their
//! caller loses access.
//!
//! The recording instance publishes `usage.recorded` on the event bus after
//! commit (Redis pub/sub, or PostgreSQL LISTEN/NOTIFY without Redis). One
//! hub per instance follows the bus, reads each message once and routes it
//! to the organization's local channel, where all of that organization's
//! subscribers share it: a subscriber only ever sees its own
//! organization's events, and ten thousand of them cost one parse. The bus uses one shared channel
//! rather than one per organization: an instance then holds one Redis
//! subscription whatever the number of tenants, and the routing by
//! organization happens here, in memory.
//!
//! The same hub turns announced access changes (sessions ended, keys
//! revoked, memberships ended, platform roles changed; see
//! [`tollgate_platform::announcements`]) into [`AccessChange`]s that
//! websocket connections and subscriptions act on.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::Deserialize;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::usage::live_message::UsageUpdateMessage;
use tollgate_auth::{
    AppState, Principal,
    keys::events::{KEY_REVOKED, KeyRevoked},
    membership_events::{MEMBERSHIP_ENDED, MembershipEnded},
    role_events::{ROLE_CHANGED, RoleChanged},
    session_cache::{Revocation, SESSION_REVOKED},
    sessions,
    users::Role,
};
use tollgate_core::error::AppResult;
use tollgate_db::schema::{memberships, users};
use tollgate_platform::{
    announcements::{Announcements, Heard},
    events::{BusMessage, EventBus},
};

/// The bus topic of recorded usage.
pub const USAGE_RECORDED: &str = "usage.recorded";
/// Updates one subscriber may fall behind before it is dropped: a client
/// too slow to read is cut off rather than buffered for without bound.
const SUBSCRIBER_BACKLOG: usize = 256;
/// Access changes a connection may fall behind before it must recheck.
const ACCESS_BACKLOG: usize = 1024;

/// Something that may end a connection's or a subscription's access.
#[derive(Debug, Clone)]
pub enum AccessChange {
    /// Sessions ended (logout, revocation, password change, suspension).
    SessionsEnded(Revocation),
    /// An API key was revoked, or stopped working because of its creator.
    KeyRevoked(KeyRevoked),
    /// Someone stopped being a member of an organization.
    MembershipEnded(MembershipEnded),
    /// Someone's platform role changed (staff may watch any organization).
    RoleChanged(RoleChanged),
    /// Changes may have been missed (announcements could not be read for
    /// a while, or a listener fell behind): everyone must recheck against
    /// the database.
    Unknown,
}

/// Routes usage and access changes to this instance's subscribers.
#[derive(Clone)]
pub struct UsageHub {
    inner: Arc<HubInner>,
}

struct HubInner {
    organizations: Mutex<HashMap<Uuid, broadcast::Sender<Arc<LiveUsage>>>>,
    access: broadcast::Sender<AccessChange>,
    connections: Mutex<HashMap<Uuid, usize>>,
}

/// Shapes of answer one event keeps (subscribers asking for more shapes
/// than this make theirs themselves).
const MAX_RENDERINGS: usize = 16;

/// One recorded event as this instance's subscribers of its organization
/// share it: the message, read once, and the answers made from it.
pub struct LiveUsage {
    /// The event, its quota and threshold.
    pub message: UsageUpdateMessage,
    /// Answers made from the message alone (their JSON), by the shape
    /// asked for, so that the subscribers asking for the same shape share
    /// one.
    renderings: Mutex<Vec<(String, Arc<String>)>>,
}

impl LiveUsage {
    /// An event as read from the bus.
    pub fn new(message: UsageUpdateMessage) -> Self {
        Self {
            message,
            renderings: Mutex::new(Vec::new()),
        }
    }

    /// The answer made for `shape` already, if any. `shape` must say
    /// everything the answer depends on besides the message.
    pub fn rendering(&self, shape: &str) -> Option<Arc<String>> {
        let renderings = self.renderings.lock().unwrap_or_else(|p| p.into_inner());
        let (_, rendering) = renderings.iter().find(|(kept, _)| kept == shape)?;
        Some(Arc::clone(rendering))
    }

    /// Keeps the answer made for `shape` for the subscribers after this one.
    pub fn keep(&self, shape: String, rendering: Arc<String>) {
        let mut renderings = self.renderings.lock().unwrap_or_else(|p| p.into_inner());
        if renderings.len() < MAX_RENDERINGS && renderings.iter().all(|(kept, _)| *kept != shape) {
            renderings.push((shape, rendering));
        }
    }
}

/// Websocket connections one user or key may hold open on one instance.
pub const MAX_CONNECTIONS_PER_PRINCIPAL: usize = 20;

/// Holds one of a principal's connection slots until dropped.
pub struct ConnectionSlot {
    hub: UsageHub,
    owner: Uuid,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut connections = self.hub.inner.connections.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = connections.get_mut(&self.owner) {
            *count -= 1;
            if *count == 0 {
                connections.remove(&self.owner);
            }
        }
    }
}

impl Default for UsageHub {
    fn default() -> Self {
        Self {
            inner: Arc::new(HubInner {
                organizations: Mutex::new(HashMap::new()),
                access: broadcast::channel(ACCESS_BACKLOG).0,
                connections: Mutex::new(HashMap::new()),
            }),
        }
    }
}

impl UsageHub {
    /// The usage of one organization from now on, each message read once
    /// and shared by all its subscribers on this instance.
    pub fn follow_organization(&self, organization_id: Uuid) -> broadcast::Receiver<Arc<LiveUsage>> {
        let mut organizations = self.inner.organizations.lock().unwrap_or_else(|p| p.into_inner());
        organizations
            .entry(organization_id)
            .or_insert_with(|| broadcast::channel(SUBSCRIBER_BACKLOG).0)
            .subscribe()
    }

    /// Forgets the organization's channel when the subscriber about to go
    /// (whose receiver still counts) is its last, so channels live only
    /// while someone watches.
    pub fn release_organization(&self, organization_id: Uuid) {
        let mut organizations = self.inner.organizations.lock().unwrap_or_else(|p| p.into_inner());
        if organizations
            .get(&organization_id)
            .is_some_and(|sender| sender.receiver_count() <= 1)
        {
            organizations.remove(&organization_id);
        }
    }

    /// Takes one of `owner`'s connection slots (a user id or a key id);
    /// None when all are taken.
    pub fn open_connection(&self, owner: Uuid) -> Option<ConnectionSlot> {
        let mut connections = self.inner.connections.lock().unwrap_or_else(|p| p.into_inner());
        let count = connections.entry(owner).or_default();
        if *count >= MAX_CONNECTIONS_PER_PRINCIPAL {
            return None;
        }
        *count += 1;
        Some(ConnectionSlot {
            hub: self.clone(),
            owner,
        })
    }

    /// Access changes from now on.
    pub fn access_changes(&self) -> broadcast::Receiver<AccessChange> {
        self.inner.access.subscribe()
    }

    fn route_usage(&self, payload: &str) {
        let Ok(message) = UsageUpdateMessage::from_json(payload) else {
            tracing::warn!("unreadable usage.recorded message dropped");
            return;
        };
        let organization_id = message.organization_id;
        let mut organizations = self.inner.organizations.lock().unwrap_or_else(|p| p.into_inner());
        let Some(sender) = organizations.get(&organization_id) else {
            return;
        };
        if sender.send(Arc::new(LiveUsage::new(message))).is_err() {
            // Nobody listens any more: forget the channel.
            organizations.remove(&organization_id);
        }
    }

    fn announce(&self, change: AccessChange) {
        // No receivers is fine: no connection is open.
        let _ = self.inner.access.send(change);
    }

    /// An announced access change, for the connections to judge.
    fn heard(&self, heard: &Heard<'_>) {
        let Heard::Announced { topic, payload } = *heard else {
            self.announce(AccessChange::Unknown);
            return;
        };
        let change = match topic {
            SESSION_REVOKED => parse(payload, AccessChange::SessionsEnded),
            KEY_REVOKED => parse(payload, AccessChange::KeyRevoked),
            MEMBERSHIP_ENDED => parse(payload, AccessChange::MembershipEnded),
            ROLE_CHANGED => parse(payload, AccessChange::RoleChanged),
            _ => return,
        };
        self.announce(change);
    }

    /// Follows announced access changes from now on.
    pub fn follow_announcements(&self, announcements: &Announcements) {
        let hub = self.clone();
        announcements.listen(move |heard| hub.heard(heard));
    }

    /// Routes usage from the bus until shutdown. Usage missed while the bus
    /// is down is not sent late: subscribers read it back from the
    /// organization's events.
    pub fn follow_usage(
        &self,
        bus: &EventBus,
        shutdown: CancellationToken,
    ) -> impl Future<Output = ()> + Send + 'static {
        let hub = self.clone();
        let (mut messages, _) = bus.subscribe();
        async move {
            loop {
                let message = tokio::select! {
                    () = shutdown.cancelled() => return,
                    message = messages.recv() => message,
                };
                match message {
                    Ok(BusMessage::Event { topic, payload }) if &*topic == USAGE_RECORDED => hub.route_usage(&payload),
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return,
                }
            }
        }
    }
}

/// A change read from its payload; an unreadable one means "recheck".
fn parse<T: for<'de> Deserialize<'de>>(payload: &str, wrap: impl FnOnce(T) -> AccessChange) -> AccessChange {
    serde_json::from_str(payload).map(wrap).unwrap_or(AccessChange::Unknown)
}

/// What an access change means for a connection's caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing to do.
    Unaffected,
    /// The caller's credentials stopped working: close the connection.
    Ended,
    /// The change may concern the caller: ask the database.
    Recheck,
}

/// Decides locally, from the change alone, what it means for `principal`.
pub fn verdict(principal: &Principal, change: &AccessChange) -> Verdict {
    match (principal, change) {
        (_, AccessChange::Unknown) => Verdict::Recheck,
        (Principal::User { user_id, session_id }, AccessChange::SessionsEnded(revocation)) => {
            if revocation.sessions.contains(session_id) || revocation.user == Some(*user_id) {
                Verdict::Ended
            } else {
                Verdict::Unaffected
            }
        }
        // A key dies with its creator's account (suspension ends every
        // session of the creator).
        (Principal::ApiKey(key), AccessChange::SessionsEnded(revocation)) => {
            if revocation.user == Some(key.created_by) {
                Verdict::Recheck
            } else {
                Verdict::Unaffected
            }
        }
        (Principal::ApiKey(key), AccessChange::KeyRevoked(revoked)) if revoked.key_id == key.key_id => Verdict::Ended,
        (Principal::ApiKey(key), AccessChange::MembershipEnded(ended))
            if ended.organization_id == key.organization_id && ended.user_id == key.created_by =>
        {
            Verdict::Ended
        }
        _ => Verdict::Unaffected,
    }
}

/// Whether the caller's credentials still work, asked of the database
/// (caches may not have heard of the change yet).
pub async fn still_valid(app: &AppState, principal: &Principal) -> AppResult<bool> {
    let now = app.now();
    let mut conn = app.db().await?;
    match principal {
        Principal::Anonymous => Ok(true),
        Principal::User { user_id, session_id } => Ok(sessions::check_live(&mut conn, *session_id, *user_id, now)
            .await?
            .is_some()),
        Principal::ApiKey(key) => Ok(tollgate_auth::keys::model::is_usable(&mut conn, key.key_id, now).await?),
    }
}

/// Whether `principal` may still watch the organization's usage, asked of
/// the database: members of any role and platform staff (keys are judged
/// by [`still_valid`], as a key is bound to its organization).
pub async fn may_watch(app: &AppState, principal: &Principal, organization_id: Uuid) -> AppResult<bool> {
    let Some(user_id) = principal.user_id() else {
        return Ok(true);
    };
    let mut conn = app.db().await?;
    let member = diesel::select(diesel::dsl::exists(
        memberships::table
            .filter(memberships::organization_id.eq(organization_id))
            .filter(memberships::user_id.eq(user_id)),
    ))
    .get_result::<bool>(&mut conn)
    .await?;
    if member {
        return Ok(true);
    }
    let role: Option<Role> = users::table
        .find(user_id)
        .select(users::role)
        .first(&mut conn)
        .await
        .optional()?;
    Ok(role.is_some_and(Role::is_staff))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn has_channel(hub: &UsageHub, organization_id: Uuid) -> bool {
        hub.inner.organizations.lock().unwrap().contains_key(&organization_id)
    }

    #[test]
    fn an_organizations_channel_lives_only_while_someone_watches() {
        let hub = UsageHub::default();
        let organization = Uuid::now_v7();
        let first = hub.follow_organization(organization);
        let second = hub.follow_organization(organization);
        // The first subscriber leaves: the second still watches.
        hub.release_organization(organization);
        drop(first);
        assert!(has_channel(&hub, organization));
        // The last one leaves.
        hub.release_organization(organization);
        drop(second);
        assert!(!has_channel(&hub, organization));
    }

    #[test]
    fn a_session_ending_ends_only_its_own_connections() {
        let (user_id, session_id) = (Uuid::now_v7(), Uuid::now_v7());
        let principal = Principal::User { user_id, session_id };
        let ended = |sessions: Vec<Uuid>, user: Option<Uuid>| {
            verdict(&principal, &AccessChange::SessionsEnded(Revocation { sessions, user }))
        };
        assert_eq!(ended(vec![session_id], None), Verdict::Ended);
        assert_eq!(ended(vec![], Some(user_id)), Verdict::Ended);
        assert_eq!(ended(vec![Uuid::now_v7()], None), Verdict::Unaffected);
        assert_eq!(verdict(&principal, &AccessChange::Unknown), Verdict::Recheck);
    }
}
