//! The Organization, Membership and Invitation types and the organization
//! query. Every field goes through the rules of [`tollgate_services::orgs::access`].

use async_graphql::{Context, ID, Object};
use uuid::Uuid;

use crate::{
    access,
    api::{accounts::query::User, admin::AuditEntry, connection::Connection, enums as gql, usage::query::UsageEvent},
    context::ContextExt,
    error::ApiResult,
    scalars::{BigInt, Timestamp},
};
use tollgate_auth::roles::OrgRole;
use tollgate_core::error::AppError;
use tollgate_services::orgs::{
    access::{Access, KeyAccess},
    invitation_rows::InvitationRow,
    model as orgs,
    model::{MembershipRow, OrganizationRow},
    slug::well_formed,
};

/// A tenant: people with roles, keys, usage and a plan.
pub struct Organization {
    row: OrganizationRow,
    access: Access,
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
        Ok(row.map(|row| Self { row, access }))
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
        Self { row, access }
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
    async fn members(&self, ctx: &Context<'_>) -> ApiResult<Vec<Membership>> {
        let members = ctx
            .loaders()?
            .memberships_by_organization
            .load_one(self.row.id)
            .await?
            .unwrap_or_default();
        Ok(members.into_iter().map(|m| Membership(m, SeenBy::Caller)).collect())
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
