//! The LLM gateway.
