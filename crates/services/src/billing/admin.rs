//! Staff tools: assigning a plan without Stripe, and editing plans.

use chrono::{DateTime, Utc};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::AsyncConnection;
use uuid::Uuid;

use crate::{
    billing::changes::{self, ChangeCause},
    plans::{
        model::{self, BillingInterval, PlanFields, PlanRow},
        subscription::{self, SubscriptionRow},
    },
};
use tollgate_auth::AppState;
use tollgate_core::error::{AppError, AppResult};

/// Puts the organization on the plan with `plan_key`, private plans
/// included, without Stripe. Refused (CONFLICT) while the organization
/// pays through Stripe: the next event from Stripe would undo the change
/// while the customer went on paying for the old plan.
pub async fn set_organization_plan(
    app: &AppState,
    organization_id: Uuid,
    plan_key: &str,
    cause: &ChangeCause,
) -> AppResult<SubscriptionRow> {
    let now = app.now();
    let mut conn = app.db().await?;
    conn.transaction::<_, AppError, _>(async |conn| {
        let row = subscription::lock(conn, organization_id)
            .await?
            .ok_or_else(|| AppError::not_found("organization"))?;
        let plan = model::find_by_key(conn, plan_key.trim())
            .await?
            .ok_or_else(|| AppError::bad_input("planKey", "no such plan"))?;
        if row.stripe_subscription_id.is_some() {
            return Err(AppError::conflict(
                "the organization pays through Stripe; cancel that subscription before assigning a plan",
            ));
        }
        changes::assign_plan(conn, &row, &plan, cause, now).await
    })
    .await
}

/// A plan as `upsertPlan` receives it, before validation.
#[derive(Debug, Clone)]
pub struct PlanDraft {
    /// Stable identifier.
    pub key: String,
    /// Display name.
    pub name: String,
    /// One-line pitch.
    pub description: Option<String>,
    /// Price per interval in the currency's smallest unit.
    pub price_cents: i32,
    /// ISO 4217 code.
    pub currency: String,
    /// How often the price is charged.
    pub interval: BillingInterval,
    /// Tokens per quota period; None = unlimited.
    pub monthly_token_limit: Option<i64>,
    /// Usage events per UTC day; None = unlimited.
    pub daily_request_limit: Option<i32>,
    /// authorizeUsage calls per minute per key; None = unlimited.
    pub requests_per_minute: Option<i32>,
    /// Members plus pending invitations; None = unlimited.
    pub max_members: Option<i32>,
    /// Active API keys; None = unlimited.
    pub max_api_keys: Option<i32>,
    /// Selling points.
    pub features: Vec<String>,
    /// Listed for everyone.
    pub public: bool,
    /// The Stripe price it is sold at.
    pub stripe_price_id: Option<String>,
}

/// Creates or replaces the plan with the draft's key. A Stripe price
/// another plan already uses is CONFLICT.
pub async fn upsert_plan(app: &AppState, draft: PlanDraft) -> AppResult<PlanRow> {
    let fields = validate(draft)?;
    let now: DateTime<Utc> = app.now();
    let mut conn = app.db().await?;
    match model::upsert(&mut conn, &fields, now).await {
        Ok(plan) => Ok(plan),
        Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => {
            Err(AppError::conflict("another plan is already sold at this Stripe price"))
        }
        Err(e) => Err(e.into()),
    }
}

/// Longest plan description, in characters.
const MAX_DESCRIPTION_CHARS: usize = 500;
/// Most selling points a plan lists.
const MAX_FEATURES: usize = 20;
/// Longest selling point, in characters.
const MAX_FEATURE_CHARS: usize = 100;

fn validate(draft: PlanDraft) -> AppResult<PlanFields> {
    let key = draft.key.trim().to_owned();
    if !valid_key(&key) {
        return Err(AppError::bad_input(
            "key",
            "1 to 40 of a-z, 0-9, '-' and '_', starting with a letter or digit",
        ));
    }
    let name = draft.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(AppError::bad_input("name", "1 to 100 characters"));
    }
    if draft.price_cents < 0 {
        return Err(AppError::bad_input("priceCents", "must not be negative"));
    }
    let currency = draft.currency.trim().to_ascii_lowercase();
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_lowercase()) {
        return Err(AppError::bad_input("currency", "a three-letter ISO 4217 code"));
    }
    not_negative("monthlyTokenLimit", draft.monthly_token_limit)?;
    not_negative("dailyRequestLimit", draft.daily_request_limit.map(i64::from))?;
    not_negative("requestsPerMinute", draft.requests_per_minute.map(i64::from))?;
    not_negative("maxApiKeys", draft.max_api_keys.map(i64::from))?;
    // A plan without room for its owner would lock every organization on it.
    if draft.max_members.is_some_and(|max| max < 1) {
        return Err(AppError::bad_input("maxMembers", "must be at least 1"));
    }
    let features: Vec<String> = draft.features.iter().map(|f| f.trim().to_owned()).collect();
    if features.iter().any(String::is_empty) {
        return Err(AppError::bad_input("features", "features must not be empty"));
    }
    if features.len() > MAX_FEATURES || features.iter().any(|f| f.chars().count() > MAX_FEATURE_CHARS) {
        return Err(AppError::bad_input(
            "features",
            format!("at most {MAX_FEATURES} features of at most {MAX_FEATURE_CHARS} characters"),
        ));
    }
    let description = draft.description.map(|d| d.trim().to_owned()).filter(|d| !d.is_empty());
    if description
        .as_deref()
        .is_some_and(|d| d.chars().count() > MAX_DESCRIPTION_CHARS)
    {
        return Err(AppError::bad_input(
            "description",
            format!("the description must be at most {MAX_DESCRIPTION_CHARS} characters"),
        ));
    }
    let stripe_price_id = draft
        .stripe_price_id
        .map(|price| price.trim().to_owned())
        .filter(|price| !price.is_empty());
    if stripe_price_id
        .as_deref()
        .is_some_and(|price| price.len() > 255 || price.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        return Err(AppError::bad_input("stripePriceId", "not a Stripe price id"));
    }
    Ok(PlanFields {
        key,
        name,
        description,
        price_cents: draft.price_cents,
        currency,
        billing_interval: draft.interval,
        monthly_token_limit: draft.monthly_token_limit,
        daily_request_limit: draft.daily_request_limit,
        requests_per_minute: draft.requests_per_minute,
        max_members: draft.max_members,
        max_api_keys: draft.max_api_keys,
        features: features.into_iter().map(Some).collect(),
        public: draft.public,
        stripe_price_id,
    })
}

/// The plans table's own rule for keys.
fn valid_key(key: &str) -> bool {
    let bytes = key.as_bytes();
    let allowed = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    matches!(bytes.first(), Some(first) if allowed(first))
        && bytes.len() <= 40
        && bytes.iter().all(|b| allowed(b) || *b == b'-' || *b == b'_')
}

fn not_negative(field: &'static str, value: Option<i64>) -> AppResult<()> {
    match value {
        Some(v) if v < 0 => Err(AppError::bad_input(field, "must not be negative")),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft() -> PlanDraft {
        PlanDraft {
            key: "team".to_owned(),
            name: "Team".to_owned(),
            description: Some("  ".to_owned()),
            price_cents: 900,
            currency: "EUR".to_owned(),
            interval: BillingInterval::Month,
            monthly_token_limit: Some(1),
            daily_request_limit: None,
            requests_per_minute: Some(0),
            max_members: Some(1),
            max_api_keys: Some(0),
            features: vec![" Fast ".to_owned()],
            public: true,
            stripe_price_id: Some(" price_123 ".to_owned()),
        }
    }

    fn field_of(draft: PlanDraft) -> Option<String> {
        match validate(draft) {
            Ok(_) => None,
            Err(AppError::Client { field, .. }) => field.map(|f| f.into_owned()),
            Err(_) => Some("?".to_owned()),
        }
    }

    #[test]
    fn a_valid_draft_is_normalized() {
        let fields = validate(draft()).unwrap();
        assert_eq!(fields.currency, "eur");
        assert_eq!(fields.description, None);
        assert_eq!(fields.features, vec![Some("Fast".to_owned())]);
        assert_eq!(fields.stripe_price_id.as_deref(), Some("price_123"));
    }

    type Change = Box<dyn Fn(&mut PlanDraft)>;

    #[test]
    fn each_bad_value_names_its_field() {
        let cases: Vec<(&str, Change)> = vec![
            ("key", Box::new(|d| d.key = "Team".to_owned())),
            ("key", Box::new(|d| d.key = "-team".to_owned())),
            ("key", Box::new(|d| d.key = "t".repeat(41))),
            ("name", Box::new(|d| d.name = " ".to_owned())),
            ("priceCents", Box::new(|d| d.price_cents = -1)),
            ("currency", Box::new(|d| d.currency = "euro".to_owned())),
            ("monthlyTokenLimit", Box::new(|d| d.monthly_token_limit = Some(-1))),
            ("dailyRequestLimit", Box::new(|d| d.daily_request_limit = Some(-1))),
            ("requestsPerMinute", Box::new(|d| d.requests_per_minute = Some(-5))),
            ("maxApiKeys", Box::new(|d| d.max_api_keys = Some(-1))),
            ("maxMembers", Box::new(|d| d.max_members = Some(0))),
            ("features", Box::new(|d| d.features = vec!["".to_owned()])),
            (
                "stripePriceId",
                Box::new(|d| d.stripe_price_id = Some("price 1".to_owned())),
            ),
        ];
        for (field, change) in cases {
            let mut d = draft();
            change(&mut d);
            assert_eq!(field_of(d).as_deref(), Some(field));
        }
    }
}
