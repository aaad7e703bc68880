//! Streamed responses (server-sent events) passing through the gateway.
//!
//! Bytes are forwarded as soon as an event is complete, never held for the
//! whole response. On the way the meter keeps the provider's usage,
//! wherever it comes: OpenAI's usage chunk whether or not its `choices` is
//! empty (some providers put usage on the last content chunk), Anthropic's
//! `message_start` and its cumulative `message_delta` counts. It also
//! keeps the text generated so far, for an estimate when the provider
//! never reports usage or the caller hangs up.

use bytes::{Bytes, BytesMut};
use serde_json::Value;

use super::{Api, Usage, estimate::Counter};

/// A streamed response passing through.
#[derive(Debug)]
pub struct StreamMeter {
    api: Api,
    counter: Counter,
    pass_usage_chunk: bool,
    pending: BytesMut,
    usage: Option<Usage>,
    text: String,
    completed: bool,
}

impl StreamMeter {
    /// A meter for a stream of `api` from `model`; `pass_usage_chunk`:
    /// whether the caller asked for OpenAI's usage chunk (the gateway
    /// always asks the provider for it).
    pub fn new(api: Api, model: &str, pass_usage_chunk: bool) -> Self {
        Self {
            api,
            counter: Counter::for_model(model),
            pass_usage_chunk,
            pending: BytesMut::new(),
            usage: None,
            text: String::new(),
            completed: false,
        }
    }

    /// Bytes from upstream in; the bytes to send to the caller out: every
    /// event completed by this chunk (empty while an event is incomplete).
    pub fn feed(&mut self, chunk: &[u8]) -> Bytes {
        self.pending.extend_from_slice(chunk);
        let mut out = BytesMut::new();
        while let Some(end) = event_end(&self.pending) {
            let event = self.pending.split_to(end).freeze();
            self.forward(event, &mut out);
        }
        out.freeze()
    }

    /// What is left when the stream ends: an unterminated last event, read
    /// and passed on as it is.
    pub fn finish(&mut self) -> Bytes {
        if self.pending.is_empty() {
            return Bytes::new();
        }
        let rest = self.pending.split().freeze();
        let mut out = BytesMut::new();
        self.forward(rest, &mut out);
        out.freeze()
    }

    /// The provider's usage, once seen.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// Output tokens generated so far, estimated from the text seen.
    pub fn generated_estimate(&self) -> i64 {
        self.counter.count(&self.text)
    }

    /// Whether the stream reached its normal end (`[DONE]`, `message_stop`).
    pub fn completed(&self) -> bool {
        self.completed
    }

    /// Reads one event and appends what the caller should get of it.
    fn forward(&mut self, event: Bytes, out: &mut BytesMut) {
        let Some(data) = data_of(&event) else {
            out.extend_from_slice(&event);
            return;
        };
        if data.trim() == "[DONE]" {
            self.completed = true;
            out.extend_from_slice(&event);
            return;
        }
        let Ok(mut json) = serde_json::from_str::<Value>(&data) else {
            out.extend_from_slice(&event);
            return;
        };
        match self.api {
            Api::Messages => {
                self.read_anthropic(&json);
                out.extend_from_slice(&event);
            }
            Api::Chat | Api::Embeddings => match self.read_openai(&mut json) {
                Pass::AsIs => out.extend_from_slice(&event),
                Pass::Drop => {}
                Pass::Rewritten => {
                    out.extend_from_slice(b"data: ");
                    out.extend_from_slice(json.to_string().as_bytes());
                    out.extend_from_slice(b"\n\n");
                }
            },
        }
    }

    /// An OpenAI chunk: its text, its usage (taken out when the caller did
    /// not ask for it).
    fn read_openai(&mut self, chunk: &mut Value) -> Pass {
        let choices = chunk.get("choices").and_then(Value::as_array);
        for choice in choices.into_iter().flatten() {
            let Some(delta) = choice.get("delta") else {
                continue;
            };
            for field in ["content", "reasoning_content", "reasoning", "refusal"] {
                if let Some(text) = delta.get(field).and_then(Value::as_str) {
                    self.text.push_str(text);
                }
            }
            for call in delta.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
                if let Some(arguments) = call.pointer("/function/arguments").and_then(Value::as_str) {
                    self.text.push_str(arguments);
                }
            }
        }
        let has_choices = choices.is_some_and(|c| !c.is_empty());
        let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) else {
            return Pass::AsIs;
        };
        if let Some(usage) = Usage::from_openai(usage) {
            self.usage = Some(usage);
        }
        if self.pass_usage_chunk {
            Pass::AsIs
        } else if has_choices {
            if let Value::Object(map) = chunk {
                map.remove("usage");
            }
            Pass::Rewritten
        } else {
            Pass::Drop
        }
    }

    /// An Anthropic event: `message_start` carries the prompt's counts,
    /// `message_delta` the cumulative output (and, from some versions on,
    /// the prompt's counts again).
    fn read_anthropic(&mut self, event: &Value) {
        match event.get("type").and_then(Value::as_str) {
            Some("message_start") => {
                if let Some(usage) = event.pointer("/message/usage").and_then(Usage::from_anthropic) {
                    self.usage = Some(usage);
                }
            }
            Some("message_delta") => {
                let Some(usage) = event.get("usage") else {
                    return;
                };
                let mut merged = self.usage.unwrap_or_default();
                if let Some(full) = Usage::from_anthropic(usage) {
                    merged.prompt = full.prompt;
                    merged.cached = full.cached;
                }
                if let Some(output) = usage.get("output_tokens").and_then(Value::as_i64) {
                    merged.completion = output;
                }
                self.usage = Some(merged);
            }
            Some("content_block_delta") => {
                let delta = event.get("delta");
                for field in ["text", "partial_json", "thinking"] {
                    if let Some(text) = delta.and_then(|d| d.get(field)).and_then(Value::as_str) {
                        self.text.push_str(text);
                    }
                }
            }
            Some("message_stop") => self.completed = true,
            _ => {}
        }
    }
}

/// What to do with an OpenAI chunk.
enum Pass {
    AsIs,
    Drop,
    Rewritten,
}

/// Where the first complete event of `buffer` ends (after its blank line).
fn event_end(buffer: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i + 1 < buffer.len() {
        match (buffer[i], buffer[i + 1]) {
            (b'\n', b'\n') => return Some(i + 2),
            (b'\r', b'\n') if buffer[i + 2..].starts_with(b"\r\n") => return Some(i + 4),
            _ => i += 1,
        }
    }
    None
}

/// The event's `data:` lines joined; None when it has none (a comment, a
/// keep-alive).
fn data_of(event: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(event).ok()?;
    let mut data: Option<String> = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("data:") else {
            continue;
        };
        let rest = rest.strip_prefix(' ').unwrap_or(rest);
        match &mut data {
            Some(joined) => {
                joined.push('\n');
                joined.push_str(rest);
            }
            None => data = Some(rest.to_owned()),
        }
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(content: &str) -> String {
        format!("data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{content}\"}}}}],\"usage\":null}}\n\n")
    }

    const USAGE: &str = "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":5,\"prompt_tokens_details\":{\"cached_tokens\":2}}}\n\n";

    #[test]
    fn openai_events_pass_whole_and_the_usage_chunk_only_when_asked() {
        let mut meter = StreamMeter::new(Api::Chat, "gpt-4o", false);
        let first = chunk("Hello");
        // Split mid-event: nothing goes out until the event is complete.
        assert!(meter.feed(&first.as_bytes()[..10]).is_empty());
        assert_eq!(meter.feed(&first.as_bytes()[10..]), first.as_bytes());
        assert!(
            meter.feed(USAGE.as_bytes()).is_empty(),
            "the caller did not ask for usage"
        );
        assert_eq!(meter.feed(b"data: [DONE]\n\n"), &b"data: [DONE]\n\n"[..]);
        assert!(meter.completed());
        assert_eq!(
            meter.usage(),
            Some(Usage {
                prompt: 12,
                cached: 2,
                completion: 5
            })
        );

        let mut asked = StreamMeter::new(Api::Chat, "gpt-4o", true);
        assert_eq!(asked.feed(USAGE.as_bytes()), USAGE.as_bytes());
    }

    #[test]
    fn usage_on_a_chunk_with_choices_counts_and_is_removed_when_not_asked() {
        let mut meter = StreamMeter::new(Api::Chat, "gpt-4o", false);
        let last = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"!\"},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}\n\n";
        let out = meter.feed(last.as_bytes());
        let text = std::str::from_utf8(&out).unwrap();
        assert!(
            text.contains("\"content\":\"!\"") && !text.contains("prompt_tokens"),
            "{text}"
        );
        assert_eq!(
            meter.usage(),
            Some(Usage {
                prompt: 3,
                cached: 0,
                completion: 4
            })
        );
    }

    #[test]
    fn a_cut_stream_keeps_what_was_generated() {
        let mut meter = StreamMeter::new(Api::Chat, "gpt-4o", false);
        meter.feed(format!("{}{}", chunk("The quick brown fox"), chunk(" jumps over the lazy dog.")).as_bytes());
        assert!(!meter.completed());
        assert_eq!(meter.usage(), None);
        assert_eq!(meter.generated_estimate(), 10);
        assert_eq!(meter.finish(), Bytes::new());
    }

    #[test]
    fn anthropic_usage_is_the_start_plus_the_last_cumulative_delta() {
        let mut meter = StreamMeter::new(Api::Messages, "claude-sonnet-4-5", false);
        let events = concat!(
            "event: message_start\r\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":10,\"cache_read_input_tokens\":20,\"cache_creation_input_tokens\":3,\"output_tokens\":1}}}\r\n\r\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n",
            "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{},\"usage\":{\"output_tokens\":7}}\n\n",
            "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{},\"usage\":{\"output_tokens\":9}}\n\n",
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        );
        assert_eq!(meter.feed(events.as_bytes()), events.as_bytes());
        assert!(meter.completed());
        assert_eq!(
            meter.usage(),
            Some(Usage {
                prompt: 33,
                cached: 20,
                completion: 9
            })
        );
        assert_eq!(meter.generated_estimate(), 1);
    }
}
