//! Reporting usage, and the staff tools of metering: recordUsage,
//! recordUsageBatch, resetUsage and upsertModel.

use async_graphql::{Context, ID, Object};
use uuid::Uuid;

use super::query::{Model, UsageReceipt, reporter};
use crate::{
    access,
    api::usage::{
        inputs::{ModelInput, RecordUsageInput},
        quota::Quota,
    },
    context::ContextExt,
    error::ApiResult,
};
use tollgate_auth::users::Role;
use tollgate_core::error::AppError;
use tollgate_services::{
    orgs::service::audit_ip,
    usage::{
        catalog,
        record::{self, MAX_BATCH, UsageReport},
        reset,
    },
};

/// Reporting usage, and the staff tools of metering.
#[derive(Default)]
pub struct UsageMutation;

#[Object]
impl UsageMutation {
    /// Records one LLM call. With an API key (USAGE_WRITE) the organization is the key's; with a user's token organizationId is required and the caller must be MEMBER or above. Never refused for a spent budget (ask authorizeUsage before the call).
    async fn record_usage(&self, ctx: &Context<'_>, input: RecordUsageInput) -> ApiResult<UsageReceipt> {
        let input = UsageReport::from(input);
        let reporter = reporter(ctx, input.organization_id.as_deref(), "Mutation.recordUsage").await?;
        let app = ctx.app()?;
        let reports =
            record::check_reports(app, reporter.organization_id, vec![input], app.now(), |error, _| error).await?;
        let (receipts, quota) = record::record(app, reporter, reports).await?;
        let receipt = receipts
            .into_iter()
            .next()
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("recording one input gave no receipt")))?;
        Ok(UsageReceipt::new(receipt, quota))
    }

    /// At most 1,000 inputs of one organization, all or nothing: if any input is refused, nothing is recorded and the error's extensions.index (0-based) names it; more than 1,000 is BAD_USER_INPUT. Repeated requestIds come back with duplicate: true.
    async fn record_usage_batch(
        &self,
        ctx: &Context<'_>,
        inputs: Vec<RecordUsageInput>,
    ) -> ApiResult<Vec<UsageReceipt>> {
        if inputs.len() > MAX_BATCH {
            return Err(AppError::bad_input("inputs", format!("a batch holds at most {MAX_BATCH} inputs")).into());
        }
        let inputs: Vec<UsageReport> = inputs.into_iter().map(UsageReport::from).collect();
        let organization_id = record::batch_organization(ctx.principal()?, &inputs)?;
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        let reporter = reporter(ctx, organization_id.as_deref(), "Mutation.recordUsageBatch").await?;
        let app = ctx.app()?;
        let reports =
            record::check_reports(app, reporter.organization_id, inputs, app.now(), AppError::at_index).await?;
        let (receipts, quota) = record::record(app, reporter, reports).await?;
        Ok(receipts
            .into_iter()
            .map(|receipt| UsageReceipt::new(receipt, quota))
            .collect())
    }

    /// ADMIN: start the current period's counters (organization, keys, members) and thresholds afresh; events stay, counters count from this moment.
    async fn reset_usage(&self, ctx: &Context<'_>, organization_id: ID) -> ApiResult<Quota> {
        let actor = ctx.principal()?.require_user()?;
        let organization_id =
            Uuid::parse_str(organization_id.as_str()).map_err(|_| AppError::not_found("organization"))?;
        access::authorize(ctx, organization_id, "Mutation.resetUsage").await?;
        let ip = audit_ip(ctx.request_meta()?);
        Ok(Quota(reset::reset(ctx.app()?, actor, organization_id, ip).await?))
    }

    /// ADMIN.
    async fn upsert_model(&self, ctx: &Context<'_>, input: ModelInput) -> ApiResult<Model> {
        access::staff_standing(ctx).await?.require(Role::Admin)?;
        let app = ctx.app()?;
        let mut conn = app.db().await?;
        Ok(Model(catalog::upsert(&mut conn, input.into(), app.now()).await?))
    }
}
