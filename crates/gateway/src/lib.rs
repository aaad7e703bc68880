//! The LLM gateway: OpenAI- and Anthropic-compatible endpoints under `/v1`
//! that carry a caller's calls to the providers with the platform's own
//! credentials, holding each call's tokens against the budgets before it
//! starts and recording what it used when it ends.

pub mod wire;
