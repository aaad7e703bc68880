//! Provider rows and their queries.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use tollgate_db::{schema::providers, text_enum};

text_enum! {
    /// Which API a provider speaks.
    pub enum ProviderKind {
        /// The OpenAI API (base URL with the version: https://api.openai.com/v1).
        OpenAi => "OPENAI",
        /// The Anthropic Messages API (base URL without it: https://api.anthropic.com).
        Anthropic => "ANTHROPIC",
        /// Any service that speaks OpenAI's API (OpenRouter, A4F, vLLM, Ollama).
        OpenAiCompatible => "OPENAI_COMPATIBLE",
    }
}

impl ProviderKind {
    /// Whether it speaks OpenAI's wire format.
    pub fn speaks_openai(self) -> bool {
        matches!(self, Self::OpenAi | Self::OpenAiCompatible)
    }
}

/// A row of `providers`. `api_key_ciphertext` is never shown to anyone;
/// only [`crate::providers::upstream`] decrypts it, for a call.
#[derive(Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = providers, check_for_backend(diesel::pg::Pg))]
pub struct ProviderRow {
    /// Stable key, e.g. openai, anthropic, openrouter.
    pub key: String,
    /// Human-readable name.
    pub name: String,
    /// Which API it speaks.
    pub kind: ProviderKind,
    /// Base URL of its API, without a trailing slash.
    pub base_url: String,
    /// Nonce and ciphertext of its API key (AES-256-GCM).
    pub api_key_ciphertext: Option<Vec<u8>>,
    /// The key's last four characters.
    pub api_key_hint: Option<String>,
    /// Disabled providers are skipped by the gateway.
    pub enabled: bool,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl std::fmt::Debug for ProviderRow {
    // By hand, so the ciphertext (useless, but still a secret's) stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderRow")
            .field("key", &self.key)
            .field("kind", &self.kind)
            .field("base_url", &self.base_url)
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

/// Every provider, by key.
pub async fn list(conn: &mut AsyncPgConnection) -> QueryResult<Vec<ProviderRow>> {
    providers::table
        .select(ProviderRow::as_select())
        .order(providers::key)
        .load(conn)
        .await
}

/// The providers with these keys.
pub async fn find_many(conn: &mut AsyncPgConnection, keys: &[String]) -> QueryResult<Vec<ProviderRow>> {
    providers::table
        .filter(providers::key.eq_any(keys))
        .select(ProviderRow::as_select())
        .load(conn)
        .await
}

/// Whether any provider is enabled (the gateway has somewhere to send calls).
pub async fn any_enabled(conn: &mut AsyncPgConnection) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        providers::table.filter(providers::enabled.eq(true)),
    ))
    .get_result(conn)
    .await
}
