//! The GraphQL schema: one `build_schema()` used by the server, the tests
//! and `tollgate export-schema`, plus the HTTP and websocket handlers that
//! wrap its executor.

pub mod access;
pub mod api;
pub mod context;
pub mod cost;
pub mod document_cache;
pub mod error;
pub mod field_errors;
pub mod http;
pub mod input_guard;
pub mod key_gate;
pub mod limits;
pub mod loaders;
pub mod media;
pub mod metrics;
pub mod persisted;
pub mod plain;
pub mod request;
pub mod scalars;
pub mod websocket;

use async_graphql::{MergedObject, Schema};

use api::{
    accounts::{
        device::{DeviceMutation, DeviceQuery},
        mfa::MfaMutation,
        mutation::AccountsMutation,
        oauth::OAuthMutation,
        profile::ProfileMutation,
        query::AccountsQuery,
    },
    admin::{AdminMutation, AdminQuery},
    billing::{mutation::BillingMutation, query::BillingQuery},
    keys::{mutation::KeysMutation, query::KeysQuery},
    orgs::{mutation::OrgsMutation, query::OrgsQuery},
    platform::client_config::PlatformQuery,
    providers::{mutation::ProvidersMutation, query::ProvidersQuery},
    usage::{live_usage::SubscriptionRoot, mutation::UsageMutation, query::UsageQuery},
};
pub use limits::QueryLimits;
use persisted::PersistedQueries;
use tollgate_auth::AppState;
use tollgate_services::usage::live::UsageHub;

/// State of the HTTP and websocket handlers.
#[derive(Clone)]
pub struct HttpState {
    /// The application.
    pub app: AppState,
    /// The executable schema.
    pub schema: AppSchema,
    /// Documents registered by automatic persisted queries.
    pub persisted: PersistedQueries,
    /// Routes live usage and access changes to this instance's websockets.
    pub usage_hub: UsageHub,
}

impl axum::extract::FromRef<HttpState> for AppState {
    fn from_ref(http: &HttpState) -> Self {
        http.app.clone()
    }
}

/// Every query field, merged from the domains.
#[derive(MergedObject, Default)]
#[graphql(name = "Query")]
pub struct QueryRoot(
    AccountsQuery,
    OrgsQuery,
    BillingQuery,
    UsageQuery,
    PlatformQuery,
    DeviceQuery,
    KeysQuery,
    AdminQuery,
    ProvidersQuery,
);

/// Every mutation field, merged from the domains.
#[derive(MergedObject, Default)]
#[graphql(name = "Mutation")]
pub struct MutationRoot(
    AccountsMutation,
    MfaMutation,
    OAuthMutation,
    DeviceMutation,
    ProfileMutation,
    KeysMutation,
    OrgsMutation,
    UsageMutation,
    BillingMutation,
    AdminMutation,
    ProvidersMutation,
);

/// The executable schema.
pub type AppSchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

/// Builds the schema. Request data (application, principal) is attached
/// per request and loaders per execution, so the schema itself needs no
/// running server.
pub fn build_schema(limits: QueryLimits) -> AppSchema {
    let mut builder = Schema::build(QueryRoot::default(), MutationRoot::default(), SubscriptionRoot)
        // First, so it sees the codes the extensions after it set.
        .extension(metrics::GraphqlMetrics)
        // Parse errors, the input guard, the caps on cost and statements.
        .extension(limits::Limits::new(limits, cost_model()))
        // Around every field: field errors, the API key gate, connection
        // scopes; fresh loaders for each execution. One extension for all
        // of it, since each extension costs a boxed future per field.
        .extension(field_errors::FieldErrors)
        // Last, so innermost: it stands in for the parse alone, and the
        // extensions above still see every document.
        .extension(document_cache::DocumentCache::default())
        // The parser's own guard against stack exhaustion; the configurable
        // depth limit (QUERY_TOO_COMPLEX) sits below it.
        .limit_recursive_depth(64);
    if !limits.introspection {
        builder = builder.disable_introspection();
    }
    builder.finish()
}

/// Prices documents by the shapes of this schema's fields. Read from the
/// exported SDL (the public form of the schema), so it cannot drift from
/// the fields that exist.
pub fn cost_model() -> cost::CostModel {
    let sdl = Schema::build(QueryRoot::default(), MutationRoot::default(), SubscriptionRoot)
        .finish()
        .sdl();
    // Our own SDL, the same at every start; a test reads it too.
    cost::CostModel::from_sdl(&sdl).expect("the schema's SDL parses")
}

/// The SDL that `schema.graphql` must equal.
pub fn export_sdl() -> String {
    build_schema(QueryLimits::default()).sdl()
}
