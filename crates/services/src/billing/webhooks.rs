//! `POST /webhooks/stripe`: verify, deduplicate, then apply the current
//! state of the subscription the event is about.
//!
//! Events are only a nudge. The payload is read for its id, type and the
//! ids it names; the subscription itself is fetched from Stripe while the
//! organization's row is locked. So delivery order does not matter (an old
//! event applies today's state), and neither does the endpoint's API
//! version (nothing typed is parsed from the payload).

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use hmac::{Hmac, KeyInit, Mac};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use sha2::Sha256;
use uuid::Uuid;

use crate::{
    billing::{
        changes::{self, ChangeCause},
        grace_period,
    },
    plans::{
        stripe_api::{ORGANIZATION_METADATA_KEY, StripeApi},
        subscription,
    },
};
use tollgate_auth::AppState;
use tollgate_core::error::{AppError, AppResult, ErrorCode};
use tollgate_db::schema::stripe_events;

/// How far a signature's timestamp may be from now (Stripe's default).
const TOLERANCE_SECS: i64 = 300;

/// The event types that may change a subscription.
const HANDLED_TYPES: &[&str] = &[
    "checkout.session.completed",
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "invoice.paid",
    "invoice.payment_failed",
];

/// The route handler: 400 for a bad or missing signature or payload
/// (nothing is stored or changed), 200 once the event is applied or known
/// to need nothing, 5xx when applying failed (Stripe retries).
pub async fn receive(State(app): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let app = &app;
    let Some(secret) = app.config().stripe_webhook_secret.as_ref() else {
        return reply(StatusCode::BAD_REQUEST, "webhooks are not configured");
    };
    let Some(signature) = headers.get("stripe-signature").and_then(|v| v.to_str().ok()) else {
        return reply(StatusCode::BAD_REQUEST, "missing Stripe-Signature header");
    };
    if verify_signature(signature, &body, secret.expose_secret(), app.now()).is_err() {
        return reply(StatusCode::BAD_REQUEST, "invalid signature");
    }
    let Some(event) = Envelope::parse(&body) else {
        return reply(StatusCode::BAD_REQUEST, "not a Stripe event");
    };
    match handle(app, &event).await {
        Ok(outcome) => {
            tracing::info!(event = %event.id, kind = %event.kind, ?outcome, "Stripe event");
            reply(StatusCode::OK, outcome.as_str())
        }
        Err(error) => {
            let status = match error.code() {
                ErrorCode::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            tracing::error!(event = %event.id, kind = %event.kind, error = ?error, "Stripe event not applied; Stripe will retry");
            reply(status, "not applied, retry later")
        }
    }
}

fn reply(status: StatusCode, message: &str) -> Response {
    let body = if status.is_success() {
        json!({ "received": true, "result": message })
    } else {
        json!({ "error": message })
    };
    (status, axum::Json(body)).into_response()
}

/// Why a signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    /// No `t=` or no `v1=` in the header, or not parseable.
    Malformed,
    /// The timestamp is more than five minutes away from now.
    Stale,
    /// No `v1` signature matches.
    Mismatch,
}

/// Checks a `Stripe-Signature` header (`t=<unix>,v1=<hex>[,v1=...]`)
/// against the raw body: HMAC-SHA256 over `"<t>.<body>"` keyed with the
/// endpoint secret, compared in constant time, within the tolerance.
pub fn verify_signature(header: &str, payload: &[u8], secret: &str, now: DateTime<Utc>) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => timestamp = value.parse::<i64>().ok(),
            Some(("v1", value)) => candidates.extend(hex::decode(value).ok()),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if candidates.is_empty() {
        return Err(SignatureError::Malformed);
    }
    // A forged extreme timestamp must not overflow: out of range is stale.
    let skew = now.timestamp().checked_sub(timestamp).map(i64::unsigned_abs);
    if skew.is_none_or(|skew| skew > TOLERANCE_SECS.unsigned_abs()) {
        return Err(SignatureError::Stale);
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).map_err(|_| SignatureError::Mismatch)?;
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    if candidates
        .iter()
        .any(|candidate| mac.clone().verify_slice(candidate).is_ok())
    {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// What an event payload says, read without Stripe's types.
#[derive(Debug, Clone)]
struct Envelope {
    id: String,
    kind: String,
    object: Value,
}

impl Envelope {
    fn parse(body: &[u8]) -> Option<Self> {
        let value: Value = serde_json::from_slice(body).ok()?;
        let id = value.get("id")?.as_str()?.to_owned();
        let kind = value.get("type")?.as_str()?.to_owned();
        let object = value.get("data")?.get("object")?.clone();
        (!id.is_empty()).then_some(Self { id, kind, object })
    }

    /// The subscription the event is about.
    fn subscription_id(&self) -> Option<String> {
        if self.kind.starts_with("customer.subscription.") {
            return string_at(&self.object, &["id"]);
        }
        // A checkout session and a (pre-2025) invoice name it directly;
        // newer invoices name it under parent.subscription_details.
        id_of(self.object.get("subscription")).or_else(|| {
            id_of(pointer(
                &self.object,
                &["parent", "subscription_details", "subscription"],
            ))
        })
    }

    /// The customer the event is about.
    fn customer_id(&self) -> Option<String> {
        id_of(self.object.get("customer"))
    }

    /// The organization the payload names (our metadata, or the checkout's
    /// client_reference_id).
    fn organization_hint(&self) -> Option<Uuid> {
        [
            pointer(&self.object, &["metadata", ORGANIZATION_METADATA_KEY]),
            self.object.get("client_reference_id"),
            pointer(
                &self.object,
                &["parent", "subscription_details", "metadata", ORGANIZATION_METADATA_KEY],
            ),
            pointer(
                &self.object,
                &["subscription_details", "metadata", ORGANIZATION_METADATA_KEY],
            ),
        ]
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .find_map(|id| Uuid::parse_str(id).ok())
    }
}

fn pointer<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |value, key| value.get(key))
}

fn string_at(value: &Value, path: &[&str]) -> Option<String> {
    pointer(value, path).and_then(Value::as_str).map(str::to_owned)
}

/// An id field that may be a plain id or an expanded object.
fn id_of(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(id) if !id.is_empty() => Some(id.clone()),
        Value::Object(object) => object.get("id").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

/// What became of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// The subscription's current state was applied.
    Applied,
    /// The id was seen before; nothing done.
    Duplicate,
    /// Nothing to do: another type, no subscription, or an organization we
    /// do not know.
    Ignored,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Duplicate => "duplicate",
            Self::Ignored => "ignored",
        }
    }
}

async fn handle(app: &AppState, event: &Envelope) -> AppResult<Outcome> {
    let mut conn = app.db().await?;
    if already_received(&mut conn, &event.id).await? {
        return Ok(Outcome::Duplicate);
    }
    let now = app.now();
    let target = match (HANDLED_TYPES.contains(&event.kind.as_str()), event.subscription_id()) {
        (true, Some(subscription_id)) => resolve_organization(&mut conn, event, &subscription_id)
            .await?
            .map(|organization| (organization, subscription_id)),
        _ => None,
    };
    let Some((organization_id, subscription_id)) = target else {
        let stored = store_event(&mut conn, event, None, now).await?;
        return Ok(if stored { Outcome::Ignored } else { Outcome::Duplicate });
    };
    let stripe = StripeApi::require(app.config())?;
    let grace = grace_period(app.config());
    conn.transaction::<_, AppError, _>(async |conn| {
        // Storing the id first: a concurrent delivery of the same event
        // waits on it and then finds it taken.
        if !store_event(conn, event, Some(organization_id), now).await? {
            return Ok(Outcome::Duplicate);
        }
        let Some(row) = subscription::lock(conn, organization_id).await? else {
            return Ok(Outcome::Ignored);
        };
        // Fetched under the lock, so two events racing apply their
        // fetches in order and the later state wins.
        let Some(remote) = stripe.retrieve_subscription(&subscription_id).await? else {
            tracing::warn!(subscription = %subscription_id, "Stripe does not know this subscription; ignored");
            return Ok(Outcome::Ignored);
        };
        if row
            .stripe_customer_id
            .as_ref()
            .is_some_and(|customer| *customer != remote.customer_id)
        {
            tracing::warn!(
                organization = %organization_id, subscription = %subscription_id,
                "the subscription belongs to another customer than the organization's; ignored"
            );
            return Ok(Outcome::Ignored);
        }
        changes::apply_remote(conn, &row, &remote, grace, &ChangeCause::stripe(), now).await?;
        Ok(Outcome::Applied)
    })
    .await
}

/// The organization an event concerns: by our customer, by the
/// subscription we hold, or by the id our checkout put into the payload.
async fn resolve_organization(
    conn: &mut AsyncPgConnection,
    event: &Envelope,
    subscription_id: &str,
) -> AppResult<Option<Uuid>> {
    if let Some(customer_id) = event.customer_id()
        && let Some(organization) = subscription::organization_of_customer(conn, &customer_id).await?
    {
        return Ok(Some(organization));
    }
    if let Some(organization) = subscription::organization_of_subscription(conn, subscription_id).await? {
        return Ok(Some(organization));
    }
    // Only an organization that still exists: the payload may name one
    // deleted since.
    let Some(hint) = event.organization_hint() else {
        return Ok(None);
    };
    let known = subscription::find_by_organizations(conn, &[hint]).await?;
    Ok((!known.is_empty()).then_some(hint))
}

async fn already_received(conn: &mut AsyncPgConnection, event_id: &str) -> AppResult<bool> {
    let found = stripe_events::table
        .find(event_id)
        .select(stripe_events::id)
        .first::<String>(conn)
        .await
        .optional()?;
    Ok(found.is_some())
}

/// Records the event id; false when it was already there.
async fn store_event(
    conn: &mut AsyncPgConnection,
    event: &Envelope,
    organization_id: Option<Uuid>,
    now: DateTime<Utc>,
) -> AppResult<bool> {
    let inserted = diesel::insert_into(stripe_events::table)
        .values((
            stripe_events::id.eq(&event.id),
            stripe_events::event_type.eq(&event.kind),
            stripe_events::organization_id.eq(organization_id),
            stripe_events::received_at.eq(now),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(inserted == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &str, timestamp: i64, payload: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{timestamp}.").as_bytes());
        mac.update(payload);
        format!("t={timestamp},v1={}", hex::encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn signatures_are_checked_like_stripe_does() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let body = br#"{"id":"evt_1"}"#;
        let good = sign("whsec_test", now.timestamp(), body);
        assert_eq!(verify_signature(&good, body, "whsec_test", now), Ok(()));
        // Several v1 values (during secret rotation): any may match.
        let rotated = format!("t={},v1=00ff,{}", now.timestamp(), good.split(',').nth(1).unwrap());
        assert_eq!(verify_signature(&rotated, body, "whsec_test", now), Ok(()));
        assert_eq!(
            verify_signature(&good, br#"{"id":"evt_2"}"#, "whsec_test", now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(&good, body, "whsec_other", now),
            Err(SignatureError::Mismatch)
        );
        let old = sign("whsec_test", now.timestamp() - 301, body);
        assert_eq!(
            verify_signature(&old, body, "whsec_test", now),
            Err(SignatureError::Stale)
        );
        let recent = sign("whsec_test", now.timestamp() - 299, body);
        assert_eq!(verify_signature(&recent, body, "whsec_test", now), Ok(()));
        for malformed in ["", "v1=abcd", "t=abc,v1=00", "t=1800000000"] {
            assert_eq!(
                verify_signature(malformed, body, "whsec_test", now),
                Err(SignatureError::Malformed),
                "{malformed}"
            );
        }
    }

    #[test]
    fn the_envelope_names_the_subscription_in_every_handled_shape() {
        let parse = |value: Value| Envelope::parse(value.to_string().as_bytes()).unwrap();
        let updated = parse(json!({"id": "evt_1", "type": "customer.subscription.updated",
            "data": {"object": {"id": "sub_1", "customer": "cus_1", "metadata": {"organization_id": Uuid::nil()}}}}));
        assert_eq!(updated.subscription_id().as_deref(), Some("sub_1"));
        assert_eq!(updated.customer_id().as_deref(), Some("cus_1"));
        assert_eq!(updated.organization_hint(), Some(Uuid::nil()));
        let session = parse(json!({"id": "evt_2", "type": "checkout.session.completed",
            "data": {"object": {"id": "cs_1", "subscription": "sub_2", "client_reference_id": Uuid::nil()}}}));
        assert_eq!(session.subscription_id().as_deref(), Some("sub_2"));
        assert_eq!(session.organization_hint(), Some(Uuid::nil()));
        let invoice = parse(json!({"id": "evt_3", "type": "invoice.paid",
            "data": {"object": {"id": "in_1", "customer": {"id": "cus_3"},
                "parent": {"subscription_details": {"subscription": "sub_3"}}}}}));
        assert_eq!(invoice.subscription_id().as_deref(), Some("sub_3"));
        assert_eq!(invoice.customer_id().as_deref(), Some("cus_3"));
        assert!(Envelope::parse(b"{\"type\": \"x\"}").is_none());
    }
}
