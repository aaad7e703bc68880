//! Creating and revoking API keys.

use chrono::{DateTime, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use serde_json::json;
use uuid::Uuid;

use crate::{
    orgs::service::{audit_ip, find_membership, lock_as_member},
    plans::subscription::plan_in_effect,
};
use tollgate_auth::{
    AppState,
    keys::{
        events,
        model::{self, ApiKeyRow},
        resolve::parse_network,
        scope::ApiKeyScope,
        secret,
    },
    roles::OrgRole,
    users::require_verified,
};
use tollgate_core::error::{AppError, AppResult};
use tollgate_core::request::RequestMeta;
use tollgate_platform::{
    announcements::{self, Recorded},
    audit::{self, AuditEntry},
};

/// Longest key name, in characters.
const MAX_NAME_CHARS: usize = 100;
/// Most entries of `allowedModels` or `allowedIps`.
const MAX_LIST_ENTRIES: usize = 100;
/// Longest model name in `allowedModels`.
const MAX_MODEL_CHARS: usize = 200;

/// What `createApiKey` was asked for, before validation.
#[derive(Debug, Clone)]
pub struct KeyRequest {
    /// Display name.
    pub name: String,
    /// What the key may do.
    pub scopes: Vec<ApiKeyScope>,
    /// Model names it may be authorized for; None = every enabled model.
    pub allowed_models: Option<Vec<String>>,
    /// Addresses and CIDR ranges; None = any.
    pub allowed_ips: Option<Vec<String>>,
    /// Monthly token budget.
    pub token_limit: Option<i64>,
    /// When it stops working.
    pub expires_at: Option<DateTime<Utc>>,
}

/// A validated, normalized [`KeyRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyDraft {
    name: String,
    scopes: Vec<ApiKeyScope>,
    allowed_models: Option<Vec<String>>,
    allowed_ips: Option<Vec<String>>,
    token_limit: Option<i64>,
    expires_at: Option<DateTime<Utc>>,
}

/// Checks a request at `now`: BAD_USER_INPUT naming the first field that is
/// wrong.
pub fn validate(request: KeyRequest, now: DateTime<Utc>) -> AppResult<KeyDraft> {
    let name = request.name.trim().to_owned();
    let name_chars = name.chars().count();
    if name_chars == 0 || name_chars > MAX_NAME_CHARS {
        return Err(AppError::bad_input("name", "the name must be 1 to 100 characters"));
    }
    let mut scopes = Vec::new();
    for scope in request.scopes {
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    if scopes.is_empty() {
        return Err(AppError::bad_input("scopes", "give at least one scope"));
    }
    let allowed_models = request.allowed_models.map(normalize_models).transpose()?;
    let allowed_ips = request.allowed_ips.map(normalize_networks).transpose()?;
    if request.token_limit.is_some_and(|limit| limit < 0) {
        return Err(AppError::bad_input("tokenLimit", "the token limit cannot be negative"));
    }
    if request.expires_at.is_some_and(|at| at <= now) {
        return Err(AppError::bad_input("expiresAt", "the expiry must be in the future"));
    }
    Ok(KeyDraft {
        name,
        scopes,
        allowed_models,
        allowed_ips,
        token_limit: request.token_limit,
        expires_at: request.expires_at,
    })
}

/// Trimmed, lowercased, deduplicated model names (the usage side matches
/// them after resolving aliases and dated names). An empty list is refused:
/// null already means "every model", and a key that may use none is a
/// mistake.
fn normalize_models(models: Vec<String>) -> AppResult<Vec<String>> {
    let field = "allowedModels";
    if models.is_empty() {
        return Err(AppError::bad_input(
            field,
            "give at least one model, or null for every model",
        ));
    }
    if models.len() > MAX_LIST_ENTRIES {
        return Err(AppError::bad_input(field, "at most 100 models"));
    }
    let mut normalized: Vec<String> = Vec::new();
    for model in models {
        let model = model.trim().to_lowercase();
        if model.is_empty() || model.chars().count() > MAX_MODEL_CHARS {
            return Err(AppError::bad_input(field, "model names must be 1 to 200 characters"));
        }
        if !normalized.contains(&model) {
            normalized.push(model);
        }
    }
    Ok(normalized)
}

/// Addresses and CIDR ranges in their canonical text (IPv4-mapped forms as
/// IPv4, host bits of ranges cleared), deduplicated.
fn normalize_networks(networks: Vec<String>) -> AppResult<Vec<String>> {
    let field = "allowedIps";
    if networks.is_empty() {
        return Err(AppError::bad_input(
            field,
            "give at least one address, or null for any address",
        ));
    }
    if networks.len() > MAX_LIST_ENTRIES {
        return Err(AppError::bad_input(field, "at most 100 addresses or ranges"));
    }
    let mut normalized: Vec<String> = Vec::new();
    for text in networks {
        let Some(network) = parse_network(&text) else {
            return Err(AppError::bad_input(
                field,
                format!("{:?} is not an IP address or CIDR range", text.trim()),
            ));
        };
        let text = if network.prefix_len() == network.max_prefix_len() {
            network.addr().to_string()
        } else {
            network.to_string()
        };
        if !normalized.contains(&text) {
            normalized.push(text);
        }
    }
    Ok(normalized)
}

/// `createApiKey`: a new key of `organization_id` created by `actor` (a
/// MEMBER or above), within the plan's `maxApiKeys`. Returns the row and the
/// secret, which is never stored.
#[tracing::instrument(skip_all)]
pub async fn create(
    app: &AppState,
    actor: Uuid,
    organization_id: Uuid,
    draft: KeyDraft,
    meta: &RequestMeta,
) -> AppResult<(ApiKeyRow, String)> {
    let now = app.now();
    let ip = audit_ip(meta);
    let minted = secret::generate();
    let mut conn = app.db().await?;
    let row = conn
        .transaction::<_, AppError, _>(async |conn| {
            // Locking the organization serializes creations, so two at once
            // cannot both take the last free key of the plan.
            lock_as_member(conn, organization_id, actor, "Mutation.createApiKey").await?;
            require_verified(conn, actor).await?;
            check_key_limit(conn, organization_id, now).await?;
            let row = model::insert(
                conn,
                &ApiKeyRow {
                    id: Uuid::now_v7(),
                    organization_id,
                    created_by: actor,
                    name: draft.name,
                    prefix: minted.prefix.clone(),
                    secret_hash: minted.hash.clone(),
                    scopes: draft.scopes.into_iter().map(Some).collect(),
                    allowed_models: draft.allowed_models.map(|list| list.into_iter().map(Some).collect()),
                    allowed_ips: draft.allowed_ips.map(|list| list.into_iter().map(Some).collect()),
                    token_limit: draft.token_limit,
                    created_at: now,
                    last_used_at: None,
                    expires_at: draft.expires_at,
                    revoked_at: None,
                },
            )
            .await?;
            let entry = AuditEntry::new("api_key.created", Some(actor), ip.clone())
                .target("api_key", row.id)
                .in_organization(organization_id)
                .metadata(json!({
                    "name": row.name,
                    "prefix": row.prefix,
                    "scopes": row.scope_list().iter().map(|s| s.as_str()).collect::<Vec<_>>(),
                    "allowedModels": row.allowed_model_list(),
                    "allowedIps": row.allowed_ip_list(),
                    "tokenLimit": row.token_limit,
                    "expiresAt": row.expires_at,
                }));
            audit::record(conn, entry, now).await?;
            Ok(row)
        })
        .await?;
    Ok((row, minted.secret))
}

/// CONFLICT when the plan in effect allows no more active keys (revoked
/// and expired ones do not count), like the member limit.
async fn check_key_limit(conn: &mut AsyncPgConnection, organization_id: Uuid, now: DateTime<Utc>) -> AppResult<()> {
    let (_, plan) = plan_in_effect(conn, organization_id, now).await?;
    let Some(max) = plan.max_api_keys else {
        return Ok(());
    };
    if model::count_active(conn, organization_id, now).await? >= i64::from(max) {
        return Err(AppError::conflict(format!(
            "the {} plan allows at most {max} active API keys: revoke one or upgrade the plan",
            plan.name
        )));
    }
    Ok(())
}

/// Whether `actor`, with `role` in the key's organization, may revoke it:
/// OWNER and ADMIN any key of the organization, anyone their own.
pub fn may_revoke(key: &ApiKeyRow, actor: Uuid, role: Option<OrgRole>) -> bool {
    match role {
        Some(role) => role.at_least(OrgRole::Admin) || key.created_by == actor,
        None => false,
    }
}

/// `revokeApiKey`, once the resolver has checked the caller may: marks the
/// key revoked, audits and announces it (every instance refuses it at
/// once). A key revoked already comes back unchanged.
#[tracing::instrument(skip_all)]
pub async fn revoke(app: &AppState, actor: Uuid, key_id: Uuid, meta: &RequestMeta) -> AppResult<ApiKeyRow> {
    let now = app.now();
    let ip = audit_ip(meta);
    let mut conn = app.db().await?;
    let (row, announced) = conn
        .transaction::<_, AppError, _>(async |conn| {
            let key = model::lock(conn, key_id)
                .await?
                .ok_or_else(|| AppError::not_found("API key"))?;
            // Re-checked against what is committed now: the caller may
            // have been removed or demoted since the resolver looked.
            let member = find_membership(conn, key.organization_id, actor).await?;
            if !may_revoke(&key, actor, member.map(|m| m.role)) {
                return Err(AppError::not_found("API key"));
            }
            if key.revoked_at.is_some() {
                return Ok((key, Recorded::default()));
            }
            let row = model::mark_revoked(conn, key.id, now).await?;
            let entry = AuditEntry::new("api_key.revoked", Some(actor), ip.clone())
                .target("api_key", row.id)
                .in_organization(row.organization_id)
                .metadata(json!({ "name": row.name, "prefix": row.prefix, "createdBy": row.created_by }));
            audit::record(conn, entry, now).await?;
            let announced = announcements::record(conn, events::revoked(&[row.id])).await?;
            Ok((row, announced))
        })
        .await?;
    drop(conn);
    app.announcements().committed(announced);
    Ok(row)
}

/// Revokes every live key `creator` made, in any organization, auditing
/// each as `api_key.revoked` with `reason`, in the caller's transaction.
/// Returns their ids, for [`cache::announce_revoked`] after the commit.
pub async fn revoke_created_by(
    conn: &mut AsyncPgConnection,
    creator: Uuid,
    reason: &'static str,
    ip: Option<String>,
    now: DateTime<Utc>,
) -> AppResult<Vec<Uuid>> {
    let revoked = model::revoke_all_of_creator(conn, creator, now).await?;
    for row in &revoked {
        let entry = AuditEntry::new("api_key.revoked", Some(creator), ip.clone())
            .target("api_key", row.id)
            .in_organization(row.organization_id)
            .metadata(json!({ "name": row.name, "prefix": row.prefix, "createdBy": row.created_by, "reason": reason }));
        audit::record(conn, entry, now).await?;
    }
    Ok(revoked.into_iter().map(|row| row.id).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> KeyRequest {
        KeyRequest {
            name: "  CI  ".into(),
            scopes: vec![ApiKeyScope::UsageWrite, ApiKeyScope::UsageWrite],
            allowed_models: Some(vec![" GPT-4o ".into(), "gpt-4o".into()]),
            allowed_ips: Some(vec!["10.1.2.3/8".into(), "::ffff:127.0.0.1".into(), "::1".into()]),
            token_limit: Some(0),
            expires_at: None,
        }
    }

    fn field(result: AppResult<KeyDraft>) -> String {
        match result {
            Ok(_) => "ok".into(),
            Err(AppError::Client { field, .. }) => field.unwrap_or_default().into_owned(),
            Err(other) => format!("{other:?}"),
        }
    }

    #[test]
    fn requests_are_normalized() {
        let draft = validate(request(), Utc::now()).unwrap();
        assert_eq!(draft.name, "CI");
        assert_eq!(draft.scopes, vec![ApiKeyScope::UsageWrite]);
        assert_eq!(draft.allowed_models, Some(vec!["gpt-4o".to_owned()]));
        assert_eq!(
            draft.allowed_ips,
            Some(vec!["10.0.0.0/8".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()])
        );
    }

    #[test]
    fn each_wrong_field_is_named() {
        let now = Utc::now();
        let with = |change: fn(&mut KeyRequest)| {
            let mut r = request();
            change(&mut r);
            field(validate(r, now))
        };
        assert_eq!(with(|r| r.name = " ".into()), "name");
        assert_eq!(with(|r| r.name = "x".repeat(101)), "name");
        assert_eq!(with(|r| r.scopes.clear()), "scopes");
        assert_eq!(with(|r| r.allowed_models = Some(vec![" ".into()])), "allowedModels");
        assert_eq!(with(|r| r.allowed_models = Some(vec![])), "allowedModels");
        assert_eq!(with(|r| r.allowed_ips = Some(vec!["10.0.0.0/40".into()])), "allowedIps");
        assert_eq!(with(|r| r.allowed_ips = Some(vec!["example.com".into()])), "allowedIps");
        assert_eq!(with(|r| r.token_limit = Some(-1)), "tokenLimit");
        assert_eq!(
            with(|r| r.expires_at = Some(Utc::now() - chrono::Duration::seconds(1))),
            "expiresAt"
        );
        assert_eq!(with(|r| r.name = "x".repeat(100)), "ok");
    }

    #[test]
    fn owners_and_admins_revoke_any_key_others_their_own() {
        let (creator, other) = (Uuid::new_v4(), Uuid::new_v4());
        let key = ApiKeyRow {
            id: Uuid::new_v4(),
            organization_id: Uuid::new_v4(),
            created_by: creator,
            name: "k".into(),
            prefix: "tg_live_abcd".into(),
            secret_hash: vec![],
            scopes: vec![],
            allowed_models: None,
            allowed_ips: None,
            token_limit: None,
            created_at: Utc::now(),
            last_used_at: None,
            expires_at: None,
            revoked_at: None,
        };
        assert!(may_revoke(&key, creator, Some(OrgRole::Viewer)));
        assert!(may_revoke(&key, other, Some(OrgRole::Admin)));
        assert!(!may_revoke(&key, other, Some(OrgRole::Member)));
        assert!(!may_revoke(&key, creator, None));
    }
}
