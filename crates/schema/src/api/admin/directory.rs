//! The staff's lists of accounts and organizations, a page at a time: how
//! users and organizations are listed in a
//! [`Connection`](crate::api::connection::Connection).

use diesel::QueryResult;
use diesel_async::AsyncPgConnection;

use crate::api::{accounts::query::User, connection::ConnectionNode, orgs::query::Organization};
use tollgate_auth::users::UserRow;
use tollgate_services::admin::search::{self, OrganizationFilter, UserFilter};

/// Accounts, a page at a time (`UserConnection`): the staff's search.
impl ConnectionNode for User {
    type Row = UserRow;
    type Filter = UserFilter;

    fn from_row(row: &UserRow) -> Self {
        User::new(row.clone())
    }

    async fn count(conn: &mut AsyncPgConnection, filter: &UserFilter) -> QueryResult<i64> {
        search::count_users(conn, filter).await
    }
}

/// Organizations, a page at a time (`OrganizationConnection`): the staff's
/// search, each with the caller's access to it.
impl ConnectionNode for Organization {
    type Row = Organization;
    type Filter = OrganizationFilter;

    fn from_row(organization: &Organization) -> Self {
        organization.clone()
    }

    async fn count(conn: &mut AsyncPgConnection, filter: &OrganizationFilter) -> QueryResult<i64> {
        search::count_organizations(conn, filter).await
    }
}
