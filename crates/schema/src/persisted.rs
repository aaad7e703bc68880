//! Automatic persisted queries, as Apollo Client and urql send them: a
//! request names its document by `extensions.persistedQuery.sha256Hash`
//! (version 1) and leaves `query` out; when the server does not know the
//! hash it answers `PersistedQueryNotFound` (HTTP 200, code
//! PERSISTED_QUERY_NOT_FOUND) and the client sends the document once with
//! its hash, which registers it.
//!
//! Documents are kept in a bounded in-memory LRU and, when Redis is
//! configured, under the deployment's key prefix with a TTL, so that a
//! document registered through one instance is known to all of them. A
//! Redis failure only costs the client the round trip that registers the
//! document again.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use async_graphql::Request as GqlRequest;
use lru::LruCache;
use redis::aio::ConnectionManager;
use sha2::{Digest, Sha256};

use tollgate_core::error::{AppError, AppResult, ErrorCode};

/// Documents kept in memory per instance.
const MAX_ENTRIES: usize = 2_000;
/// Total size of the documents kept in memory per instance.
const MAX_BYTES: usize = 16 * 1024 * 1024;
/// How long Redis keeps a document nobody registered again.
const REDIS_TTL: Duration = Duration::from_secs(24 * 3600);
/// The message Apollo Client and urql look for before they resend.
pub const NOT_FOUND_MESSAGE: &str = "PersistedQueryNotFound";

/// What a request's `extensions.persistedQuery` asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersistedQuery {
    /// Lowercase hex SHA-256 of the document.
    pub hash: String,
    /// True when the request carried the document: it is registered once
    /// it runs without a request error.
    pub register: bool,
}

/// The store of documents by hash, shared by the HTTP handlers.
#[derive(Clone)]
pub struct PersistedQueries {
    memory: Arc<Mutex<Memory>>,
    redis: Option<ConnectionManager>,
    key_prefix: String,
}

struct Memory {
    documents: LruCache<String, Arc<str>>,
    bytes: usize,
}

impl PersistedQueries {
    /// A store in memory, and in Redis under `key_prefix` when given.
    pub fn new(redis: Option<ConnectionManager>, key_prefix: String) -> Self {
        Self {
            memory: Arc::new(Mutex::new(Memory {
                documents: LruCache::unbounded(),
                bytes: 0,
            })),
            redis,
            key_prefix,
        }
    }

    /// Reads `extensions.persistedQuery` of a request and, for a request
    /// that names its document only by hash, puts the document in. None
    /// when the request does not use persisted queries.
    pub async fn apply(&self, request: &mut GqlRequest) -> AppResult<Option<PersistedQuery>> {
        let Some(extension) = request.extensions.get("persistedQuery") else {
            return Ok(None);
        };
        let hash = requested_hash(&serde_json::to_value(extension).unwrap_or_default())?;
        if !request.query.is_empty() {
            if sha256_hex(&request.query) != hash {
                return Err(AppError::bad_input(
                    "sha256Hash",
                    "extensions.persistedQuery.sha256Hash is not the SHA-256 of the query",
                ));
            }
            return Ok(Some(PersistedQuery { hash, register: true }));
        }
        let document = self
            .get(&hash)
            .await
            .ok_or_else(|| AppError::client(ErrorCode::PersistedQueryNotFound, NOT_FOUND_MESSAGE))?;
        request.query = document.to_string();
        Ok(Some(PersistedQuery { hash, register: false }))
    }

    /// Keeps a document that ran under its hash.
    pub async fn register(&self, persisted: &PersistedQuery, query: &str) {
        if !persisted.register {
            return;
        }
        self.remember(&persisted.hash, Arc::from(query));
        let Some(mut redis) = self.redis.clone() else {
            return;
        };
        let stored: redis::RedisResult<()> = redis::cmd("SET")
            .arg(self.redis_key(&persisted.hash))
            .arg(query)
            .arg("EX")
            .arg(REDIS_TTL.as_secs())
            .query_async(&mut redis)
            .await;
        if let Err(error) = stored {
            tracing::warn!(%error, "could not share a persisted query through Redis");
        }
    }

    async fn get(&self, hash: &str) -> Option<Arc<str>> {
        if let Some(document) = self.memory().documents.get(hash) {
            return Some(document.clone());
        }
        let mut redis = self.redis.clone()?;
        let found: redis::RedisResult<Option<String>> = redis::cmd("GET")
            .arg(self.redis_key(hash))
            .query_async(&mut redis)
            .await;
        let document = match found {
            Ok(document) => document?,
            Err(error) => {
                tracing::warn!(%error, "could not read a persisted query from Redis");
                return None;
            }
        };
        // Redis holds what some instance checked against its hash; check
        // again rather than trust a key anyone with access could write.
        if sha256_hex(&document) != hash {
            return None;
        }
        let document: Arc<str> = Arc::from(document);
        self.remember(hash, document.clone());
        Some(document)
    }

    fn remember(&self, hash: &str, document: Arc<str>) {
        if document.len() > MAX_BYTES {
            return;
        }
        let mut memory = self.memory();
        memory.bytes += document.len();
        if let Some((_, replaced)) = memory.documents.push(hash.to_owned(), document) {
            memory.bytes -= replaced.len();
        }
        while memory.documents.len() > MAX_ENTRIES || memory.bytes > MAX_BYTES {
            match memory.documents.pop_lru() {
                Some((_, evicted)) => memory.bytes -= evicted.len(),
                None => break,
            }
        }
    }

    fn memory(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.memory.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn redis_key(&self, hash: &str) -> String {
        format!("{}apq:{hash}", self.key_prefix)
    }

    #[cfg(test)]
    fn len_in_memory(&self) -> usize {
        self.memory().documents.len()
    }
}

/// The hash of `{"version": 1, "sha256Hash": "<64 hex digits>"}`.
fn requested_hash(extension: &serde_json::Value) -> AppResult<String> {
    let version = extension.get("version").and_then(serde_json::Value::as_i64);
    if version != Some(1) {
        return Err(AppError::bad_input(
            "version",
            "extensions.persistedQuery.version must be 1",
        ));
    }
    let hash = extension
        .get("sha256Hash")
        .and_then(serde_json::Value::as_str)
        .filter(|hash| hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| {
            AppError::bad_input(
                "sha256Hash",
                "extensions.persistedQuery.sha256Hash must be 64 hexadecimal digits",
            )
        })?;
    Ok(hash.to_ascii_lowercase())
}

/// Lowercase hex SHA-256 of a document, as clients compute it.
pub fn sha256_hex(document: &str) -> String {
    hex::encode(Sha256::digest(document.as_bytes()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn request(query: &str, extension: serde_json::Value) -> GqlRequest {
        let mut request = GqlRequest::new(query);
        request.extensions.insert(
            "persistedQuery".to_owned(),
            async_graphql::Value::from_json(extension).unwrap(),
        );
        request
    }

    #[tokio::test]
    async fn a_document_registered_by_hash_is_found_by_hash() {
        let store = PersistedQueries::new(None, "t:".to_owned());
        let query = "{ plans { key } }";
        let hash = sha256_hex(query);
        let mut unknown = request("", json!({ "version": 1, "sha256Hash": hash }));
        let refused = store.apply(&mut unknown).await.unwrap_err();
        assert_eq!(refused.code(), ErrorCode::PersistedQueryNotFound);

        let mut full = request(query, json!({ "version": 1, "sha256Hash": hash.to_uppercase() }));
        let persisted = store.apply(&mut full).await.unwrap().unwrap();
        assert!(persisted.register);
        store.register(&persisted, query).await;

        let mut by_hash = request("", json!({ "version": 1, "sha256Hash": hash }));
        assert!(!store.apply(&mut by_hash).await.unwrap().unwrap().register);
        assert_eq!(by_hash.query, query);
    }

    #[tokio::test]
    async fn a_wrong_hash_or_version_is_bad_input() {
        let store = PersistedQueries::new(None, "t:".to_owned());
        let mut wrong = request(
            "{ plans { key } }",
            json!({ "version": 1, "sha256Hash": "0".repeat(64) }),
        );
        assert_eq!(
            store.apply(&mut wrong).await.unwrap_err().code(),
            ErrorCode::BadUserInput
        );
        let mut version = request("{ a }", json!({ "version": 2, "sha256Hash": sha256_hex("{ a }") }));
        assert_eq!(
            store.apply(&mut version).await.unwrap_err().code(),
            ErrorCode::BadUserInput
        );
        let mut short = request("", json!({ "version": 1, "sha256Hash": "abc" }));
        assert_eq!(
            store.apply(&mut short).await.unwrap_err().code(),
            ErrorCode::BadUserInput
        );
    }

    #[tokio::test]
    async fn memory_is_bounded_and_keeps_the_recently_used() {
        let store = PersistedQueries::new(None, "t:".to_owned());
        let first = "{ first }";
        let first_hash = PersistedQuery {
            hash: sha256_hex(first),
            register: true,
        };
        store.register(&first_hash, first).await;
        for i in 0..MAX_ENTRIES + 10 {
            let query = format!("{{ q{i} }}");
            if i % 100 == 0 {
                // Used now and then: stays.
                assert!(store.get(&first_hash.hash).await.is_some(), "evicted after {i}");
            }
            let persisted = PersistedQuery {
                hash: sha256_hex(&query),
                register: true,
            };
            store.register(&persisted, &query).await;
        }
        assert_eq!(store.len_in_memory(), MAX_ENTRIES);
        assert!(store.get(&sha256_hex("{ q0 }")).await.is_none());
        assert!(store.get(&sha256_hex("{ first }")).await.is_some());
    }
}
