//! What the gateway keeps for the life of the app: one pooled outbound
//! client and the providers' circuit breakers.

use std::sync::{Arc, OnceLock};

use tollgate_core::{config::gateway::GatewayConfig, error::AppError};

use crate::breaker::Breakers;

/// Idle connections kept per provider host: enough for bursts of calls
/// without a TCP and TLS set-up each.
const IDLE_PER_HOST: usize = 256;
/// How long an idle upstream connection is kept.
const IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(90);

/// The gateway's state, cheap to clone; one per app (each app of a test
/// process has its own breakers).
#[derive(Clone, Default)]
pub struct Gateway {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    client: OnceLock<reqwest::Client>,
    breakers: Breakers,
}

impl Gateway {
    /// The one pooled client (rustls, no redirects, no decompression so
    /// bodies pass through as sent), built on first use from the
    /// configuration's connect timeout.
    pub fn client(&self, config: &GatewayConfig) -> Result<&reqwest::Client, AppError> {
        if let Some(client) = self.inner.client.get() {
            return Ok(client);
        }
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .pool_max_idle_per_host(IDLE_PER_HOST)
            .pool_idle_timeout(IDLE_TIMEOUT)
            .tcp_nodelay(true)
            // A provider's key must never follow a redirect elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("tollgate-gateway/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| AppError::internal(anyhow::Error::from(e).context("building the gateway's HTTP client")))?;
        // Two first calls may race here; one client wins, the other is dropped.
        Ok(self.inner.client.get_or_init(|| client))
    }

    /// The providers' circuit breakers.
    pub fn breakers(&self) -> &Breakers {
        &self.inner.breakers
    }
}
