//! The provider inputs of the schema, turned into the plain values the
//! provider services take.

use async_graphql::InputObject;
use secrecy::SecretString;

use crate::api::enums as gql;
use tollgate_services::providers::{routes::RouteEntry, service::ProviderEntry};

// No Debug: it carries an API key.
/// An upstream provider to create or update (the same key updates it).
#[derive(InputObject)]
pub struct ProviderInput {
    /// Stable key, e.g. openai, anthropic, openrouter: 2 to 40 of a-z, 0-9, '-'.
    pub key: String,
    /// Human-readable name; the key when omitted.
    pub name: Option<String>,
    /// Which API it speaks.
    pub kind: gql::ProviderKind,
    /// Base URL of its API, e.g. https://api.openai.com/v1 or https://api.anthropic.com.
    pub base_url: String,
    /// Write-only. Required when the provider is created; omitted keeps the stored key.
    pub api_key: Option<String>,
    /// Disabled providers are skipped by the gateway.
    #[graphql(default = true)]
    pub enabled: bool,
}

impl From<ProviderInput> for ProviderEntry {
    fn from(input: ProviderInput) -> Self {
        ProviderEntry {
            key: input.key,
            name: input.name,
            kind: input.kind.into(),
            base_url: input.base_url,
            api_key: input.api_key.map(SecretString::from),
            enabled: input.enabled,
        }
    }
}

/// One route of a model: a provider and the model's name there.
#[derive(Debug, Clone, InputObject)]
pub struct ModelRouteInput {
    /// The key of an existing provider.
    pub provider_key: String,
    /// The model name the provider expects: 1 to 200 characters.
    pub upstream_model: String,
}

impl From<ModelRouteInput> for RouteEntry {
    fn from(input: ModelRouteInput) -> Self {
        RouteEntry {
            provider_key: input.provider_key,
            upstream_model: input.upstream_model,
        }
    }
}
