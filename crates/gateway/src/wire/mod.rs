//! The wire formats the gateway speaks: OpenAI Chat Completions and
//! Embeddings, and Anthropic Messages. Reading a caller's request (and
//! estimating its prompt), rewriting it for a provider, and reading the
//! usage out of a provider's answer; [`sse`] does the same for streams.
//!
//! Requests are kept as the JSON object the caller sent, so fields the
//! gateway does not know pass through untouched.

pub mod estimate;
pub mod sse;

use serde_json::{Map, Value};
use tollgate_services::providers::ProviderKind;

pub use estimate::Counter;
pub use sse::StreamMeter;

use estimate::{MESSAGE_OVERHEAD, REPLY_PRIMING, Tally};

/// Longest model name accepted, in characters (as for recorded usage).
const MAX_MODEL_CHARS: usize = 200;
/// Most choices (`n`) one chat call may ask for.
const MAX_CHOICES: i64 = 128;

/// Which API an endpoint speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// OpenAI Chat Completions (`/v1/chat/completions`).
    Chat,
    /// OpenAI Embeddings (`/v1/embeddings`).
    Embeddings,
    /// Anthropic Messages (`/v1/messages`).
    Messages,
}

impl Api {
    /// Whether a provider of `kind` speaks this API.
    pub fn accepts(self, kind: ProviderKind) -> bool {
        match self {
            Self::Chat | Self::Embeddings => kind.speaks_openai(),
            Self::Messages => kind == ProviderKind::Anthropic,
        }
    }

    /// The upstream URL for a provider's base URL (trailing slashes
    /// ignored): OpenAI bases include the version, Anthropic's does not.
    pub fn upstream_url(self, base_url: &str) -> String {
        let base = base_url.trim_end_matches('/');
        let path = match self {
            Self::Chat => "/chat/completions",
            Self::Embeddings => "/embeddings",
            Self::Messages => "/v1/messages",
        };
        format!("{base}{path}")
    }

    /// Whether errors take Anthropic's shape (else OpenAI's).
    pub fn is_anthropic(self) -> bool {
        self == Self::Messages
    }
}

/// A body the gateway cannot read: 400 invalid_request_error with this
/// message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError(pub String);

impl WireError {
    fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// A caller's request, read once.
#[derive(Debug, Clone)]
pub struct CallRequest {
    /// The API it was sent to.
    pub api: Api,
    /// The model name the caller sent, trimmed.
    pub model: String,
    /// `stream: true`.
    pub stream: bool,
    /// OpenAI streams: whether the caller asked for the usage chunk.
    pub caller_wants_usage: bool,
    /// The most output tokens the call may produce as the caller limited
    /// it (`max_completion_tokens`, `max_tokens`; times `n` choices); None
    /// when the caller set no limit.
    pub output_limit: Option<i64>,
    /// Choices asked for (`n`, chat only; else 1): an output limit the
    /// gateway chooses holds for each of them.
    pub choices: i64,
    /// The prompt estimate, in tokens.
    pub prompt_estimate: i64,
    body: Map<String, Value>,
}

impl CallRequest {
    /// Reads and checks a body sent to `api`.
    pub fn parse(api: Api, body: &[u8]) -> Result<Self, WireError> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| WireError::new(format!("The request body is not valid JSON: {e}")))?;
        let Value::Object(body) = value else {
            return Err(WireError::new("The request body must be a JSON object."));
        };
        let model = body
            .get("model")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .ok_or_else(|| WireError::new("`model` is required and must be a string."))?;
        if model.chars().count() > MAX_MODEL_CHARS || model.chars().any(char::is_control) {
            return Err(WireError::new(format!(
                "`model` must be at most {MAX_MODEL_CHARS} characters, without control characters."
            )));
        }
        let stream = match body.get("stream") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(stream)) => *stream,
            Some(_) => return Err(WireError::new("`stream` must be a boolean.")),
        };
        if stream && api == Api::Embeddings {
            return Err(WireError::new("Embeddings cannot be streamed."));
        }
        let caller_wants_usage = body
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let choices = match (api, body.get("n")) {
            (Api::Chat, Some(n)) if !n.is_null() => positive(n, "n")?.min(MAX_CHOICES),
            _ => 1,
        };
        let limit = match api {
            Api::Chat => {
                let newer = optional_positive(&body, "max_completion_tokens")?;
                let older = optional_positive(&body, "max_tokens")?;
                // With both, the provider honours one of them: hold the larger.
                newer.max(older)
            }
            Api::Messages => optional_positive(&body, "max_tokens")?,
            Api::Embeddings => Some(0),
        };
        let prompt_estimate = prompt_estimate(api, model, &body)?;
        Ok(Self {
            api,
            model: model.to_owned(),
            stream,
            caller_wants_usage,
            output_limit: limit.map(|l| l.saturating_mul(choices)),
            choices,
            prompt_estimate,
            body,
        })
    }

    /// The body to send upstream: `model` replaced by `upstream_model`;
    /// with `send_limit` (the output the call holds, over all choices),
    /// the output limit set per choice (`max_completion_tokens` for chat to
    /// OpenAI itself, `max_tokens` elsewhere); chat streams ask for usage.
    pub fn upstream_body(&self, kind: ProviderKind, upstream_model: &str, send_limit: Option<i64>) -> Vec<u8> {
        let mut body = self.body.clone();
        body.insert("model".to_owned(), Value::from(upstream_model));
        if let Some(limit) = send_limit {
            let per_choice = (limit / self.choices.max(1)).max(1);
            let field = match (self.api, kind) {
                (Api::Chat, ProviderKind::OpenAi) => "max_completion_tokens",
                _ => "max_tokens",
            };
            if self.api != Api::Embeddings {
                body.insert(field.to_owned(), Value::from(per_choice));
            }
        }
        if self.api == Api::Chat && self.stream {
            let options = body
                .entry("stream_options")
                .or_insert_with(|| Value::Object(Map::new()));
            if !options.is_object() {
                *options = Value::Object(Map::new());
            }
            if let Value::Object(options) = options {
                options.insert("include_usage".to_owned(), Value::Bool(true));
            }
        }
        // A map of JSON values always serializes.
        serde_json::to_vec(&body).unwrap_or_default()
    }
}

fn positive(value: &Value, field: &str) -> Result<i64, WireError> {
    value
        .as_i64()
        .filter(|n| *n > 0)
        .ok_or_else(|| WireError::new(format!("`{field}` must be a positive integer.")))
}

fn optional_positive(body: &Map<String, Value>, field: &str) -> Result<Option<i64>, WireError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => positive(value, field).map(Some),
    }
}

/// The prompt's tokens as the gateway estimates them.
fn prompt_estimate(api: Api, model: &str, body: &Map<String, Value>) -> Result<i64, WireError> {
    let mut tally = Tally::default();
    match api {
        Api::Chat => {
            let messages = body
                .get("messages")
                .and_then(Value::as_array)
                .ok_or_else(|| WireError::new("`messages` is required and must be an array."))?;
            for message in messages {
                tally.add_tokens(MESSAGE_OVERHEAD);
                tally.add_value(message);
            }
            tally.add_tokens(REPLY_PRIMING);
            for field in ["tools", "functions", "response_format", "prediction"] {
                if let Some(value) = body.get(field) {
                    tally.add_text(&value.to_string());
                }
            }
        }
        Api::Messages => {
            let messages = body
                .get("messages")
                .and_then(Value::as_array)
                .ok_or_else(|| WireError::new("`messages` is required and must be an array."))?;
            if let Some(system) = body.get("system") {
                tally.add_value(system);
            }
            for message in messages {
                tally.add_tokens(MESSAGE_OVERHEAD);
                tally.add_value(message);
            }
            tally.add_tokens(REPLY_PRIMING);
            if let Some(tools) = body.get("tools") {
                tally.add_text(&tools.to_string());
            }
        }
        Api::Embeddings => match body.get("input") {
            Some(Value::String(text)) => tally.add_text(text),
            Some(Value::Array(items)) => {
                for item in items {
                    match item {
                        Value::String(text) => tally.add_text(text),
                        // Token ids: one token each.
                        Value::Number(_) => tally.add_tokens(1),
                        Value::Array(ids) => tally.add_tokens(i64::try_from(ids.len()).unwrap_or(i64::MAX)),
                        _ => {
                            return Err(WireError::new(
                                "`input` must be a string, an array of strings or of token ids.",
                            ));
                        }
                    }
                }
            }
            _ => return Err(WireError::new("`input` is required.")),
        },
    }
    Ok(tally.total(Counter::for_model(model)))
}

/// Token counts as a provider reports them, normalised: `prompt` includes
/// cached tokens (and Anthropic's cache writes), `cached` is the part read
/// from the provider's prompt cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Prompt tokens, cached ones included.
    pub prompt: i64,
    /// Prompt tokens served from the provider's cache.
    pub cached: i64,
    /// Completion tokens, reasoning included.
    pub completion: i64,
}

impl Usage {
    /// OpenAI's `usage` object (chat or embeddings).
    pub fn from_openai(usage: &Value) -> Option<Self> {
        let prompt = usage.get("prompt_tokens").and_then(Value::as_i64)?;
        let cached = usage
            .pointer("/prompt_tokens_details/cached_tokens")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let completion = usage.get("completion_tokens").and_then(Value::as_i64).unwrap_or(0);
        Some(Self {
            prompt,
            cached,
            completion,
        })
    }

    /// Anthropic's `usage` object: prompt = input + cache reads + cache
    /// writes; cached = cache reads.
    pub fn from_anthropic(usage: &Value) -> Option<Self> {
        let field = |name: &str| usage.get(name).and_then(Value::as_i64);
        let input = field("input_tokens")?;
        let read = field("cache_read_input_tokens").unwrap_or(0);
        let created = field("cache_creation_input_tokens").unwrap_or(0);
        Some(Self {
            prompt: input + read + created,
            cached: read,
            completion: field("output_tokens").unwrap_or(0),
        })
    }
}

/// The usage of a whole (non-streamed) response body; None when it has none.
pub fn usage_of_response(api: Api, body: &[u8]) -> Option<Usage> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let usage = value.get("usage").filter(|u| u.is_object())?;
    match api {
        Api::Chat | Api::Embeddings => Usage::from_openai(usage),
        Api::Messages => Usage::from_anthropic(usage),
    }
}

/// The text generated in a whole JSON response (every choice's message,
/// Anthropic's text and tool-use blocks), for an estimate when the
/// provider reports no usage.
pub fn generated_text(api: Api, body: &[u8]) -> String {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return String::new();
    };
    let mut tally = Tally::default();
    match api {
        Api::Chat => {
            for choice in value.get("choices").and_then(Value::as_array).into_iter().flatten() {
                let Some(message) = choice.get("message") else {
                    continue;
                };
                for part in ["content", "tool_calls", "refusal", "reasoning_content"] {
                    if let Some(value) = message.get(part) {
                        tally.add_value(value);
                    }
                }
            }
        }
        Api::Messages => {
            if let Some(content) = value.get("content") {
                tally.add_value(content);
            }
        }
        Api::Embeddings => {}
    }
    tally.into_text()
}

/// Estimated tokens of text a model generated.
pub fn estimate_text_tokens(model: &str, text: &str) -> i64 {
    Counter::for_model(model).count(text)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(api: Api, body: Value) -> Result<CallRequest, WireError> {
        CallRequest::parse(api, body.to_string().as_bytes())
    }

    #[test]
    fn chat_requests_are_read_and_estimated() {
        let call = parse(
            Api::Chat,
            json!({"model": " gpt-4o ", "messages": [{"role": "user", "content": "Hello there"}], "stream": true,
                   "stream_options": {"include_usage": true}, "max_tokens": 50, "n": 2}),
        )
        .unwrap();
        assert_eq!(call.model, "gpt-4o");
        assert!(call.stream && call.caller_wants_usage);
        assert_eq!(call.output_limit, Some(100));
        // "user", a separator and "Hello there" under o200k: 1 + 1 + 2,
        // plus the overheads (OpenAI bills 9: the separator is ours).
        assert_eq!(call.prompt_estimate, MESSAGE_OVERHEAD + 4 + REPLY_PRIMING);
        let unlimited = parse(Api::Chat, json!({"model": "m", "messages": []})).unwrap();
        assert_eq!(unlimited.output_limit, None);
        assert!(!unlimited.stream);
    }

    #[test]
    fn bad_bodies_are_refused_with_a_message() {
        for (api, body) in [
            (Api::Chat, json!({"messages": []})),
            (Api::Chat, json!({"model": "", "messages": []})),
            (Api::Chat, json!({"model": "m"})),
            (Api::Chat, json!({"model": "m", "messages": [], "stream": "yes"})),
            (Api::Chat, json!({"model": "m", "messages": [], "max_tokens": 0})),
            (Api::Messages, json!({"model": "m", "messages": [], "max_tokens": -1})),
            (Api::Embeddings, json!({"model": "m"})),
            (Api::Embeddings, json!({"model": "m", "input": "x", "stream": true})),
            (Api::Chat, json!([1, 2])),
        ] {
            assert!(parse(api, body.clone()).is_err(), "{body}");
        }
        assert!(CallRequest::parse(Api::Chat, b"{not json").is_err());
    }

    #[test]
    fn the_upstream_body_names_the_upstream_model_and_the_limit_the_budget_allows() {
        let call = parse(
            Api::Chat,
            json!({"model": "fast", "messages": [], "stream": true, "n": 2, "extra": 1}),
        )
        .unwrap();
        let body: Value =
            serde_json::from_slice(&call.upstream_body(ProviderKind::OpenAi, "gpt-4o-mini", Some(100))).unwrap();
        assert_eq!(body["model"], "gpt-4o-mini");
        assert_eq!(body["max_completion_tokens"], 50);
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert_eq!(body["extra"], 1);
        let compatible: Value =
            serde_json::from_slice(&call.upstream_body(ProviderKind::OpenAiCompatible, "x", Some(10))).unwrap();
        assert_eq!(compatible["max_tokens"], 5);
        assert!(compatible.get("max_completion_tokens").is_none());
        let unlimited: Value = serde_json::from_slice(&call.upstream_body(ProviderKind::OpenAi, "x", None)).unwrap();
        assert!(unlimited.get("max_completion_tokens").is_none());
        let messages = parse(Api::Messages, json!({"model": "claude", "messages": []})).unwrap();
        let body: Value =
            serde_json::from_slice(&messages.upstream_body(ProviderKind::Anthropic, "claude-x", Some(7))).unwrap();
        assert_eq!(body["max_tokens"], 7);
        assert!(body.get("stream_options").is_none());
    }

    #[test]
    fn usage_is_read_from_both_apis() {
        let openai = json!({"usage": {"prompt_tokens": 100, "completion_tokens": 20,
            "prompt_tokens_details": {"cached_tokens": 40}, "completion_tokens_details": {"reasoning_tokens": 5}}});
        assert_eq!(
            usage_of_response(Api::Chat, openai.to_string().as_bytes()),
            Some(Usage {
                prompt: 100,
                cached: 40,
                completion: 20
            })
        );
        let anthropic = json!({"usage": {"input_tokens": 10, "cache_read_input_tokens": 30,
            "cache_creation_input_tokens": 5, "output_tokens": 7}});
        assert_eq!(
            usage_of_response(Api::Messages, anthropic.to_string().as_bytes()),
            Some(Usage {
                prompt: 45,
                cached: 30,
                completion: 7
            })
        );
        assert_eq!(usage_of_response(Api::Chat, br#"{"choices": []}"#), None);
        let embeddings = json!({"usage": {"prompt_tokens": 8, "total_tokens": 8}});
        assert_eq!(
            usage_of_response(Api::Embeddings, embeddings.to_string().as_bytes()),
            Some(Usage {
                prompt: 8,
                cached: 0,
                completion: 0
            })
        );
    }

    #[test]
    fn generated_text_is_found_in_both_apis() {
        let chat = json!({"choices": [{"message": {"role": "assistant", "content": "Hi there"}}]});
        assert_eq!(generated_text(Api::Chat, chat.to_string().as_bytes()), "Hi there");
        let messages = json!({"content": [{"type": "text", "text": "Hello"}]});
        assert_eq!(generated_text(Api::Messages, messages.to_string().as_bytes()), "Hello");
    }

    #[test]
    fn urls_follow_each_providers_convention() {
        assert_eq!(
            Api::Chat.upstream_url("https://api.openai.com/v1/"),
            "https://api.openai.com/v1/chat/completions"
        );
        assert_eq!(Api::Embeddings.upstream_url("http://x/v1"), "http://x/v1/embeddings");
        assert_eq!(
            Api::Messages.upstream_url("https://api.anthropic.com"),
            "https://api.anthropic.com/v1/messages"
        );
        assert!(Api::Chat.accepts(ProviderKind::OpenAiCompatible));
        assert!(!Api::Chat.accepts(ProviderKind::Anthropic));
        assert!(Api::Messages.accepts(ProviderKind::Anthropic));
    }
}
