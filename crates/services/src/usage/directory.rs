//! The model catalog and where each model is routed, with the providers'
//! keys decrypted, kept in memory per instance: every gateway call and
//! every settlement needs them, and they change only when staff edit a
//! model or a provider.
//!
//! The copy is checked against the catalog's version, one row that a
//! trigger bumps in the transaction of every change to `models`,
//! `model_routes` or `providers` (upsertModel, upsertProvider,
//! deleteProvider, the environment's providers at start, or plain SQL). A
//! gateway call reads the version along with the statement it runs first
//! anyway, so a change is seen by the very next call on every instance,
//! at no extra round trip. (The announcements, which other caches follow,
//! would not do here: they cannot see a change made in plain SQL, and
//! are applied on other instances a moment after the commit.)

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, RwLock},
};

use diesel::{QueryResult, prelude::*, sql_types::BigInt};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use secrecy::SecretString;

use crate::{
    providers::{ProviderRow, Upstream},
    usage::{llm_models, pricing::Catalog},
};
use tollgate_core::error::{AppError, AppResult};
use tollgate_db::schema::{model_routes, providers};
use tollgate_platform::{Platform, secrets::Secrets};

/// The catalog and the routes as one snapshot.
pub struct Directory {
    /// The model catalog.
    pub catalog: Catalog,
    /// Each routed model's routes to enabled providers, in order.
    routes: HashMap<String, Vec<Route>>,
}

/// A route as kept: the upstream, or why its provider's key cannot be used.
#[derive(Clone)]
struct Route {
    upstream: Upstream,
    /// False when the stored key does not decrypt under this instance's
    /// `SECRETS_KEY`: calls through it fail as they always did.
    key_readable: bool,
}

impl fmt::Debug for Directory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Directory")
            .field("routed_models", &self.routes.len())
            .finish_non_exhaustive()
    }
}

impl Directory {
    /// The routes of catalog model `model_id` to enabled providers, in
    /// order, keys decrypted. Empty: the model is not callable. An error
    /// when a route's stored key cannot be read (it names no secret).
    pub fn upstreams(&self, model_id: &str) -> AppResult<Vec<Upstream>> {
        let Some(routes) = self.routes.get(model_id) else {
            return Ok(Vec::new());
        };
        routes
            .iter()
            .map(|route| {
                if route.key_readable {
                    Ok(route.upstream.clone())
                } else {
                    Err(AppError::internal(anyhow::anyhow!(
                        "the stored API key of provider {} does not decrypt under SECRETS_KEY",
                        route.upstream.provider_key
                    )))
                }
            })
            .collect()
    }

    /// Whether `model_id` is routed to an enabled provider.
    pub fn is_routed(&self, model_id: &str) -> bool {
        self.routes.get(model_id).is_some_and(|routes| !routes.is_empty())
    }

    /// Reads the catalog and the routes to enabled providers: two statements.
    pub async fn load(conn: &mut AsyncPgConnection, secrets: &Secrets) -> QueryResult<Self> {
        let models = llm_models::list(conn).await?;
        let rows: Vec<(String, String, ProviderRow)> = model_routes::table
            .inner_join(providers::table)
            .filter(providers::enabled.eq(true))
            .order((model_routes::model_id, model_routes::position))
            .select((
                model_routes::model_id,
                model_routes::upstream_model,
                ProviderRow::as_select(),
            ))
            .load(conn)
            .await?;
        // Each provider's key is decrypted once, however many routes use it.
        let mut keys: HashMap<String, Option<Option<SecretString>>> = HashMap::new();
        let mut routes: HashMap<String, Vec<Route>> = HashMap::new();
        for (model_id, upstream_model, provider) in rows {
            let key = keys
                .entry(provider.key.clone())
                .or_insert_with(|| {
                    provider
                        .api_key_ciphertext
                        .as_deref()
                        .map(|stored| secrets.decrypt(stored))
                        .transpose()
                        .ok()
                })
                .clone();
            routes.entry(model_id).or_default().push(Route {
                key_readable: key.is_some(),
                upstream: Upstream {
                    provider_key: provider.key,
                    kind: provider.kind,
                    base_url: provider.base_url.trim_end_matches('/').to_owned(),
                    api_key: key.flatten(),
                    upstream_model,
                },
            });
        }
        Ok(Self {
            catalog: Catalog::new(models),
            routes,
        })
    }
}

/// This instance's copy, with the catalog version it was read at.
#[derive(Default)]
struct Cached(RwLock<Option<(i64, Arc<Directory>)>>);

/// The catalog's version now: one row, changed in the transaction of
/// every change to models, routes or providers (by a trigger, so plain SQL
/// counts too). Callers on a hot path read it along with a statement they
/// run anyway ([`VERSION_SQL`]).
pub async fn version(conn: &mut AsyncPgConnection) -> QueryResult<i64> {
    diesel::select(diesel::dsl::sql::<BigInt>(VERSION_SQL))
        .get_result(conn)
        .await
}

/// An SQL expression for the catalog's version, to select along with
/// other columns.
pub const VERSION_SQL: &str = "(SELECT version FROM catalog_version)";

/// The directory at catalog version `version` (read by the caller, at most
/// a moment ago): this instance's copy when it is of that version, else
/// read again and kept. Call it holding no pooled connection: it may take
/// one.
pub async fn at_version(app: &Platform, version: i64) -> AppResult<Arc<Directory>> {
    if let Some(directory) = cached(app).get(version) {
        return Ok(directory);
    }
    let mut conn = app.db().await?;
    // The version first: a change committing while the rows are read then
    // leaves a copy labelled older than it is, read again next time; never
    // older rows under a newer label.
    let read_at = self::version(&mut conn).await?;
    load_and_keep(app, &mut conn, read_at).await
}

/// [`at_version`] on a connection the caller holds (inside its own
/// transaction, say), with `version` read on it before: the copy when it
/// is of that version, else read on `conn` and kept.
pub async fn at_version_on(app: &Platform, conn: &mut AsyncPgConnection, version: i64) -> AppResult<Arc<Directory>> {
    match cached(app).get(version) {
        Some(directory) => Ok(directory),
        None => load_and_keep(app, conn, version).await,
    }
}

fn cached(app: &Platform) -> Arc<Cached> {
    app.local(|_| Cached::default())
}

/// Reads the directory on `conn` and keeps it as of `read_at`, a version
/// read before the rows (see [`at_version`]).
async fn load_and_keep(app: &Platform, conn: &mut AsyncPgConnection, read_at: i64) -> AppResult<Arc<Directory>> {
    let directory = Arc::new(Directory::load(conn, app.secrets()).await?);
    cached(app).keep(read_at, Arc::clone(&directory));
    Ok(directory)
}

/// The directory now: [`at_version`] of the version read here (one
/// statement of one row, for callers that run none to read it with).
pub async fn current(app: &Platform) -> AppResult<Arc<Directory>> {
    let version = {
        let mut conn = app.db().await?;
        self::version(&mut conn).await?
    };
    at_version(app, version).await
}

impl Cached {
    fn get(&self, version: i64) -> Option<Arc<Directory>> {
        let copy = self.0.read().unwrap_or_else(|p| p.into_inner());
        copy.as_ref()
            .filter(|(read_at, _)| *read_at == version)
            .map(|(_, directory)| Arc::clone(directory))
    }

    /// Keeps `directory` unless a newer copy is kept already (versions only
    /// grow).
    fn keep(&self, version: i64, directory: Arc<Directory>) {
        let mut copy = self.0.write().unwrap_or_else(|p| p.into_inner());
        if copy.as_ref().is_none_or(|(kept, _)| *kept <= version) {
            *copy = Some((version, directory));
        }
    }
}
