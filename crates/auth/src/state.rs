//! The state services receive: the platform and the credentials layer.

use std::sync::Arc;

use tollgate_platform::Platform;

use crate::{AccessTokens, PasswordHasher, RefreshTokens, keys::cache::KeyCache, session_cache::SessionCache};

/// Everything a service may need, cheap to clone: the [`Platform`] (which
/// it dereferences to) plus what turns credentials into a principal.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    platform: Platform,
    parts: AuthParts,
}

impl std::ops::Deref for AppState {
    type Target = Platform;

    fn deref(&self) -> &Platform {
        &self.inner.platform
    }
}

/// The parts the auth layer adds to a [`Platform`].
pub struct AuthParts {
    /// Access token minting and checking.
    pub access_tokens: AccessTokens,
    /// Refresh token minting and checking.
    pub refresh_tokens: RefreshTokens,
    /// Password hashing.
    pub passwords: PasswordHasher,
    /// Live sessions known to this instance.
    pub session_cache: SessionCache,
    /// API keys resolved recently by this instance.
    pub key_cache: KeyCache,
}

impl AppState {
    /// Puts the platform and the auth layer's parts together.
    pub fn new(platform: Platform, parts: AuthParts) -> Self {
        Self {
            inner: Arc::new(Inner { platform, parts }),
        }
    }

    /// The foundation every layer shares.
    pub fn platform(&self) -> &Platform {
        &self.inner.platform
    }

    /// Access token minting and checking.
    pub fn access_tokens(&self) -> &AccessTokens {
        &self.inner.parts.access_tokens
    }

    /// Refresh token minting and checking.
    pub fn refresh_tokens(&self) -> &RefreshTokens {
        &self.inner.parts.refresh_tokens
    }

    /// Password hashing.
    pub fn passwords(&self) -> &PasswordHasher {
        &self.inner.parts.passwords
    }

    /// Live sessions known to this instance.
    pub fn session_cache(&self) -> &SessionCache {
        &self.inner.parts.session_cache
    }

    /// API keys resolved recently by this instance.
    pub fn key_cache(&self) -> &KeyCache {
        &self.inner.parts.key_cache
    }
}
