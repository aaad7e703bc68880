//! What every resolver may ask of the request context.

use async_graphql::Context;

use crate::{
    error::{ApiError, ApiResult},
    loaders::Loaders,
};
use tollgate_auth::{AppState, Principal};
use tollgate_core::request::RequestMeta;

/// Typed access to per-request data; missing data is an internal error,
/// never a panic.
pub trait ContextExt {
    /// The application.
    fn app(&self) -> ApiResult<&AppState>;
    /// Who is asking.
    fn principal(&self) -> ApiResult<&Principal>;
    /// The per-request batch loaders.
    fn loaders(&self) -> ApiResult<&Loaders>;
    /// Client address and agent.
    fn request_meta(&self) -> ApiResult<&RequestMeta>;
}

impl ContextExt for Context<'_> {
    fn app(&self) -> ApiResult<&AppState> {
        self.data::<AppState>().map_err(ApiError::from)
    }

    fn principal(&self) -> ApiResult<&Principal> {
        self.data::<Principal>().map_err(ApiError::from)
    }

    fn loaders(&self) -> ApiResult<&Loaders> {
        self.data::<Loaders>().map_err(ApiError::from)
    }

    fn request_meta(&self) -> ApiResult<&RequestMeta> {
        self.data::<RequestMeta>().map_err(ApiError::from)
    }
}
