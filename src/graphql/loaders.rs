//! Per-request batch loaders. Built fresh for every request so nothing
//! cached crosses requests or tenants.

use std::collections::HashMap;

use async_graphql::dataloader::{DataLoader, Loader};
use uuid::Uuid;

use crate::{
    accounts::model::{self as accounts, UserRow},
    db::DbPool,
    error::AppError,
};

/// Users by id.
pub struct UserLoader {
    pool: DbPool,
}

impl Loader<Uuid> for UserLoader {
    type Value = UserRow;
    type Error = AppError;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, UserRow>, AppError> {
        let mut conn = self.pool.get().await?;
        let rows = accounts::find_by_ids(&mut conn, keys).await?;
        Ok(rows.into_iter().map(|row| (row.id, row)).collect())
    }
}

/// Every loader of one request.
pub struct Loaders {
    /// Users by id.
    pub users: DataLoader<UserLoader>,
}

impl Loaders {
    /// Fresh loaders over `pool`.
    pub fn new(pool: &DbPool) -> Self {
        Self {
            users: DataLoader::new(UserLoader { pool: pool.clone() }, tokio::spawn),
        }
    }
}
