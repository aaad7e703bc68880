//! The organization mutations. Each resolver checks the caller against the
//! rules table first (NOT_FOUND for outsiders, FORBIDDEN for members
//! without the role), then hands over to the service, which re-checks
//! under the organization's lock.

use async_graphql::{Context, ID, InputObject, MaybeUndefined, Object};
use uuid::Uuid;

use crate::{
    access::authorize,
    api::{
        enums as gql,
        orgs::query::{Invitation, Membership, Organization, SeenBy},
    },
    context::ContextExt,
    error::ApiResult,
    scalars::BigInt,
};
use tollgate_core::error::{AppError, ErrorCode};
use tollgate_services::orgs::{
    invitations,
    membership::{self, MemberUpdate},
    service::{self, OrganizationUpdate},
};

/// A new team organization.
#[derive(InputObject)]
pub struct CreateOrganizationInput {
    /// Display name, 1 to 100 printable characters.
    pub name: String,
    /// 3 to 40 of a-z, 0-9 and '-'; made from the name when absent.
    pub slug: Option<String>,
}

/// Changes to an organization; an omitted field keeps its value.
#[derive(InputObject)]
pub struct UpdateOrganizationInput {
    /// Display name, 1 to 100 printable characters.
    pub name: Option<String>,
    /// 3 to 40 of a-z, 0-9 and '-'; a personal organization keeps its own.
    pub slug: Option<String>,
    /// Replaces all settings: a JSON object of at most 16 KiB.
    pub settings: Option<serde_json::Value>,
}

/// An organization id argument; one that is not an id of ours is as
/// invisible as any other organization.
fn organization_id(id: &ID) -> ApiResult<Uuid> {
    Ok(Uuid::parse_str(id.as_str()).map_err(|_| AppError::not_found("organization"))?)
}

/// A user id naming a member; malformed ones match no member.
fn member_id(id: &ID) -> ApiResult<Uuid> {
    Ok(Uuid::parse_str(id.as_str()).map_err(|_| AppError::not_found("member"))?)
}

/// Creating and managing organizations, their members and invitations.
#[derive(Default)]
pub struct OrgsMutation;

#[Object]
impl OrgsMutation {
    /// Creates a team organization owned by the caller, on the free plan. Without a slug, one is made from the name. FORBIDDEN until the caller has verified their email.
    async fn create_organization(&self, ctx: &Context<'_>, input: CreateOrganizationInput) -> ApiResult<Organization> {
        let user_id = ctx.principal()?.require_user()?;
        let row = service::create(
            ctx.app()?,
            user_id,
            &input.name,
            input.slug.as_deref(),
            ctx.request_meta()?,
        )
        .await?;
        ctx.loaders()?.forget_memberships();
        Organization::require(ctx, row.id).await
    }

    /// Changes the name, slug or settings; OWNER/ADMIN.
    async fn update_organization(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateOrganizationInput,
    ) -> ApiResult<Organization> {
        let user_id = ctx.principal()?.require_user()?;
        let id = organization_id(&id)?;
        authorize(ctx, id, "Mutation.updateOrganization").await?;
        let update = OrganizationUpdate {
            name: input.name,
            slug: input.slug,
            settings: input.settings,
        };
        service::update(ctx.app()?, user_id, id, update, ctx.request_meta()?).await?;
        ctx.loaders()?.forget_memberships();
        Organization::require(ctx, id).await
    }

    /// Deletes the organization with its members, invitations and keys; OWNER only, never a personal organization.
    async fn delete_organization(&self, ctx: &Context<'_>, id: ID) -> ApiResult<bool> {
        let user_id = ctx.principal()?.require_user()?;
        let id = organization_id(&id)?;
        authorize(ctx, id, "Mutation.deleteOrganization").await?;
        service::delete(ctx.app()?, user_id, id, ctx.request_meta()?).await?;
        Ok(true)
    }

    /// Emails a single-use link, valid for 7 days, to join with `role`; OWNER/ADMIN. Inviting an address again replaces its pending invitation.
    async fn invite_member(
        &self,
        ctx: &Context<'_>,
        organization_id: ID,
        email: String,
        #[graphql(default_with = "gql::OrgRole::Member")] role: gql::OrgRole,
    ) -> ApiResult<Invitation> {
        let user_id = ctx.principal()?.require_user()?;
        let id = self::organization_id(&organization_id)?;
        authorize(ctx, id, "Mutation.inviteMember").await?;
        let row = invitations::invite(ctx.app()?, user_id, id, &email, role.into(), ctx.request_meta()?).await?;
        Ok(Invitation(row))
    }

    /// Makes a pending invitation's link stop working; OWNER/ADMIN of its organization.
    async fn revoke_invitation(&self, ctx: &Context<'_>, id: ID) -> ApiResult<bool> {
        let user_id = ctx.principal()?.require_user()?;
        let not_found = || AppError::not_found("invitation");
        let id = Uuid::parse_str(id.as_str()).map_err(|_| not_found())?;
        let app = ctx.app()?;
        let invitation = invitations::find(&mut *app.db().await?, id)
            .await?
            .ok_or_else(not_found)?;
        // Another organization's invitation is as unknown as a made-up id.
        authorize(ctx, invitation.organization_id, "Mutation.revokeInvitation")
            .await
            .map_err(|e| {
                if e.code() == ErrorCode::NotFound {
                    not_found()
                } else {
                    e
                }
            })?;
        invitations::revoke(app, user_id, &invitation, ctx.request_meta()?).await?;
        Ok(true)
    }

    /// Joins with the invited role, using the token from the invitation email; the caller must be signed in with the invited address (which this verifies).
    async fn accept_invitation(&self, ctx: &Context<'_>, token: String) -> ApiResult<Membership> {
        let user_id = ctx.principal()?.require_user()?;
        let row = invitations::accept(ctx.app()?, user_id, &token, ctx.request_meta()?).await?;
        ctx.loaders()?.forget_memberships();
        Ok(Membership(row, SeenBy::Caller))
    }

    /// Changes a member's role or monthly token budget (null clears it, absent keeps it); OWNER/ADMIN. Nobody becomes OWNER here: use transferOwnership.
    async fn update_member(
        &self,
        ctx: &Context<'_>,
        organization_id: ID,
        user_id: ID,
        role: Option<gql::OrgRole>,
        token_limit: MaybeUndefined<BigInt>,
    ) -> ApiResult<Membership> {
        let actor = ctx.principal()?.require_user()?;
        let id = self::organization_id(&organization_id)?;
        authorize(ctx, id, "Mutation.updateMember").await?;
        let update = MemberUpdate {
            role: role.map(Into::into),
            token_limit: match token_limit {
                MaybeUndefined::Undefined => None,
                MaybeUndefined::Null => Some(None),
                MaybeUndefined::Value(limit) => Some(Some(limit.0)),
            },
        };
        let row = membership::update(ctx.app()?, actor, id, member_id(&user_id)?, update, ctx.request_meta()?).await?;
        ctx.loaders()?.forget_memberships();
        Ok(Membership(row, SeenBy::Caller))
    }

    /// Removes anyone but the OWNER; OWNER/ADMIN.
    async fn remove_member(&self, ctx: &Context<'_>, organization_id: ID, user_id: ID) -> ApiResult<bool> {
        let actor = ctx.principal()?.require_user()?;
        let id = self::organization_id(&organization_id)?;
        authorize(ctx, id, "Mutation.removeMember").await?;
        membership::remove(ctx.app()?, actor, id, member_id(&user_id)?, ctx.request_meta()?).await?;
        Ok(true)
    }

    /// Leaves the organization; not the OWNER, never a personal organization.
    async fn leave_organization(&self, ctx: &Context<'_>, organization_id: ID) -> ApiResult<bool> {
        let actor = ctx.principal()?.require_user()?;
        let id = self::organization_id(&organization_id)?;
        authorize(ctx, id, "Mutation.leaveOrganization").await?;
        membership::leave(ctx.app()?, actor, id, ctx.request_meta()?).await?;
        Ok(true)
    }

    /// The new owner must be a member; the old owner becomes ADMIN. The OWNER cannot leave without transferring first.
    async fn transfer_ownership(&self, ctx: &Context<'_>, organization_id: ID, user_id: ID) -> ApiResult<Organization> {
        let actor = ctx.principal()?.require_user()?;
        let id = self::organization_id(&organization_id)?;
        authorize(ctx, id, "Mutation.transferOwnership").await?;
        let new_owner = Uuid::parse_str(user_id.as_str())
            .map_err(|_| AppError::bad_input("userId", "the new owner must be a member of the organization"))?;
        membership::transfer(ctx.app()?, actor, id, new_owner, ctx.request_meta()?).await?;
        ctx.loaders()?.forget_memberships();
        Organization::require(ctx, id).await
    }
}
