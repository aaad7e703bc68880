//! What the server does with providers as it starts: refuse to run where
//! stored keys could not be read, and create the providers the environment
//! names (`OPENAI_API_KEY`, `ANTHROPIC_API_KEY`), routing the catalog's
//! models of that vendor to them, so one variable makes the gateway work.
//!
//! Every step is idempotent: a restart with the same environment changes
//! nothing and writes no audit entry.

use anyhow::Context as _;
use diesel::{prelude::*, sql_types::Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use secrecy::ExposeSecret;

use super::{
    model::{ProviderKind, ProviderRow},
    service::{self, Actor, ProviderEntry},
};
use tollgate_core::{AppError, config::gateway::SeededProvider};
use tollgate_db::schema::providers;
use tollgate_platform::Platform;

/// The host of OpenAI's own API; any other base URL is an
/// OpenAI-compatible service (an aggregator, a local server).
const OPENAI_HOST: &str = "api.openai.com";

/// One provider the environment may name.
struct Vendor {
    /// Its provider key, which is also the catalog's `models.provider`.
    key: &'static str,
    /// Its name when the server creates it.
    name: &'static str,
    /// The variable holding its API key, for messages.
    variable: &'static str,
}

const OPENAI: Vendor = Vendor {
    key: "openai",
    name: "OpenAI",
    variable: "OPENAI_API_KEY",
};
const ANTHROPIC: Vendor = Vendor {
    key: "anthropic",
    name: "Anthropic",
    variable: "ANTHROPIC_API_KEY",
};

/// Runs before the server serves: fails when a stored key cannot be read
/// (production without `SECRETS_KEY`), then seeds the environment's
/// providers and routes.
pub async fn prepare(app: &Platform) -> anyhow::Result<()> {
    check_stored_keys(app).await?;
    let gateway = &app.config().gateway;
    if let Some(seeded) = &gateway.openai {
        let kind = match seeded.base_url.host_str() {
            Some(OPENAI_HOST) => ProviderKind::OpenAi,
            _ => ProviderKind::OpenAiCompatible,
        };
        seed(app, &OPENAI, kind, seeded).await?;
    }
    if let Some(seeded) = &gateway.anthropic {
        seed(app, &ANTHROPIC, ProviderKind::Anthropic, seeded).await?;
    }
    Ok(())
}

/// Without a secrets key (production without `SECRETS_KEY`), a stored
/// provider key could neither be used nor replaced: refuse to start. With
/// one that does not open a stored key (another instance's, a changed
/// one), warn: calls through that provider fail until its key is entered
/// again.
async fn check_stored_keys(app: &Platform) -> anyhow::Result<()> {
    let mut conn = app.db().await.map_err(|e| failed("reading the providers", e))?;
    let stored: Vec<(String, Option<Vec<u8>>)> = providers::table
        .filter(providers::api_key_ciphertext.is_not_null())
        .select((providers::key, providers::api_key_ciphertext))
        .order(providers::key)
        .load(&mut conn)
        .await
        .context("reading the providers")?;
    if stored.is_empty() {
        return Ok(());
    }
    if !app.secrets().is_configured() {
        let keys: Vec<&str> = stored.iter().map(|(key, _)| key.as_str()).collect();
        anyhow::bail!(
            "SECRETS_KEY is required: the API keys of providers {} are stored encrypted and cannot be read without it \
             (set SECRETS_KEY to the key they were stored with)",
            keys.join(", ")
        );
    }
    for (key, ciphertext) in &stored {
        let opens = ciphertext
            .as_deref()
            .is_some_and(|stored| app.secrets().decrypt(stored).is_ok());
        if !opens {
            tracing::warn!(
                provider = %key,
                "the provider's stored API key does not decrypt under this SECRETS_KEY; enter it again with upsertProvider"
            );
        }
    }
    Ok(())
}

/// Creates or updates `vendor`'s provider from the environment unless it
/// already matches, then routes its models.
async fn seed(app: &Platform, vendor: &Vendor, kind: ProviderKind, seeded: &SeededProvider) -> anyhow::Result<()> {
    if !app.secrets().is_configured() {
        anyhow::bail!(
            "{} is set, but SECRETS_KEY is not: provider API keys are stored only encrypted; set SECRETS_KEY",
            vendor.variable
        );
    }
    let base_url = service::check_base_url(seeded.base_url.as_str())
        .map_err(|e| anyhow::anyhow!("{}'s base URL: {}", vendor.variable, e.client_message()))?;
    let mut conn = app.db().await.map_err(|e| failed("reading the providers", e))?;
    let existing = providers::table
        .find(vendor.key)
        .select(ProviderRow::as_select())
        .first(&mut conn)
        .await
        .optional()?;
    drop(conn);
    if !existing
        .as_ref()
        .is_some_and(|row| matches(app, row, kind, &base_url, seeded))
    {
        let entry = ProviderEntry {
            key: vendor.key.to_owned(),
            // An administrator's name and switch are kept.
            name: Some(existing.as_ref().map_or(vendor.name, |row| &row.name).to_owned()),
            kind,
            base_url,
            api_key: Some(seeded.api_key.clone()),
            enabled: existing.as_ref().is_none_or(|row| row.enabled),
        };
        service::upsert(app, &Actor::default(), entry).await.map_err(|e| {
            failed(
                &format!("setting the provider {} from {}", vendor.key, vendor.variable),
                e,
            )
        })?;
        tracing::info!(provider = vendor.key, "provider set from {}", vendor.variable);
    }
    let mut conn = app.db().await.map_err(|e| failed("routing models", e))?;
    let routed = route_unrouted_models(&mut conn, vendor.key).await?;
    if routed > 0 {
        tracing::info!(
            provider = vendor.key,
            models = routed,
            "routed catalog models to the provider"
        );
    }
    Ok(())
}

/// A start-up failure with its cause: the operator reads it, not a
/// client, and no error here holds a key.
fn failed(doing: &str, error: AppError) -> anyhow::Error {
    match error {
        AppError::Internal(cause) | AppError::Unavailable(cause) => anyhow::anyhow!("{doing}: {cause:#}"),
        other => anyhow::anyhow!("{doing}: {}", other.client_message()),
    }
}

/// Whether the stored provider already is what the environment asks for
/// (a key that no longer decrypts, say after a key change, is not).
fn matches(app: &Platform, row: &ProviderRow, kind: ProviderKind, base_url: &str, seeded: &SeededProvider) -> bool {
    let same_key = row
        .api_key_ciphertext
        .as_deref()
        .and_then(|stored| app.secrets().decrypt(stored).ok())
        .is_some_and(|stored| stored.expose_secret() == seeded.api_key.expose_secret());
    row.kind == kind && row.base_url == base_url && same_key
}

/// Routes every catalog model of `vendor` that has no route yet to the
/// provider of the same key, under its own id; how many it routed.
async fn route_unrouted_models(conn: &mut AsyncPgConnection, vendor: &str) -> QueryResult<usize> {
    diesel::sql_query(
        "INSERT INTO model_routes (model_id, position, provider_key, upstream_model)
         SELECT m.id, 0, $1, m.id FROM models m
         WHERE m.provider = $1
           AND NOT EXISTS (SELECT 1 FROM model_routes r WHERE r.model_id = m.id)
         ON CONFLICT DO NOTHING",
    )
    .bind::<Text, _>(vendor)
    .execute(conn)
    .await
}
