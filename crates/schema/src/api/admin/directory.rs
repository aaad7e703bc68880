//! The staff's lists of accounts and organizations, a page at a time.

use async_graphql::{Context, Object, SimpleObject};

use crate::api::page_info::PageInfo;
use crate::{
    api::{accounts::query::User, orgs::query::Organization},
    context::ContextExt,
    error::ApiResult,
    pagination::Page,
    scalars::BigInt,
};
use tollgate_services::{
    accounts::model::UserRow,
    admin::search::{self, OrganizationFilter, UserFilter},
    orgs::{access::Access, model::OrganizationRow},
};

/// Accounts, a page at a time.
pub struct UserConnection {
    pub(super) page: Page<UserRow>,
    pub(super) filter: UserFilter,
}

#[Object]
impl UserConnection {
    /// The users of this page, each with its cursor.
    async fn edges(&self) -> Vec<UserEdge> {
        self.page
            .items
            .iter()
            .map(|(cursor, row)| UserEdge {
                cursor: cursor.clone(),
                row: row.clone(),
            })
            .collect()
    }

    /// The users of this page.
    async fn nodes(&self) -> Vec<User> {
        self.page.items.iter().map(|(_, row)| User::new(row.clone())).collect()
    }

    /// Where this page sits in the list.
    async fn page_info(&self) -> PageInfo {
        PageInfo::from(&self.page.info)
    }

    /// How many users match the filters, across all pages.
    async fn total_count(&self, ctx: &Context<'_>) -> ApiResult<BigInt> {
        let mut conn = ctx.app()?.db().await?;
        Ok(BigInt(search::count_users(&mut conn, &self.filter).await?))
    }
}

/// One user in a list.
pub struct UserEdge {
    cursor: String,
    row: UserRow,
}

#[Object]
impl UserEdge {
    /// Pass as `after` to continue after this user.
    async fn cursor(&self) -> &str {
        &self.cursor
    }

    /// The user.
    async fn node(&self) -> User {
        User::new(self.row.clone())
    }
}

/// Organizations, a page at a time.
pub struct OrganizationConnection {
    pub(super) page: Page<(OrganizationRow, Access)>,
    pub(super) filter: OrganizationFilter,
}

#[Object]
impl OrganizationConnection {
    /// The organizations of this page, each with its cursor.
    async fn edges(&self) -> Vec<OrganizationEdge> {
        self.page
            .items
            .iter()
            .map(|(cursor, (row, access))| OrganizationEdge {
                cursor: cursor.clone(),
                node: Organization::new(row.clone(), *access),
            })
            .collect()
    }

    /// The organizations of this page.
    async fn nodes(&self) -> Vec<Organization> {
        self.page
            .items
            .iter()
            .map(|(_, (row, access))| Organization::new(row.clone(), *access))
            .collect()
    }

    /// Where this page sits in the list.
    async fn page_info(&self) -> PageInfo {
        PageInfo::from(&self.page.info)
    }

    /// How many organizations match the filters, across all pages.
    async fn total_count(&self, ctx: &Context<'_>) -> ApiResult<BigInt> {
        let mut conn = ctx.app()?.db().await?;
        Ok(BigInt(search::count_organizations(&mut conn, &self.filter).await?))
    }
}

/// One organization in a list.
#[derive(SimpleObject)]
pub struct OrganizationEdge {
    /// Pass as `after` to continue after this organization.
    cursor: String,
    /// The organization.
    node: Organization,
}
