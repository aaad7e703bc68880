//! upsertProvider and deleteProvider: staff manage the upstream services
//! the gateway calls.
//!
//! A provider's API key arrives in plain text once, is encrypted before
//! any statement runs (`Platform::secrets`), and from then on exists only as
//! ciphertext and a four-character hint. Neither errors nor audit entries
//! carry it.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use secrecy::{ExposeSecret, SecretString};
use url::Url;
use uuid::Uuid;

use super::model::{ProviderKind, ProviderRow};
use tollgate_core::error::{AppError, AppResult};
use tollgate_db::schema::{model_routes, providers};
use tollgate_platform::{
    Platform,
    audit::{self, AuditEntry},
    secrets,
};

/// Longest provider name, in characters.
const MAX_NAME_CHARS: usize = 100;
/// Longest base URL, in characters.
const MAX_BASE_URL_CHARS: usize = 2000;
/// Longest API key accepted, in characters.
const MAX_API_KEY_CHARS: usize = 4096;
/// Shortest and longest provider key, in characters.
const KEY_CHARS: std::ops::RangeInclusive<usize> = 2..=40;

/// Who changes a provider, for the audit log.
#[derive(Debug, Clone, Default)]
pub struct Actor {
    /// The staff member; None for the server itself (the environment's
    /// providers, created at start).
    pub user_id: Option<Uuid>,
    /// Their client address.
    pub ip: Option<String>,
}

/// A provider to create or update (by key), as staff sent it.
pub struct ProviderEntry {
    /// Stable key: 2 to 40 of a-z, 0-9, '-'.
    pub key: String,
    /// Human-readable name; the key when omitted.
    pub name: Option<String>,
    /// Which API it speaks.
    pub kind: ProviderKind,
    /// Base URL of its API, http(s).
    pub base_url: String,
    /// Required on creation; None keeps the stored key.
    pub api_key: Option<SecretString>,
    /// Disabled providers are skipped by the gateway.
    pub enabled: bool,
}

impl std::fmt::Debug for ProviderEntry {
    // By hand: the API key stays out of every log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderEntry")
            .field("key", &self.key)
            .field("kind", &self.kind)
            .field("base_url", &self.base_url)
            .field("api_key_given", &self.api_key.is_some())
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

/// A checked [`ProviderEntry`] whose key, if any, is already encrypted.
struct CheckedProvider {
    key: String,
    name: String,
    kind: ProviderKind,
    base_url: String,
    api_key: Option<SealedKey>,
    enabled: bool,
}

/// An API key as it is stored: ciphertext and hint.
struct SealedKey {
    ciphertext: Vec<u8>,
    hint: Option<String>,
}

/// Creates or updates a provider; the same key updates it. BAD_USER_INPUT
/// names the field at fault; an API key without `SECRETS_KEY` configured
/// (production) is refused, since it could not be stored encrypted.
pub async fn upsert(app: &Platform, actor: &Actor, input: ProviderEntry) -> AppResult<ProviderRow> {
    let provider = check(app, input)?;
    let now = app.now();
    let mut conn = app.db().await?;
    conn.transaction::<_, AppError, _>(async |conn| {
        let existing = find_for_update(conn, &provider.key).await?;
        let row = match (&existing, &provider.api_key) {
            (None, None) => {
                return Err(AppError::bad_input(
                    "apiKey",
                    "apiKey is required when the provider is created",
                ));
            }
            (None, Some(sealed)) => insert(conn, &provider, sealed, now).await?,
            (Some(_), _) => update(conn, &provider, now).await?,
        };
        let entry = AuditEntry::new("provider.upserted", actor.user_id, actor.ip.clone())
            .target("provider", &row.key)
            .metadata(serde_json::json!({
                "created": existing.is_none(),
                "kind": row.kind.as_str(),
                "baseUrl": row.base_url,
                "enabled": row.enabled,
                "apiKeyChanged": provider.api_key.is_some(),
            }));
        audit::record(conn, entry, now).await?;
        Ok(row)
    })
    .await
}

/// Removes a provider and, by cascade, every route to it. False when no
/// provider has that key.
pub async fn delete(app: &Platform, actor: &Actor, key: &str) -> AppResult<bool> {
    let now = app.now();
    let mut conn = app.db().await?;
    conn.transaction::<_, AppError, _>(async |conn| {
        let routes: i64 = model_routes::table
            .filter(model_routes::provider_key.eq(key))
            .count()
            .get_result(conn)
            .await?;
        let deleted = diesel::delete(providers::table.find(key))
            .returning(providers::key)
            .get_result::<String>(conn)
            .await
            .optional()?;
        let Some(deleted) = deleted else {
            return Ok(false);
        };
        let entry = AuditEntry::new("provider.deleted", actor.user_id, actor.ip.clone())
            .target("provider", deleted)
            .metadata(serde_json::json!({ "routesRemoved": routes }));
        audit::record(conn, entry, now).await?;
        Ok(true)
    })
    .await
}

/// The provider with this key, locked until the transaction ends.
async fn find_for_update(conn: &mut AsyncPgConnection, key: &str) -> QueryResult<Option<ProviderRow>> {
    providers::table
        .find(key)
        .select(ProviderRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

async fn insert(
    conn: &mut AsyncPgConnection,
    provider: &CheckedProvider,
    sealed: &SealedKey,
    now: DateTime<Utc>,
) -> QueryResult<ProviderRow> {
    let fields = (
        providers::name.eq(&provider.name),
        providers::kind.eq(provider.kind),
        providers::base_url.eq(&provider.base_url),
        providers::api_key_ciphertext.eq(&sealed.ciphertext),
        providers::api_key_hint.eq(&sealed.hint),
        providers::enabled.eq(provider.enabled),
        providers::updated_at.eq(now),
    );
    // A concurrent creation of the same key wins or loses as a whole.
    diesel::insert_into(providers::table)
        .values((providers::key.eq(&provider.key), fields, providers::created_at.eq(now)))
        .on_conflict(providers::key)
        .do_update()
        .set(fields)
        .returning(ProviderRow::as_returning())
        .get_result(conn)
        .await
}

async fn update(
    conn: &mut AsyncPgConnection,
    provider: &CheckedProvider,
    now: DateTime<Utc>,
) -> QueryResult<ProviderRow> {
    let target = diesel::update(providers::table.find(&provider.key));
    let fields = (
        providers::name.eq(&provider.name),
        providers::kind.eq(provider.kind),
        providers::base_url.eq(&provider.base_url),
        providers::enabled.eq(provider.enabled),
        providers::updated_at.eq(now),
    );
    match &provider.api_key {
        Some(sealed) => {
            target
                .set((
                    fields,
                    providers::api_key_ciphertext.eq(&sealed.ciphertext),
                    providers::api_key_hint.eq(&sealed.hint),
                ))
                .returning(ProviderRow::as_returning())
                .get_result(conn)
                .await
        }
        None => {
            target
                .set(fields)
                .returning(ProviderRow::as_returning())
                .get_result(conn)
                .await
        }
    }
}

fn check(app: &Platform, input: ProviderEntry) -> AppResult<CheckedProvider> {
    let key = check_key(&input.key)?;
    let name = match input.name.as_deref().map(str::trim) {
        None | Some("") => key.clone(),
        Some(name) => check_label(name)?,
    };
    let base_url = check_base_url(&input.base_url)?;
    let api_key = input.api_key.map(|api_key| seal(app, &api_key)).transpose()?;
    Ok(CheckedProvider {
        key,
        name,
        kind: input.kind,
        base_url,
        api_key,
        enabled: input.enabled,
    })
}

/// `^[a-z0-9-]{2,40}$`, as the table's CHECK says.
pub fn check_key(key: &str) -> AppResult<String> {
    let key = key.trim();
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    if !KEY_CHARS.contains(&key.len()) || !key.chars().all(allowed) {
        return Err(AppError::bad_input("key", "key must be 2 to 40 of a-z, 0-9 and '-'"));
    }
    Ok(key.to_owned())
}

fn check_label(name: &str) -> AppResult<String> {
    if name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(AppError::bad_input(
            "name",
            format!("name must be 1 to {MAX_NAME_CHARS} printable characters"),
        ));
    }
    Ok(name.to_owned())
}

/// An http(s) URL with a host, without credentials, query or fragment
/// (the gateway appends paths to it), stored without a trailing slash.
pub fn check_base_url(raw: &str) -> AppResult<String> {
    let bad = |why: &str| AppError::bad_input("baseUrl", format!("baseUrl must be {why}"));
    let raw = raw.trim();
    if raw.chars().count() > MAX_BASE_URL_CHARS {
        return Err(bad("at most 2000 characters"));
    }
    let url = Url::parse(raw).map_err(|_| bad("an http(s) URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(bad("an http(s) URL"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("without credentials (the key goes in apiKey)"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("without a query or fragment"));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// The key encrypted for storage, with its hint.
fn seal(app: &Platform, api_key: &SecretString) -> AppResult<SealedKey> {
    let plain = api_key.expose_secret().trim();
    if plain.is_empty() || plain.chars().count() > MAX_API_KEY_CHARS || plain.chars().any(char::is_control) {
        return Err(AppError::bad_input(
            "apiKey",
            format!("apiKey must be 1 to {MAX_API_KEY_CHARS} printable characters"),
        ));
    }
    if !app.secrets().is_configured() {
        return Err(AppError::bad_input(
            "apiKey",
            "SECRETS_KEY is required to store provider API keys (APP_ENV=production); set it on every instance",
        ));
    }
    Ok(SealedKey {
        ciphertext: app.secrets().encrypt(plain)?,
        hint: secrets::hint(plain),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_pattern() {
        assert_eq!(check_key(" openai ").unwrap(), "openai");
        assert!(check_key("a4f-2").is_ok());
        for bad in ["a", "OpenAI", "open_ai", "open ai", &"x".repeat(41), "ключ"] {
            assert!(check_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn base_urls_are_http_and_lose_their_trailing_slash() {
        assert_eq!(
            check_base_url("https://api.openai.com/v1/").unwrap(),
            "https://api.openai.com/v1"
        );
        assert_eq!(
            check_base_url("https://api.anthropic.com").unwrap(),
            "https://api.anthropic.com"
        );
        assert_eq!(
            check_base_url("http://127.0.0.1:11434/v1").unwrap(),
            "http://127.0.0.1:11434/v1"
        );
        for bad in [
            "ftp://example.com",
            "not a url",
            "https://user:pw@example.com/v1",
            "https://example.com/v1?x=1",
            "https://example.com/#f",
            "mailto:a@example.com",
        ] {
            let error = check_base_url(bad).unwrap_err();
            assert_eq!(
                tollgate_core::error::field_of::<()>(Err(error)).as_deref(),
                Some("baseUrl"),
                "{bad}"
            );
        }
    }
}
