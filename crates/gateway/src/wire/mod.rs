//! The request and response wire formats of the two APIs the gateway
//! speaks (OpenAI Chat Completions and Embeddings, Anthropic Messages).
//!
//! A stub with the lead's interface (/work/plans/wire_api.md) until the
//! real layer lands on main: rough estimates, the usage fields the
//! providers document, nothing more.

pub mod sse;

pub use sse::StreamMeter;

use serde_json::{Map, Value};
use tollgate_services::providers::ProviderKind;

/// Which API an endpoint speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// OpenAI Chat Completions.
    Chat,
    /// OpenAI Embeddings.
    Embeddings,
    /// Anthropic Messages.
    Messages,
}

impl Api {
    /// Whether a provider of `kind` speaks this API (Chat/Embeddings: OPENAI
    /// and OPENAI_COMPATIBLE; Messages: ANTHROPIC).
    pub fn accepts(self, kind: ProviderKind) -> bool {
        match self {
            Self::Chat | Self::Embeddings => kind.speaks_openai(),
            Self::Messages => kind == ProviderKind::Anthropic,
        }
    }

    /// The upstream URL for a provider base URL (trailing slashes ignored).
    pub fn upstream_url(self, base_url: &str) -> String {
        let base = base_url.trim_end_matches('/');
        match self {
            Self::Chat => format!("{base}/chat/completions"),
            Self::Embeddings => format!("{base}/embeddings"),
            Self::Messages => format!("{base}/v1/messages"),
        }
    }

    /// OpenAI's error shape (Chat, Embeddings) or Anthropic's (Messages).
    pub fn is_anthropic(self) -> bool {
        self == Self::Messages
    }
}

/// A body the gateway cannot read: 400 invalid_request_error with this message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError(pub String);

/// A caller's request, read once.
#[derive(Debug, Clone)]
pub struct CallRequest {
    /// Which API.
    pub api: Api,
    /// The model name the caller sent (trimmed).
    pub model: String,
    /// `stream: true`.
    pub stream: bool,
    /// OpenAI streams: whether the caller asked for the usage chunk.
    pub caller_wants_usage: bool,
    /// The caller's output limit (max_completion_tokens, else max_tokens), if any.
    pub output_limit: Option<i64>,
    /// The prompt estimate in tokens.
    pub prompt_estimate: i64,
    body: Map<String, Value>,
}

/// Tokens added per message for its role and framing.
const PER_MESSAGE_TOKENS: i64 = 4;

impl CallRequest {
    /// Reads and checks a body (a JSON object with a string `model`).
    pub fn parse(api: Api, body: &[u8]) -> Result<Self, WireError> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| WireError(format!("the request body is not valid JSON: {e}")))?;
        let Value::Object(body) = value else {
            return Err(WireError("the request body must be a JSON object".to_owned()));
        };
        let model = body
            .get("model")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .ok_or_else(|| WireError("`model` is required".to_owned()))?
            .to_owned();
        let stream = api != Api::Embeddings && body.get("stream").and_then(Value::as_bool).unwrap_or(false);
        let caller_wants_usage = body
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let output_limit = ["max_completion_tokens", "max_tokens"]
            .iter()
            .find_map(|name| body.get(*name).and_then(Value::as_i64));
        let prompt_estimate = estimate_prompt(api, &body);
        Ok(Self {
            api,
            model,
            stream,
            caller_wants_usage,
            output_limit,
            prompt_estimate,
            body,
        })
    }

    /// The body to send upstream.
    pub fn upstream_body(&self, kind: ProviderKind, upstream_model: &str, send_limit: Option<i64>) -> Vec<u8> {
        let mut body = self.body.clone();
        body.insert("model".to_owned(), Value::from(upstream_model));
        if let Some(limit) = send_limit {
            let field = match (self.api, kind) {
                (Api::Chat, ProviderKind::OpenAi) => "max_completion_tokens",
                _ => "max_tokens",
            };
            body.insert(field.to_owned(), Value::from(limit));
        }
        if self.api == Api::Chat && self.stream {
            let options = body
                .entry("stream_options")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(options) = options {
                options.insert("include_usage".to_owned(), Value::Bool(true));
            }
        }
        serde_json::to_vec(&Value::Object(body)).unwrap_or_default()
    }
}

fn estimate_prompt(api: Api, body: &Map<String, Value>) -> i64 {
    let mut tokens = 0;
    for field in ["messages", "input", "system", "tools"] {
        if let Some(value) = body.get(field) {
            tokens += text_bytes(value) / 3;
            if let Value::Array(items) = value
                && field == "messages"
            {
                tokens += PER_MESSAGE_TOKENS * items.len() as i64;
            }
        }
    }
    let _ = api;
    tokens.max(1)
}

fn text_bytes(value: &Value) -> i64 {
    match value {
        Value::String(s) => s.len() as i64,
        Value::Array(items) => items.iter().map(text_bytes).sum(),
        Value::Object(fields) => fields.values().map(text_bytes).sum(),
        _ => 1,
    }
}

/// Token counts as a provider reports them, normalised: prompt includes
/// cached (and Anthropic cache creation); cached = cache reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Prompt tokens, cached included.
    pub prompt: i64,
    /// Cache reads.
    pub cached: i64,
    /// Output tokens.
    pub completion: i64,
}

/// The usage of a whole (non-streamed) response body; None when it has none.
pub fn usage_of_response(api: Api, body: &[u8]) -> Option<Usage> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let usage = value.get("usage")?;
    if api.is_anthropic() {
        anthropic_usage(usage, None)
    } else {
        openai_usage(usage)
    }
}

pub(crate) fn openai_usage(usage: &Value) -> Option<Usage> {
    let int = |v: Option<&Value>| v.and_then(Value::as_i64).unwrap_or(0);
    let prompt = usage.get("prompt_tokens")?.as_i64()?;
    Some(Usage {
        prompt,
        cached: int(usage.pointer("/prompt_tokens_details/cached_tokens")),
        completion: int(usage.get("completion_tokens")),
    })
}

pub(crate) fn anthropic_usage(usage: &Value, before: Option<Usage>) -> Option<Usage> {
    let int = |name: &str| usage.get(name).and_then(Value::as_i64);
    let input = int("input_tokens");
    let read = int("cache_read_input_tokens");
    let created = int("cache_creation_input_tokens");
    let output = int("output_tokens");
    if input.is_none() && output.is_none() {
        return before;
    }
    let before = before.unwrap_or_default();
    let prompt = match (input, read, created) {
        (None, None, None) => before.prompt,
        _ => input.unwrap_or(0) + read.unwrap_or(0) + created.unwrap_or(0),
    };
    Some(Usage {
        prompt,
        cached: read.unwrap_or(before.cached),
        completion: output.unwrap_or(before.completion),
    })
}

/// Estimated tokens of generated text.
pub fn estimate_text_tokens(model: &str, text: &str) -> i64 {
    let _ = model;
    (text.len() as i64 + 3) / 4
}

/// Text generated in a whole JSON response.
pub fn generated_text(api: Api, body: &[u8]) -> String {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return String::new();
    };
    let mut text = String::new();
    if api.is_anthropic() {
        for block in value.get("content").and_then(Value::as_array).into_iter().flatten() {
            if let Some(t) = block.get("text").and_then(Value::as_str) {
                text.push_str(t);
            }
        }
    } else {
        for choice in value.get("choices").and_then(Value::as_array).into_iter().flatten() {
            if let Some(t) = choice.pointer("/message/content").and_then(Value::as_str) {
                text.push_str(t);
            }
        }
    }
    text
}
