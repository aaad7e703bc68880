//! Token estimates: what a prompt will cost before the provider says, and
//! what a response cost when the provider never says.
//!
//! The OpenAI families are counted with their own tokenizer (tiktoken's
//! o200k_base or cl100k_base); other models as UTF-8 bytes / 3, which
//! over-counts English slightly, the safe side for a budget. Images and
//! documents cost a fixed amount each: their base64 length says nothing of
//! what the provider will bill.

use serde_json::Value;
use tiktoken_rs::CoreBPE;

/// Tokens one message adds besides its content (role, separators), as
/// OpenAI documents for its chat format.
pub const MESSAGE_OVERHEAD: i64 = 3;
/// Tokens every chat prompt adds for priming the reply.
pub const REPLY_PRIMING: i64 = 3;
/// What one image is counted as: about what a provider bills for a large one.
pub const IMAGE_TOKENS: i64 = 1_600;
/// What one document (PDF, file, audio) is counted as.
pub const DOCUMENT_TOKENS: i64 = 8_000;
/// Text beyond this many bytes is counted by length, not tokenized: a
/// tokenizer pass over megabytes would hold a runtime thread for long.
const TOKENIZE_MAX_BYTES: usize = 256 * 1024;

/// Which way a model's text is counted.
#[derive(Clone, Copy)]
pub enum Counter {
    /// A tiktoken vocabulary.
    Tiktoken(&'static CoreBPE),
    /// UTF-8 bytes / 3.
    Bytes,
}

impl std::fmt::Debug for Counter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Tiktoken(_) => "Tiktoken",
            Self::Bytes => "Bytes",
        })
    }
}

impl Counter {
    /// The counter for a model name.
    pub fn for_model(model: &str) -> Self {
        let model = model.trim().to_ascii_lowercase();
        let model = model.rsplit('/').next().unwrap_or(&model);
        let o200k = [
            "gpt-4o",
            "gpt-4.1",
            "gpt-4.5",
            "gpt-5",
            "chatgpt-4o",
            "gpt-oss",
            "o1",
            "o3",
            "o4",
        ];
        let cl100k = ["gpt-4", "gpt-3.5", "text-embedding"];
        if o200k.iter().any(|p| model.starts_with(p)) {
            Self::Tiktoken(tiktoken_rs::o200k_base_singleton())
        } else if cl100k.iter().any(|p| model.starts_with(p)) {
            Self::Tiktoken(tiktoken_rs::cl100k_base_singleton())
        } else {
            Self::Bytes
        }
    }

    /// Tokens of `text`.
    pub fn count(self, text: &str) -> i64 {
        if text.is_empty() {
            return 0;
        }
        match self {
            Self::Tiktoken(bpe) if text.len() <= TOKENIZE_MAX_BYTES => {
                i64::try_from(bpe.encode_ordinary(text).len()).unwrap_or(i64::MAX)
            }
            Self::Tiktoken(_) => by_length(text, 4),
            Self::Bytes => by_length(text, 3),
        }
    }
}

fn by_length(text: &str, bytes_per_token: usize) -> i64 {
    i64::try_from(text.len().div_ceil(bytes_per_token)).unwrap_or(i64::MAX)
}

/// Text and media found in a JSON value, to be counted at once.
#[derive(Debug, Default)]
pub struct Tally {
    text: String,
    fixed: i64,
}

impl Tally {
    /// Adds every string of `value`, and a fixed cost for each image or
    /// document part (recognised by its `type`).
    pub fn add_value(&mut self, value: &Value) {
        match value {
            Value::String(s) => self.add_text(s),
            Value::Array(items) => items.iter().for_each(|v| self.add_value(v)),
            Value::Object(map) => {
                let kind = map.get("type").and_then(Value::as_str).unwrap_or_default();
                match kind {
                    "image_url" | "image" | "input_image" => self.fixed += IMAGE_TOKENS,
                    "document" | "file" | "input_file" | "input_audio" => self.fixed += DOCUMENT_TOKENS,
                    _ => map
                        .iter()
                        // The part's type names are not sent as text.
                        .filter(|(key, _)| key.as_str() != "type")
                        .for_each(|(_, v)| self.add_value(v)),
                }
            }
            Value::Number(_) | Value::Bool(_) | Value::Null => {}
        }
    }

    /// Adds a piece of text.
    pub fn add_text(&mut self, text: &str) {
        if !self.text.is_empty() {
            self.text.push('\n');
        }
        self.text.push_str(text);
    }

    /// Adds a fixed number of tokens.
    pub fn add_tokens(&mut self, tokens: i64) {
        self.fixed = self.fixed.saturating_add(tokens);
    }

    /// The text gathered, without the fixed costs.
    pub fn into_text(self) -> String {
        self.text
    }

    /// The total under `counter`.
    pub fn total(&self, counter: Counter) -> i64 {
        counter.count(&self.text).saturating_add(self.fixed)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn openai_families_use_their_tokenizer_and_others_count_bytes() {
        let text = "The quick brown fox jumps over the lazy dog.";
        let gpt = Counter::for_model("gpt-4o-2024-08-06").count(text);
        assert_eq!(gpt, 10, "o200k_base counts the pangram as 10 tokens");
        assert_eq!(Counter::for_model("openai/gpt-4o").count(text), gpt);
        assert_eq!(Counter::for_model("gpt-3.5-turbo").count(text), 10);
        assert_eq!(Counter::for_model("claude-sonnet-4-5").count(text), 15);
    }

    #[test]
    fn images_cost_a_fixed_amount_whatever_their_size() {
        let small = json!([{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]);
        let big = json!([{"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{}", "A".repeat(1_000_000))}}]);
        let count = |v: &Value| {
            let mut tally = Tally::default();
            tally.add_value(v);
            tally.total(Counter::Bytes)
        };
        assert_eq!(count(&small), IMAGE_TOKENS);
        assert_eq!(count(&big), IMAGE_TOKENS);
        let anthropic = json!([{"type": "image", "source": {"type": "base64", "data": "A".repeat(5000)}}, {"type": "text", "text": "abc"}]);
        assert_eq!(count(&anthropic), IMAGE_TOKENS + 1);
    }
}
