//! The LLM gateway's settings: the secrets key, the providers created from
//! the environment at start, and the gateway's timeouts and defaults.

use std::{fmt, time::Duration};

use base64::Engine;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use url::Url;

use super::ConfigError;

/// Bytes of `SECRETS_KEY`: an AES-256 key.
pub const SECRETS_KEY_BYTES: usize = 32;

/// A provider the environment asks for (`OPENAI_API_KEY` and friends).
#[derive(Clone)]
pub struct SeededProvider {
    /// Its API key.
    pub api_key: SecretString,
    /// Its base URL; the vendor's own when the variable is unset.
    pub base_url: Url,
}

impl fmt::Debug for SeededProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeededProvider")
            .field("base_url", &self.base_url.as_str())
            .finish_non_exhaustive()
    }
}

/// The gateway's settings.
#[derive(Clone)]
pub struct GatewayConfig {
    /// `SECRETS_KEY`, decoded; None: derived or kept per data folder in
    /// development, refused in production once a secret is stored.
    pub secrets_key: Option<std::sync::Arc<SecretBox<[u8; SECRETS_KEY_BYTES]>>>,
    /// `OPENAI_API_KEY` / `OPENAI_BASE_URL`.
    pub openai: Option<SeededProvider>,
    /// `ANTHROPIC_API_KEY` / `ANTHROPIC_BASE_URL`.
    pub anthropic: Option<SeededProvider>,
    /// `LLM_TIMEOUT_SECS`: the longest a call may take, stream included.
    pub timeout: Duration,
    /// `LLM_FIRST_BYTE_TIMEOUT_SECS`: how long an upstream may take to
    /// start answering before the next route is tried.
    pub first_byte_timeout: Duration,
    /// `LLM_CONNECT_TIMEOUT_SECS`: TCP and TLS set-up to an upstream.
    pub connect_timeout: Duration,
    /// `LLM_DEFAULT_MAX_OUTPUT_TOKENS`: the output reserved for a call that
    /// sets no limit, to a model whose catalog entry has none.
    pub default_max_output_tokens: u32,
}

impl fmt::Debug for GatewayConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatewayConfig")
            .field("secrets_key_set", &self.secrets_key.is_some())
            .field("openai", &self.openai)
            .field("anthropic", &self.anthropic)
            .field("timeout", &self.timeout)
            .field("first_byte_timeout", &self.first_byte_timeout)
            .finish_non_exhaustive()
    }
}

/// OpenAI's API, version included (the gateway appends `/chat/completions`).
pub const OPENAI_DEFAULT_BASE: &str = "https://api.openai.com/v1";
/// Anthropic's API, without the version (the gateway appends `/v1/messages`).
pub const ANTHROPIC_DEFAULT_BASE: &str = "https://api.anthropic.com";

impl GatewayConfig {
    /// Reads the gateway's variables through `get` (empty = unset).
    pub(super) fn read(get: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let secrets_key = get("SECRETS_KEY")
            .map(|raw| decode_secrets_key(&raw))
            .transpose()?
            .map(|key| std::sync::Arc::new(SecretBox::new(Box::new(key))));
        let seconds = |name: &'static str, default: u64| -> Result<Duration, ConfigError> {
            match get(name) {
                None => Ok(Duration::from_secs(default)),
                Some(raw) => match raw.trim().parse::<u64>() {
                    Ok(0) => Err(ConfigError::new(name, "must be greater than zero")),
                    Ok(secs) => Ok(Duration::from_secs(secs)),
                    Err(e) => Err(ConfigError::new(name, format!("{raw:?}: {e}"))),
                },
            }
        };
        let default_max_output_tokens = match get("LLM_DEFAULT_MAX_OUTPUT_TOKENS") {
            None => 4096,
            Some(raw) => match raw.trim().parse::<u32>() {
                Ok(n) if n > 0 => n,
                Ok(_) => {
                    return Err(ConfigError::new(
                        "LLM_DEFAULT_MAX_OUTPUT_TOKENS",
                        "must be greater than zero",
                    ));
                }
                Err(e) => {
                    return Err(ConfigError::new(
                        "LLM_DEFAULT_MAX_OUTPUT_TOKENS",
                        format!("{raw:?}: {e}"),
                    ));
                }
            },
        };
        Ok(Self {
            secrets_key,
            openai: seeded(get, "OPENAI_API_KEY", "OPENAI_BASE_URL", OPENAI_DEFAULT_BASE)?,
            anthropic: seeded(get, "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", ANTHROPIC_DEFAULT_BASE)?,
            timeout: seconds("LLM_TIMEOUT_SECS", 600)?,
            first_byte_timeout: seconds("LLM_FIRST_BYTE_TIMEOUT_SECS", 60)?,
            connect_timeout: seconds("LLM_CONNECT_TIMEOUT_SECS", 10)?,
            default_max_output_tokens,
        })
    }

    /// The raw secrets key, when `SECRETS_KEY` is set.
    pub fn secrets_key_bytes(&self) -> Option<&[u8; SECRETS_KEY_BYTES]> {
        self.secrets_key.as_deref().map(ExposeSecret::expose_secret)
    }
}

/// `SECRETS_KEY`: 32 bytes in standard base64 (with or without padding).
pub fn decode_secrets_key(raw: &str) -> Result<[u8; SECRETS_KEY_BYTES], ConfigError> {
    let raw = raw.trim();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(raw)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(raw))
        .map_err(|_| ConfigError::new("SECRETS_KEY", "must be 32 bytes in base64"))?;
    <[u8; SECRETS_KEY_BYTES]>::try_from(bytes.as_slice()).map_err(|_| {
        ConfigError::new(
            "SECRETS_KEY",
            format!("must be 32 bytes in base64, got {} bytes", bytes.len()),
        )
    })
}

fn seeded(
    get: &dyn Fn(&str) -> Option<String>,
    key_var: &'static str,
    base_var: &'static str,
    default_base: &str,
) -> Result<Option<SeededProvider>, ConfigError> {
    let base_url = match get(base_var) {
        Some(raw) => {
            let url = Url::parse(raw.trim()).map_err(|e| ConfigError::new(base_var, format!("{raw:?}: {e}")))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(ConfigError::new(base_var, "must be an http(s) URL"));
            }
            url
        }
        None => Url::parse(default_base).map_err(|e| ConfigError::new(base_var, e.to_string()))?,
    };
    Ok(get(key_var).map(|key| SeededProvider {
        api_key: SecretString::from(key.trim().to_owned()),
        base_url,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secrets_key_is_32_bytes_of_base64() {
        let good = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        assert_eq!(decode_secrets_key(&good).unwrap(), [7u8; 32]);
        let short = base64::engine::general_purpose::STANDARD.encode([7u8; 16]);
        let err = decode_secrets_key(&short).unwrap_err();
        assert_eq!(err.variable, "SECRETS_KEY");
        assert!(err.message.contains("16 bytes"), "{}", err.message);
        assert!(decode_secrets_key("not base64!").is_err());
    }
}
