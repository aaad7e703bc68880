//! The Relay connection every paged list of the API answers with:
//! [`Connection`] of a node type, its [`Edge`]s, and [`PageInfo`].
//!
//! One generic type instead of one per list: a node type says how it is
//! made from a page's row and how its list is counted
//! ([`ConnectionNode`]), and the GraphQL names follow from the node's
//! (`User` gives `UserConnection` and `UserEdge`). The page itself is a
//! plain [`pagination::Page`], cut by the resolver that reads the rows.

use std::{borrow::Cow, future::Future};

use async_graphql::{Context, Object, OutputType, SimpleObject, TypeName};
use diesel::QueryResult;
use diesel_async::AsyncPgConnection;

use tollgate_db::pagination;

use crate::{context::ContextExt, error::ApiResult, scalars::BigInt};

/// A GraphQL type that a [`Connection`] lists.
pub trait ConnectionNode: OutputType + Sized {
    /// What a page holds for one node: the service's row.
    type Row: Clone + Send + Sync + 'static;
    /// What the list was filtered by; `totalCount` counts with it.
    type Filter: Send + Sync + 'static;

    /// The node shown for one row of a page.
    fn from_row(row: &Self::Row) -> Self;

    /// How many rows match `filter`, across all pages.
    fn count(conn: &mut AsyncPgConnection, filter: &Self::Filter) -> impl Future<Output = QueryResult<i64>> + Send;
}

/// A page of a list of `N`, and what it was filtered by.
pub struct Connection<N: ConnectionNode> {
    page: pagination::Page<N::Row>,
    filter: N::Filter,
}

impl<N: ConnectionNode> Connection<N> {
    /// The connection for one page of the list that `filter` selects.
    pub fn new(page: pagination::Page<N::Row>, filter: N::Filter) -> Self {
        Self { page, filter }
    }
}

impl<N: ConnectionNode> TypeName for Connection<N> {
    /// `<Node>Connection`, e.g. `UserConnection`.
    fn type_name() -> Cow<'static, str> {
        format!("{}Connection", N::type_name()).into()
    }
}

#[Object(name_type)]
impl<N: ConnectionNode> Connection<N> {
    /// The items of this page, each with its cursor.
    async fn edges(&self) -> Vec<Edge<N>> {
        self.page
            .items
            .iter()
            .map(|(cursor, row)| Edge {
                cursor: cursor.clone(),
                row: row.clone(),
            })
            .collect()
    }

    /// The items of this page.
    async fn nodes(&self) -> Vec<N> {
        self.page.items.iter().map(|(_, row)| N::from_row(row)).collect()
    }

    /// Where this page sits in the list.
    async fn page_info(&self) -> PageInfo {
        PageInfo::from(&self.page.info)
    }

    /// How many items match the filters, across all pages.
    async fn total_count(&self, ctx: &Context<'_>) -> ApiResult<BigInt> {
        let mut conn = ctx.app()?.db().await?;
        Ok(BigInt(N::count(&mut conn, &self.filter).await?))
    }
}

/// One item of a list, with its cursor.
pub struct Edge<N: ConnectionNode> {
    cursor: String,
    row: N::Row,
}

impl<N: ConnectionNode> TypeName for Edge<N> {
    /// `<Node>Edge`, e.g. `UserEdge`.
    fn type_name() -> Cow<'static, str> {
        format!("{}Edge", N::type_name()).into()
    }
}

#[Object(name_type)]
impl<N: ConnectionNode> Edge<N> {
    /// Pass as `after` to continue after this item.
    async fn cursor(&self) -> &str {
        &self.cursor
    }

    /// The item.
    async fn node(&self) -> N {
        N::from_row(&self.row)
    }
}

/// Where a page sits in its list.
#[derive(SimpleObject)]
#[graphql(name = "PageInfo")]
pub struct PageInfo {
    /// A cursor was given: rows come before this page.
    pub has_previous_page: bool,
    /// More rows follow this page.
    pub has_next_page: bool,
    /// The cursor of the first row of this page.
    pub start_cursor: Option<String>,
    /// The cursor of the last row of this page; pass it as `after` for the next page.
    pub end_cursor: Option<String>,
}

impl From<&pagination::PageInfo> for PageInfo {
    fn from(info: &pagination::PageInfo) -> Self {
        Self {
            has_previous_page: info.has_previous_page,
            has_next_page: info.has_next_page,
            start_cursor: info.start_cursor.clone(),
            end_cursor: info.end_cursor.clone(),
        }
    }
}
