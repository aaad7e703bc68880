//! What every resolver may ask of the request context.

use std::{net::IpAddr, sync::Arc};

use async_graphql::Context;

use crate::{
    app::AppState,
    auth::Principal,
    error::{AppError, AppResult},
    graphql::loaders::{LoaderCell, Loaders},
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
    /// The request's batch loaders (a subscription's are renewed for each
    /// event; see [`LoaderCell`]).
    fn loaders(&self) -> AppResult<Arc<Loaders>>;
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

    fn loaders(&self) -> AppResult<Arc<Loaders>> {
        Ok(self.data::<LoaderCell>().map_err(AppError::from)?.current())
    }

    fn request_meta(&self) -> AppResult<&RequestMeta> {
        self.data::<RequestMeta>().map_err(AppError::from)
    }
}
