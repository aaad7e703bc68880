//! From a bearer secret to the key a request acts as.
//!
//! Unknown, revoked and expired keys, and keys whose creator is no longer
//! an unsuspended member of the key's organization, are UNAUTHENTICATED; a
//! client address the key does not allow is FORBIDDEN (the contract's
//! "Which code where"). A key acts with its scopes less what its creator's
//! current role no longer allows.

use std::{net::IpAddr, sync::Arc};

use chrono::{DateTime, Utc};
use ipnet::IpNet;
use uuid::Uuid;

use crate::{
    AppState, KeyIdentity,
    keys::{
        cache::CachedKey,
        model::{self, ApiKeyRow},
        secret,
    },
    roles::OrgRole,
};
use tollgate_core::error::{AppError, AppResult};
use tollgate_platform::client_ip::canonical;

/// The key behind `secret`, used from `client_ip`, with its expiry.
pub async fn resolve_key(app: &AppState, secret: &str, client_ip: IpAddr) -> AppResult<CachedKey> {
    let hash = secret::hash(secret);
    let now = app.now();
    let key = match app.key_cache().get(&hash) {
        Some(key) => key,
        None => load(app, hash).await?,
    };
    if key.expires_at.is_some_and(|at| at <= now) {
        return Err(AppError::unauthenticated());
    }
    if !ip_allowed(key.allowed_ips.as_deref(), client_ip) {
        return Err(AppError::client(
            tollgate_core::error::ErrorCode::Forbidden,
            "this API key may not be used from this address",
        ));
    }
    record_use(app, key.identity.key_id, now);
    Ok(key)
}

/// Asks the database, and remembers a usable key.
async fn load(app: &AppState, hash: Vec<u8>) -> AppResult<CachedKey> {
    let cache = app.key_cache();
    let generation = cache.generation();
    let mut conn = app.db().await?;
    let (row, creator_role) = model::find_usable_by_hash(&mut conn, &hash)
        .await?
        .ok_or_else(AppError::unauthenticated)?;
    drop(conn);
    let key = cached_key(&row, creator_role)?;
    cache.remember(generation, hash, key.clone());
    Ok(key)
}

/// What the cache keeps of a row, its creator holding `creator_role`.
/// Stored addresses were validated when the key was created, so one that
/// no longer parses is a fault of ours.
fn cached_key(row: &ApiKeyRow, creator_role: OrgRole) -> AppResult<CachedKey> {
    let allowed_ips = match row.allowed_ip_list() {
        Some(list) => Some(
            list.iter()
                .map(|text| parse_network(text))
                .collect::<Option<Arc<[IpNet]>>>()
                .ok_or_else(|| {
                    AppError::internal(anyhow::anyhow!("key {} has an unreadable allowed address", row.id))
                })?,
        ),
        None => None,
    };
    Ok(CachedKey {
        identity: Arc::new(KeyIdentity {
            key_id: row.id,
            organization_id: row.organization_id,
            created_by: row.created_by,
            scopes: row.scope_set().within_role_of_creator(creator_role),
            allowed_models: row.allowed_model_list(),
            token_limit: row.token_limit,
        }),
        allowed_ips,
        expires_at: row.expires_at,
    })
}

/// An address (`10.1.2.3`, `::1`) or a CIDR range (`10.0.0.0/8`,
/// `2001:db8::/32`). IPv4-mapped IPv6 forms read as IPv4, like client
/// addresses do, so `::ffff:10.0.0.1` and `10.0.0.1` are one rule.
pub fn parse_network(text: &str) -> Option<IpNet> {
    let text = text.trim();
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(IpNet::from(canonical(ip)));
    }
    let net = text.parse::<IpNet>().ok()?;
    let net = match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => IpNet::new(IpAddr::V4(v4), v6.prefix_len() - 96).ok()?,
            None => net,
        },
        _ => net,
    };
    Some(net.trunc())
}

/// Whether `client_ip` falls in one of `allowed` (None = anywhere).
pub fn ip_allowed(allowed: Option<&[IpNet]>, client_ip: IpAddr) -> bool {
    let Some(allowed) = allowed else {
        return true;
    };
    let ip = canonical(client_ip);
    allowed.iter().any(|net| net.contains(&ip))
}

/// Writes `lastUsedAt` off the response path, at most once a minute per
/// key: throttled here per instance, and by the conditional UPDATE across
/// instances. It runs on the jobs pool, so a burst of key traffic never
/// takes request connections for bookkeeping.
fn record_use(app: &AppState, key_id: Uuid, now: DateTime<Utc>) {
    if !app.key_cache().should_touch(key_id, now) {
        return;
    }
    let pool = app.jobs_pool().clone();
    app.tasks().spawn(tollgate_db::hold::scoped(async move {
        let written = match pool.get().await {
            Ok(mut conn) => model::touch_last_used(&mut conn, key_id, now)
                .await
                .map_err(anyhow::Error::from),
            Err(e) => Err(anyhow::Error::from(e)),
        };
        if let Err(e) = written {
            tracing::warn!(error = %e, key = %key_id, "could not record an API key's last use");
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|t| parse_network(t).unwrap()).collect()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn addresses_and_ranges_of_both_families_match() {
        let allowed = nets(&["10.0.0.0/8", "192.168.1.7", "2001:db8::/32", "::1"]);
        assert!(ip_allowed(Some(&allowed), ip("10.20.30.40")));
        assert!(ip_allowed(Some(&allowed), ip("192.168.1.7")));
        assert!(!ip_allowed(Some(&allowed), ip("192.168.1.8")));
        assert!(ip_allowed(Some(&allowed), ip("2001:db8:1::5")));
        assert!(ip_allowed(Some(&allowed), ip("::1")));
        assert!(!ip_allowed(Some(&allowed), ip("127.0.0.1")));
        assert!(ip_allowed(None, ip("127.0.0.1")));
    }

    #[test]
    fn ipv4_mapped_forms_read_as_ipv4() {
        let allowed = nets(&["::ffff:10.0.0.0/104"]);
        assert_eq!(allowed, nets(&["10.0.0.0/8"]));
        assert!(ip_allowed(Some(&allowed), ip("::ffff:10.1.2.3")));
        assert!(ip_allowed(Some(&allowed), ip("10.1.2.3")));
        assert_eq!(parse_network("::ffff:1.2.3.4"), parse_network("1.2.3.4"));
    }

    #[test]
    fn garbage_is_not_a_network() {
        assert!(parse_network("10.0.0.0/33").is_none());
        assert!(parse_network("localhost").is_none());
        assert!(parse_network("").is_none());
    }

    #[test]
    fn host_bits_of_a_range_are_dropped() {
        assert_eq!(parse_network("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
    }
}
