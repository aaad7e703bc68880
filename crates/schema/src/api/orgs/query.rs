//! The Organization, Membership and Invitation types and the organization
//! query. Every field goes through the rules of [`tollgate_services::orgs::access`].

use std::{borrow::Cow, collections::HashMap, sync::Arc};

use async_graphql::{
    Context, ContextSelectionSet, ID, Lookahead, Object, OutputType, Positioned, ScalarType, ServerResult, Value,
    parser::types::Field as GqlField,
    registry::Registry,
    resolver_utils::{enum_value, resolve_list},
};
use uuid::Uuid;

use crate::{
    access,
    api::{accounts::query::User, admin::AuditEntry, connection::Connection, enums as gql, usage::query::UsageEvent},
    context::ContextExt,
    error::ApiResult,
    loaders,
    plain::{self, PlainObject},
    scalars::{BigInt, Timestamp},
};
use tollgate_auth::{roles::OrgRole, users::UserSummary};
use tollgate_core::error::AppError;
use tollgate_services::orgs::{
    access::{Access, KeyAccess},
    invitation_rows::InvitationRow,
    model as orgs,
    model::{MembershipRow, OrganizationRow},
    slug::well_formed,
};

/// A tenant: people with roles, keys, usage and a plan.
#[derive(Clone)]
pub struct Organization {
    row: OrganizationRow,
    access: Access,
    /// Its members, loaded with those of the rest of its page when the
    /// page's selection reads them ([`MembersInHand::for_page`]).
    page_members: Option<Arc<MembersInHand>>,
}

impl Organization {
    /// Organization `id` as the caller may see it; None when they may not
    /// (whether or not it exists).
    pub async fn load(ctx: &Context<'_>, id: Uuid) -> ApiResult<Option<Self>> {
        let access = access::access_to(ctx, id).await?;
        if !access.can_see() {
            return Ok(None);
        }
        let row = ctx.loaders()?.organizations.load_one(id).await?;
        Ok(row.map(|row| Self::new(row, access)))
    }

    /// Like [`Organization::load`], for non-null fields: NOT_FOUND when
    /// the caller may not see it.
    pub async fn require(ctx: &Context<'_>, id: Uuid) -> ApiResult<Self> {
        Ok(Self::load(ctx, id)
            .await?
            .ok_or_else(|| AppError::not_found("organization"))?)
    }

    /// Wraps a row the caller's access to was already established.
    pub fn new(row: OrganizationRow, access: Access) -> Self {
        Self {
            row,
            access,
            page_members: None,
        }
    }

    /// The same, with the members of its page already in hand.
    pub fn with_page_members(self, members: Option<Arc<MembersInHand>>) -> Self {
        Self {
            page_members: members,
            ..self
        }
    }

    /// The row behind it.
    pub fn row(&self) -> &OrganizationRow {
        &self.row
    }

    /// What the caller is to this organization.
    pub fn access(&self) -> Access {
        self.access
    }
}

#[Object]
impl Organization {
    /// Stable identifier.
    async fn id(&self) -> ID {
        ID(self.row.id.to_string())
    }

    /// Display name.
    async fn name(&self) -> &str {
        &self.row.name
    }

    /// Unique URL-friendly name: 3 to 40 of a-z, 0-9 and '-'.
    async fn slug(&self) -> &str {
        &self.row.slug
    }

    /// Created for each user at registration; cannot be left or deleted.
    async fn personal(&self) -> bool {
        self.row.personal_user_id.is_some()
    }

    /// When it was created.
    async fn created_at(&self) -> Timestamp {
        self.row.created_at.into()
    }

    /// The one member with the OWNER role.
    async fn owner(&self, ctx: &Context<'_>) -> ApiResult<User> {
        let loaders = ctx.loaders()?;
        let members = loaders
            .memberships_by_organization
            .load_one(self.row.id)
            .await?
            .unwrap_or_default();
        let owner_id = members
            .iter()
            .find(|m| m.role == OrgRole::Owner)
            .map(|m| m.user_id)
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("organization {} has no owner", self.row.id)))?;
        let owner = loaders.users.load_one(owner_id).await?;
        Ok(owner
            .map(User::new)
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("owner {owner_id} missing")))?)
    }

    /// The caller's role here; null for platform staff who are not members.
    async fn viewer_role(&self) -> Option<gql::OrgRole> {
        self.access.role.map(Into::into)
    }

    /// Everyone in the organization, longest-standing first.
    async fn members(&self, ctx: &Context<'_>) -> ApiResult<Members> {
        let in_hand = match &self.page_members {
            Some(page_members) => page_members.clone(),
            None => Arc::new(MembersInHand::for_one(ctx, self.row.id).await?),
        };
        Ok(Members {
            organization_id: self.row.id,
            in_hand,
        })
    }

    /// Pending invitations; OWNER/ADMIN (null with FORBIDDEN for others).
    async fn invitations(&self, ctx: &Context<'_>) -> ApiResult<Option<Vec<Invitation>>> {
        self.access.require("Organization.invitations")?;
        let pending = ctx
            .loaders()?
            .pending_invitations
            .load_one(self.row.id)
            .await?
            .unwrap_or_default();
        Ok(Some(pending.into_iter().map(Invitation).collect()))
    }

    /// The subscription: what the organization pays for, and where the payments stand.
    async fn subscription(&self, ctx: &Context<'_>) -> ApiResult<crate::api::billing::query::BillingSubscription> {
        crate::api::billing::query::billing_subscription_of(ctx, self.row.id).await
    }

    /// The plan in effect now, whose limits apply (the free plan once a grace period or a cancelled period has ended).
    async fn plan(&self, ctx: &Context<'_>) -> ApiResult<crate::api::billing::query::Plan> {
        crate::api::billing::query::plan_of(ctx, self.row.id).await
    }

    /// Free-form settings shared by the organization's clients.
    async fn settings(&self) -> &serde_json::Value {
        &self.row.settings
    }

    /// OWNER/ADMIN (null with FORBIDDEN for others). Newest first.
    async fn audit_log(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> ApiResult<Option<Connection<AuditEntry>>> {
        self.access.require("Organization.auditLog")?;
        crate::api::admin::organization_audit_log(ctx, self.row.id, first, after)
            .await
            .map(Some)
    }

    /// OWNER/ADMIN see all keys; others see the keys they created.
    async fn api_keys(&self, ctx: &Context<'_>) -> ApiResult<Vec<crate::api::keys::query::ApiKey>> {
        crate::api::keys::query::keys_of_organization(ctx, self.access).await
    }

    /// Tokens and requests of the current period against the plan's limits.
    async fn quota(&self, ctx: &Context<'_>) -> ApiResult<crate::api::usage::quota::Quota> {
        self.access.require("Organization.quota")?;
        crate::api::usage::query::organization_quota(ctx, self.row.id).await
    }

    /// By occurredAt, in whole UTC days (from/to are truncated to their day); default: the days of the current period.
    async fn usage(
        &self,
        ctx: &Context<'_>,
        from: Option<Timestamp>,
        to: Option<Timestamp>,
        #[graphql(default_with = "gql::UsageGroupBy::Day")] group_by: gql::UsageGroupBy,
    ) -> ApiResult<Vec<crate::api::usage::query::UsageBucket>> {
        self.access.require("Organization.usage")?;
        crate::api::usage::query::organization_usage(ctx, self.row.id, from, to, group_by).await
    }

    /// Newest received first. from/to bound occurredAt. model matches the reported name or the catalog id it resolved to.
    #[allow(clippy::too_many_arguments)]
    async fn usage_events(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        model: Option<String>,
        api_key_id: Option<ID>,
        user_id: Option<ID>,
        from: Option<Timestamp>,
        to: Option<Timestamp>,
    ) -> ApiResult<Connection<UsageEvent>> {
        self.access.require("Organization.usageEvents")?;
        let args = crate::api::usage::query::UsageEventsArgs {
            first,
            after,
            model,
            api_key_id,
            user_id,
            from,
            to,
        };
        crate::api::usage::query::organization_usage_events(ctx, self.row.id, args).await
    }
}

/// One person's place in one organization.
pub struct Membership(pub MembershipRow, pub SeenBy);

/// Whose view a membership is resolved in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeenBy {
    /// The request's caller, by their credentials.
    Caller,
    /// The member themself, known from the operation: the answer of
    /// register, login or refresh, whose request carries no credentials
    /// yet.
    Member,
}

#[Object]
impl Membership {
    /// The organization.
    async fn organization(&self, ctx: &Context<'_>) -> ApiResult<Organization> {
        if self.1 == SeenBy::Caller {
            return Organization::require(ctx, self.0.organization_id).await;
        }
        let row = ctx.loaders()?.organizations.load_one(self.0.organization_id).await?;
        let access = Access {
            organization_id: self.0.organization_id,
            role: Some(self.0.role),
            staff: None,
            staff_awaiting_mfa: None,
            key: KeyAccess::NotAKey,
        };
        Ok(row
            .map(|row| Organization::new(row, access))
            .ok_or_else(|| AppError::not_found("organization"))?)
    }

    /// The member.
    async fn user(&self, ctx: &Context<'_>) -> ApiResult<User> {
        let user = ctx.loaders()?.users.load_one(self.0.user_id).await?;
        Ok(user.map(User::new).ok_or_else(|| AppError::not_found("user"))?)
    }

    /// Their role here.
    async fn role(&self) -> gql::OrgRole {
        self.0.role.into()
    }

    /// When they joined.
    async fn joined_at(&self) -> Timestamp {
        self.0.created_at.into()
    }

    /// Monthly token budget for this member inside the organization; null = none.
    async fn token_limit(&self) -> Option<BigInt> {
        self.0.token_limit.map(BigInt)
    }

    /// Tokens counted against this member in the current period: usage reported with their token and with keys they created.
    async fn tokens_used(&self, ctx: &Context<'_>) -> ApiResult<BigInt> {
        crate::api::usage::query::member_tokens_used(ctx, self.0.organization_id, self.0.user_id).await
    }
}

/// The members of some organizations, with their users when the selection
/// reads them: what [`Members`] answers from.
pub struct MembersInHand {
    by_organization: HashMap<Uuid, Vec<MembershipRow>>,
    /// Empty when the selection does not read `user`.
    users: HashMap<Uuid, UserSummary>,
}

impl MembersInHand {
    /// The members of a page of organizations, in one statement (with
    /// their users when the selection reads them), when `members` (the
    /// page's `Organization.members` in the selection) exists; None
    /// otherwise. Per-organization loaders would batch them
    /// too, but their batch waits only a millisecond for the page's other
    /// organizations to ask, and under load the executor takes longer to
    /// reach them: one read of 100 organizations became some 20
    /// statements for the members and 20 for their users.
    pub async fn for_page(
        ctx: &Context<'_>,
        organization_ids: &[Uuid],
        members: &[Lookahead<'_>],
    ) -> ApiResult<Option<Arc<Self>>> {
        if !members.iter().any(Lookahead::exists) {
            return Ok(None);
        }
        let with_users = members.iter().any(|members| members.field("user").exists());
        let mut conn = ctx.app()?.db().await?;
        let (rows, users) = if with_users {
            with_users_by_id(orgs::members_of_organizations(&mut conn, organization_ids).await?)
        } else {
            let rows = orgs::memberships_of_organizations(&mut conn, organization_ids).await?;
            (rows, HashMap::new())
        };
        Ok(Some(Arc::new(Self {
            by_organization: loaders::group(organization_ids, rows, |row| row.organization_id),
            users,
        })))
    }

    /// The members of one organization (with their users when the
    /// selection reads them), through the loaders: batched with the other
    /// organizations asked at the same time.
    async fn for_one(ctx: &Context<'_>, organization_id: Uuid) -> ApiResult<Self> {
        let loaders = ctx.loaders()?;
        let (members, users) = if ctx.look_ahead().field("user").exists() {
            let pairs = loaders
                .members_by_organization
                .load_one(organization_id)
                .await?
                .unwrap_or_default();
            with_users_by_id(pairs)
        } else {
            let members = loaders
                .memberships_by_organization
                .load_one(organization_id)
                .await?
                .unwrap_or_default();
            (members, HashMap::new())
        };
        Ok(Self {
            by_organization: HashMap::from([(organization_id, members)]),
            users,
        })
    }
}

/// Memberships read with their users (one join), as [`MembersInHand`]
/// keeps them: the rows in order, the users by id.
fn with_users_by_id(pairs: Vec<(MembershipRow, UserSummary)>) -> (Vec<MembershipRow>, HashMap<Uuid, UserSummary>) {
    pairs
        .into_iter()
        .map(|(membership, user)| (membership, (user.id, user)))
        .unzip()
}

/// An organization's members: answered as plain data ([`crate::plain`])
/// when every selected field is one, through the executor as
/// `[Membership!]!` otherwise.
pub struct Members {
    organization_id: Uuid,
    in_hand: Arc<MembersInHand>,
}

impl Members {
    fn rows(&self) -> &[MembershipRow] {
        self.in_hand
            .by_organization
            .get(&self.organization_id)
            .map_or(&[], Vec::as_slice)
    }

    fn plain(&self, ctx: &ContextSelectionSet<'_>) -> Option<Value> {
        let answers = self.rows().iter().map(|membership| {
            let member = MemberInHand {
                membership,
                user: self.in_hand.users.get(&membership.user_id),
            };
            plain::object(ctx, &ctx.item.node, &member)
        });
        Some(Value::List(answers.collect::<Option<_>>()?))
    }
}

impl OutputType for Members {
    fn type_name() -> Cow<'static, str> {
        <Vec<Membership> as OutputType>::type_name()
    }

    fn qualified_type_name() -> String {
        <Vec<Membership> as OutputType>::qualified_type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        <Vec<Membership> as OutputType>::create_type_info(registry)
    }

    async fn resolve(&self, ctx: &ContextSelectionSet<'_>, field: &Positioned<GqlField>) -> ServerResult<Value> {
        if let Some(answer) = self.plain(ctx) {
            return Ok(answer);
        }
        let rows = self.rows();
        let members = rows.iter().map(|m| Membership(m.clone(), SeenBy::Caller));
        resolve_list(ctx, field, members, Some(rows.len())).await
    }
}

/// A membership and its user's row, for the plain answer. The fields are
/// those of [`Membership`] that need nothing but the two rows; each must
/// give what the field of the same name there gives.
struct MemberInHand<'a> {
    membership: &'a MembershipRow,
    /// None when not loaded (not selected) or not found: then `user` is
    /// left to the executor, which knows how to fail.
    user: Option<&'a UserSummary>,
}

impl PlainObject for MemberInHand<'_> {
    const TYPE_NAME: &'static str = "Membership";

    fn field(&self, ctx: &ContextSelectionSet<'_>, field: &GqlField) -> Option<Value> {
        let membership = self.membership;
        Some(match field.name.node.as_str() {
            "role" => enum_value(gql::OrgRole::from(membership.role)),
            "joinedAt" => Timestamp(membership.created_at).to_value(),
            "tokenLimit" => membership
                .token_limit
                .map_or(Value::Null, |limit| BigInt(limit).to_value()),
            "user" => plain::object(ctx, &field.selection_set.node, self.user?)?,
            _ => return None,
        })
    }
}

/// An emailed offer to join an organization.
pub struct Invitation(pub InvitationRow);

#[Object]
impl Invitation {
    /// Stable identifier (for revokeInvitation).
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    /// The invited address.
    async fn email(&self) -> &str {
        &self.0.email
    }

    /// The role the invitee gets on accepting.
    async fn role(&self) -> gql::OrgRole {
        self.0.role.into()
    }

    /// Where the invitation leads.
    async fn organization(&self, ctx: &Context<'_>) -> ApiResult<Organization> {
        Organization::require(ctx, self.0.organization_id).await
    }

    /// Who sent it.
    async fn invited_by(&self, ctx: &Context<'_>) -> ApiResult<User> {
        let user = ctx.loaders()?.users.load_one(self.0.invited_by).await?;
        Ok(user.map(User::new).ok_or_else(|| AppError::not_found("user"))?)
    }

    /// When it was sent.
    async fn created_at(&self) -> Timestamp {
        self.0.created_at.into()
    }

    /// When the link stops working.
    async fn expires_at(&self) -> Timestamp {
        self.0.expires_at.into()
    }

    /// When it was accepted, if it was.
    async fn accepted_at(&self) -> Option<Timestamp> {
        self.0.accepted_at.map(Timestamp)
    }
}

/// Queries about organizations.
#[derive(Default)]
pub struct OrgsQuery;

#[Object]
impl OrgsQuery {
    /// Members, or ADMIN/SUPPORT. Exactly one of id or slug.
    async fn organization(
        &self,
        ctx: &Context<'_>,
        id: Option<ID>,
        slug: Option<String>,
    ) -> ApiResult<Option<Organization>> {
        let id = match (id, slug) {
            (Some(id), None) => match Uuid::parse_str(&id) {
                Ok(id) => id,
                // Not an id of ours: invisible, like any other.
                Err(_) => return Ok(None),
            },
            (None, Some(slug)) => {
                // Not a slug at all: invisible, like any other, without a query.
                if !well_formed(slug.trim()) {
                    return Ok(None);
                }
                let mut conn = ctx.app()?.db().await?;
                match orgs::find_by_slug(&mut conn, slug.trim()).await? {
                    Some(row) => row.id,
                    None => return Ok(None),
                }
            }
            _ => return Err(AppError::bad_input("id", "give exactly one of id or slug").into()),
        };
        Organization::load(ctx, id).await
    }
}

#[cfg(test)]
mod tests {
    use std::marker::PhantomData;

    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::{
        api::accounts::query::tests::user_row,
        plain::testing::{PlainOnly, assert_same_answers},
    };

    fn membership_row(limited: bool) -> MembershipRow {
        let at = Utc.with_ymd_and_hms(2026, 4, 1, 8, 0, 0).unwrap();
        MembershipRow {
            organization_id: Uuid::from_u128(0x0c),
            user_id: Uuid::from_u128(0x5eed),
            role: if limited { OrgRole::Admin } else { OrgRole::Member },
            token_limit: limited.then_some(9_007_199_254_740_993),
            created_at: at,
            updated_at: at,
        }
    }

    /// A membership that owns its rows, for the test schema.
    struct OwnedMember(MembershipRow, UserSummary);

    impl PlainObject for OwnedMember {
        const TYPE_NAME: &'static str = "Membership";

        fn field(&self, ctx: &ContextSelectionSet<'_>, field: &GqlField) -> Option<Value> {
            let member = MemberInHand {
                membership: &self.0,
                user: Some(&self.1),
            };
            member.field(ctx, field)
        }
    }

    struct Query;

    #[Object]
    impl Query {
        async fn membership(&self, limited: bool) -> Membership {
            Membership(membership_row(limited), SeenBy::Caller)
        }

        async fn plain_membership(&self, limited: bool) -> PlainOnly<OwnedMember, Membership> {
            PlainOnly(OwnedMember(membership_row(limited), user_row(true).into()), PhantomData)
        }
    }

    /// A membership's own fields answered plainly give what its resolvers
    /// give. (`user` goes through the loaders in the executor, so it is
    /// held to User's answers by the test next to User's fields, and to the
    /// row here.)
    #[tokio::test]
    async fn a_memberships_plain_fields_answer_what_its_resolvers_answer() {
        for limited in [true, false] {
            let (executor, plain) = (
                format!("membership(limited: {limited})"),
                format!("plainMembership(limited: {limited})"),
            );
            assert_same_answers(
                Query,
                "Membership",
                &["role", "joinedAt", "tokenLimit"],
                &executor,
                &plain,
            )
            .await;
        }
        let schema = async_graphql::Schema::new(Query, async_graphql::EmptyMutation, async_graphql::EmptySubscription);
        let response = schema
            .execute("{ plainMembership(limited: true) { user { name ... on User { id } } } }")
            .await;
        assert!(response.errors.is_empty(), "{:?}", response.errors);
        assert_eq!(
            response.data.into_json().unwrap(),
            serde_json::json!({ "plainMembership": { "user": {
                "name": "Ada \"Countess\" Lovelace",
                "id": Uuid::from_u128(0x5eed).to_string(),
            } } })
        );
    }
}
