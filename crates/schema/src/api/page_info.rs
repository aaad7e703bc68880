//! Where a page sits in its list, as the GraphQL `PageInfo` type shared by
//! every connection.

use async_graphql::SimpleObject;

use crate::pagination;

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
