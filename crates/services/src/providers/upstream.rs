//! What the gateway needs to call a model: its routes, each with the
//! provider's kind, base URL and decrypted key.

use std::fmt;

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use secrecy::SecretString;

use super::model::{ProviderKind, ProviderRow};
use tollgate_core::error::AppResult;
use tollgate_db::schema::{model_routes, providers};
use tollgate_platform::secrets::Secrets;

/// One place a call can go: a route to an enabled provider.
#[derive(Clone)]
pub struct Upstream {
    /// The provider's key (the PROXY event's `provider`).
    pub provider_key: String,
    /// Which API it speaks.
    pub kind: ProviderKind,
    /// Base URL, without a trailing slash.
    pub base_url: String,
    /// The provider's API key, decrypted for this call.
    pub api_key: Option<SecretString>,
    /// The model's name at the provider.
    pub upstream_model: String,
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upstream")
            .field("provider_key", &self.provider_key)
            .field("kind", &self.kind)
            .field("base_url", &self.base_url)
            .field("upstream_model", &self.upstream_model)
            .finish_non_exhaustive()
    }
}

/// The routes of catalog model `model_id` to enabled providers, in order,
/// with their keys decrypted. Empty: the model is not callable.
pub async fn upstreams_for(
    conn: &mut AsyncPgConnection,
    secrets: &Secrets,
    model_id: &str,
) -> AppResult<Vec<Upstream>> {
    let rows: Vec<(String, ProviderRow)> = model_routes::table
        .inner_join(providers::table)
        .filter(model_routes::model_id.eq(model_id))
        .filter(providers::enabled.eq(true))
        .order(model_routes::position)
        .select((model_routes::upstream_model, ProviderRow::as_select()))
        .load(conn)
        .await?;
    rows.into_iter()
        .map(|(upstream_model, provider)| {
            let api_key = provider
                .api_key_ciphertext
                .as_deref()
                .map(|stored| secrets.decrypt(stored))
                .transpose()?;
            Ok(Upstream {
                provider_key: provider.key,
                kind: provider.kind,
                base_url: provider.base_url.trim_end_matches('/').to_owned(),
                api_key,
                upstream_model,
            })
        })
        .collect()
}
