//! What every resolver may ask of the request context.

use std::net::IpAddr;

use async_graphql::Context;

use crate::{
    app::AppState,
    auth::Principal,
    error::{AppError, AppResult},
    graphql::loaders::Loaders,
};

/// Facts about the HTTP request (or websocket connection) behind a query.
#[derive(Debug, Clone)]
pub struct RequestMeta {
    /// The client address, after trusted proxies are peeled off.
    pub client_ip: IpAddr,
    /// The client's User-Agent header.
    pub user_agent: Option<String>,
}

/// Typed access to per-request data; missing data is an internal error,
/// never a panic.
pub trait ContextExt {
    /// The application.
    fn app(&self) -> AppResult<&AppState>;
    /// Who is asking.
    fn principal(&self) -> AppResult<&Principal>;
    /// The per-request batch loaders.
    fn loaders(&self) -> AppResult<&Loaders>;
    /// Client address and agent.
    fn request_meta(&self) -> AppResult<&RequestMeta>;
}

impl ContextExt for Context<'_> {
    fn app(&self) -> AppResult<&AppState> {
        self.data::<AppState>().map_err(AppError::from)
    }

    fn principal(&self) -> AppResult<&Principal> {
        self.data::<Principal>().map_err(AppError::from)
    }

    fn loaders(&self) -> AppResult<&Loaders> {
        self.data::<Loaders>().map_err(AppError::from)
    }

    fn request_meta(&self) -> AppResult<&RequestMeta> {
        self.data::<RequestMeta>().map_err(AppError::from)
    }
}
