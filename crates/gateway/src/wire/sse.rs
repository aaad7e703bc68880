//! A streamed response passing through (SSE): whole events forwarded, the
//! usage kept. Stub until the lead's version lands.

use bytes::{Bytes, BytesMut};
use serde_json::Value;

use super::{Api, Usage, anthropic_usage, estimate_text_tokens, openai_usage};

/// A streamed response passing through (SSE). Forwards whole events, drops
/// the usage-only chunk when the caller did not ask for it, and keeps the
/// usage and the text generated so far.
pub struct StreamMeter {
    api: Api,
    model: String,
    pass_usage_chunk: bool,
    pending: BytesMut,
    usage: Option<Usage>,
    text: String,
    completed: bool,
}

impl StreamMeter {
    /// A meter for a stream of `api` calling `model`.
    pub fn new(api: Api, model: &str, pass_usage_chunk: bool) -> Self {
        Self {
            api,
            model: model.to_owned(),
            pass_usage_chunk,
            pending: BytesMut::new(),
            usage: None,
            text: String::new(),
            completed: false,
        }
    }

    /// Bytes from upstream in; bytes to send to the caller out.
    pub fn feed(&mut self, chunk: &[u8]) -> Bytes {
        self.pending.extend_from_slice(chunk);
        let mut out = BytesMut::new();
        while let Some(end) = event_end(&self.pending) {
            let event = self.pending.split_to(end);
            if self.keep(&event) {
                out.extend_from_slice(&event);
            }
        }
        out.freeze()
    }

    /// What is left at the end of the stream.
    pub fn finish(&mut self) -> Bytes {
        let rest = self.pending.split();
        if !rest.is_empty() && self.keep(&rest) {
            return rest.freeze();
        }
        Bytes::new()
    }

    /// The provider's usage, once seen.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// Output tokens generated so far, estimated from the text seen.
    pub fn generated_estimate(&self) -> i64 {
        estimate_text_tokens(&self.model, &self.text)
    }

    /// Whether the stream reached its normal end.
    pub fn completed(&self) -> bool {
        self.completed
    }

    /// Reads one event; false when it is to be dropped.
    fn keep(&mut self, event: &[u8]) -> bool {
        let text = String::from_utf8_lossy(event);
        let data: Vec<&str> = text
            .lines()
            .filter_map(|line| line.strip_prefix("data:"))
            .map(str::trim_start)
            .collect();
        if data.is_empty() {
            return true;
        }
        let data = data.join("\n");
        if data.trim() == "[DONE]" {
            self.completed = true;
            return true;
        }
        let Ok(value) = serde_json::from_str::<Value>(&data) else {
            return true;
        };
        if self.api.is_anthropic() {
            self.anthropic_event(&value);
            true
        } else {
            self.openai_chunk(&value)
        }
    }

    fn openai_chunk(&mut self, value: &Value) -> bool {
        for choice in value.get("choices").and_then(Value::as_array).into_iter().flatten() {
            if let Some(t) = choice.pointer("/delta/content").and_then(Value::as_str) {
                self.text.push_str(t);
            }
        }
        let Some(usage) = value.get("usage").filter(|u| !u.is_null()) else {
            return true;
        };
        self.usage = openai_usage(usage).or(self.usage);
        let usage_only = value.get("choices").and_then(Value::as_array).is_none_or(Vec::is_empty);
        self.pass_usage_chunk || !usage_only
    }

    fn anthropic_event(&mut self, value: &Value) {
        match value.get("type").and_then(Value::as_str) {
            Some("message_start") => {
                if let Some(usage) = value.pointer("/message/usage") {
                    self.usage = anthropic_usage(usage, self.usage);
                }
            }
            Some("message_delta") => {
                if let Some(usage) = value.get("usage") {
                    self.usage = anthropic_usage(usage, self.usage);
                }
            }
            Some("content_block_delta") => {
                if let Some(t) = value.pointer("/delta/text").and_then(Value::as_str) {
                    self.text.push_str(t);
                }
            }
            Some("message_stop") => self.completed = true,
            _ => {}
        }
    }
}

/// Where the first complete event ends (after its blank line).
fn event_end(buffer: &[u8]) -> Option<usize> {
    let lf = buffer.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    let crlf = buffer.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
