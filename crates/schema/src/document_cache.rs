//! Parsed documents kept by their text.
//!
//! The documents a server receives are the same few, again and again: an
//! editor's dashboard query, `recordUsage`, `authorizeUsage`. async-graphql
//! parses each request's text anew, and its parser (pest) was some 5% of
//! the instructions of a small query like the dashboard's. This extension
//! answers a text it has parsed before with a copy of that document.
//!
//! It sits innermost, where the parse happens, so every other extension
//! still sees each document as it would after a parse: the limits price
//! it, the input guard checks it against the request's variables, metrics
//! count it. Only documents that parsed are kept; a text that fails is
//! parsed (and refused) each time.

use std::{
    num::NonZeroUsize,
    sync::{Arc, Mutex, PoisonError},
};

use async_graphql::{
    ServerResult, Variables,
    extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery},
    parser::types::ExecutableDocument,
};
use lru::LruCache;

/// Documents kept at most: far more than the operations a client ships.
const CAPACITY: NonZeroUsize = NonZeroUsize::new(256).expect("256 is not zero");

/// Longest text kept, so the cache stays small (a few MB at most) whatever
/// clients send; longer documents are parsed each time.
const MAX_TEXT_BYTES: usize = 8 * 1024;

/// The extension: one cache for the schema, shared by every request.
pub struct DocumentCache {
    documents: Arc<Mutex<LruCache<String, ExecutableDocument>>>,
}

impl Default for DocumentCache {
    fn default() -> Self {
        Self {
            documents: Arc::new(Mutex::new(LruCache::new(CAPACITY))),
        }
    }
}

impl ExtensionFactory for DocumentCache {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Lookup {
            documents: self.documents.clone(),
        })
    }
}

/// One request's view of the cache.
struct Lookup {
    documents: Arc<Mutex<LruCache<String, ExecutableDocument>>>,
}

#[async_trait::async_trait]
impl Extension for Lookup {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        if query.len() > MAX_TEXT_BYTES {
            return next.run(ctx, query, variables).await;
        }
        // The lock is held only to look up or store, never across an await.
        let kept = self
            .documents
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(query)
            .cloned();
        if let Some(document) = kept {
            return Ok(document);
        }
        let document = next.run(ctx, query, variables).await?;
        self.documents
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .put(query.to_owned(), document.clone());
        Ok(document)
    }
}
