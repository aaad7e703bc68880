//! A fake Stripe on 127.0.0.1:0 that speaks the form-encoded API for the
//! calls billing makes (customers, Checkout Sessions, Billing Portal
//! sessions, subscriptions: retrieve, update, cancel), answers with objects
//! shaped like the API version async-stripe speaks, and records every
//! request. Plus events shaped like Stripe's and signed as Stripe signs
//! them.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{
    Router,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
    routing::{any, post},
};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::{net::TcpListener, task::JoinHandle};

/// The secret key test apps are configured with.
pub const SECRET_KEY: &str = "sk_test_tollgate_fake";
/// The webhook signing secret test apps are configured with.
pub const WEBHOOK_SECRET: &str = "whsec_tollgate_test_secret";
/// The price the seeded `pro` plan is given in billing tests.
pub const PRO_PRICE: &str = "price_pro_monthly";
/// The price the seeded `enterprise` plan is given in billing tests.
pub const ENTERPRISE_PRICE: &str = "price_enterprise_monthly";
/// Length of a fake billing period.
pub const PERIOD_SECS: i64 = 30 * 86_400;

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// HTTP method.
    pub method: Method,
    /// Path, e.g. `/v1/customers`.
    pub path: String,
    /// Form fields (body, or the query string of a GET), in order.
    pub form: Vec<(String, String)>,
    /// The Authorization header.
    pub authorization: Option<String>,
    /// The Idempotency-Key header.
    pub idempotency_key: Option<String>,
}

impl RecordedRequest {
    /// The value of form field `name` (e.g. `subscription_data[metadata][organization_id]`).
    pub fn field(&self, name: &str) -> Option<&str> {
        self.form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// A subscription as the fake keeps it.
#[derive(Debug, Clone)]
pub struct FakeSubscription {
    /// `sub_...`.
    pub id: String,
    /// `cus_...`.
    pub customer: String,
    /// Stripe's status name (`active`, `past_due`, ...).
    pub status: String,
    /// The price of its one item.
    pub price: String,
    /// Current period start (unix seconds).
    pub period_start: i64,
    /// Current period end (unix seconds).
    pub period_end: i64,
    /// Ends at the period's end.
    pub cancel_at_period_end: bool,
    /// Its metadata.
    pub metadata: HashMap<String, String>,
    /// When it was created (unix seconds).
    pub created: i64,
}

#[derive(Debug, Clone)]
struct FakeSession {
    customer: String,
    price: String,
    metadata: HashMap<String, String>,
}

#[derive(Default)]
struct Ledger {
    requests: Vec<RecordedRequest>,
    customers: HashMap<String, String>,
    customers_by_idempotency_key: HashMap<String, String>,
    sessions: HashMap<String, FakeSession>,
    subscriptions: HashMap<String, FakeSubscription>,
    next_id: u64,
}

impl Ledger {
    fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}_test{:06}", self.next_id)
    }
}

/// A running fake; stops when dropped.
pub struct FakeStripe {
    addr: SocketAddr,
    ledger: Arc<Mutex<Ledger>>,
    server: JoinHandle<()>,
}

impl FakeStripe {
    /// Starts the fake on a free port.
    pub async fn start() -> Self {
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let router = Router::new()
            .route("/v1/customers", post(create_customer))
            .route("/v1/checkout/sessions", post(create_checkout_session))
            .route("/v1/billing_portal/sessions", post(create_portal_session))
            .route("/v1/subscriptions/{id}", any(subscription))
            .fallback(unknown)
            .with_state(ledger.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding the fake Stripe");
        let addr = listener.local_addr().expect("fake Stripe address");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self { addr, ledger, server }
    }

    /// The base URL to put in STRIPE_API_BASE.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// The app variables that point billing at this fake.
    pub fn vars(&self) -> Vec<(String, String)> {
        vec![
            ("STRIPE_SECRET_KEY".to_owned(), SECRET_KEY.to_owned()),
            ("STRIPE_WEBHOOK_SECRET".to_owned(), WEBHOOK_SECRET.to_owned()),
            ("STRIPE_API_BASE".to_owned(), self.url()),
        ]
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.ledger.lock().unwrap().requests.clone()
    }

    /// The requests with this method and path.
    pub fn requests_to(&self, method: Method, path: &str) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == method && r.path == path)
            .collect()
    }

    /// How many customers exist.
    pub fn customer_count(&self) -> usize {
        self.ledger.lock().unwrap().customers.len()
    }

    /// What a buyer finishing the Checkout Session does: Stripe creates
    /// the subscription (active, one period from `now`) with the
    /// session's price, customer and subscription metadata. Returns its id.
    pub fn complete_checkout(&self, session_id: &str, now: i64) -> String {
        let mut ledger = self.ledger.lock().unwrap();
        let session = ledger
            .sessions
            .get(session_id)
            .cloned()
            .expect("a session the fake created");
        let id = ledger.id("sub");
        let subscription = FakeSubscription {
            id: id.clone(),
            customer: session.customer,
            status: "active".to_owned(),
            price: session.price,
            period_start: now,
            period_end: now + PERIOD_SECS,
            cancel_at_period_end: false,
            metadata: session.metadata,
            created: now,
        };
        ledger.subscriptions.insert(id.clone(), subscription);
        id
    }

    /// The subscription as Stripe has it now.
    pub fn subscription(&self, id: &str) -> FakeSubscription {
        self.ledger
            .lock()
            .unwrap()
            .subscriptions
            .get(id)
            .cloned()
            .expect("known subscription")
    }

    /// Changes a subscription as Stripe would on its own (a failed
    /// payment, a plan change in the portal, a renewal).
    pub fn update_subscription(&self, id: &str, change: impl FnOnce(&mut FakeSubscription)) {
        let mut ledger = self.ledger.lock().unwrap();
        change(ledger.subscriptions.get_mut(id).expect("known subscription"));
    }

    /// A subscription event whose payload is the subscription as it is now.
    pub fn subscription_event(&self, event_id: &str, kind: &str, subscription_id: &str) -> String {
        let object = subscription_json(&self.subscription(subscription_id));
        event(event_id, kind, object)
    }

    /// `checkout.session.completed` for a completed session.
    pub fn checkout_completed_event(&self, event_id: &str, session_id: &str, subscription_id: &str) -> String {
        let ledger = self.ledger.lock().unwrap();
        let session = ledger.sessions.get(session_id).expect("known session");
        let object = json!({
            "id": session_id,
            "object": "checkout.session",
            "mode": "subscription",
            "status": "complete",
            "payment_status": "paid",
            "customer": session.customer,
            "client_reference_id": session.metadata.get("organization_id"),
            "subscription": subscription_id,
            "metadata": session.metadata,
        });
        event(event_id, "checkout.session.completed", object)
    }

    /// `invoice.paid` / `invoice.payment_failed`, shaped like the current
    /// API (the subscription under parent.subscription_details).
    pub fn invoice_event(&self, event_id: &str, kind: &str, subscription_id: &str) -> String {
        let subscription = self.subscription(subscription_id);
        let object = json!({
            "id": format!("in_{event_id}"),
            "object": "invoice",
            "customer": subscription.customer,
            "status": if kind == "invoice.paid" { "paid" } else { "open" },
            "parent": {
                "type": "subscription_details",
                "subscription_details": { "subscription": subscription.id, "metadata": subscription.metadata },
            },
        });
        event(event_id, kind, object)
    }
}

impl Drop for FakeStripe {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// An event envelope as Stripe sends it.
pub fn event(event_id: &str, kind: &str, object: Value) -> String {
    json!({
        "id": event_id,
        "object": "event",
        "api_version": "2026-09-30.clover",
        "created": 1_800_000_000,
        "data": { "object": object },
        "livemode": false,
        "pending_webhooks": 1,
        "request": { "id": null, "idempotency_key": null },
        "type": kind,
    })
    .to_string()
}

/// The `Stripe-Signature` header Stripe sends with `payload` at `timestamp`:
/// `t=<ts>,v1=<hex hmac-sha256(secret, "<ts>.<payload>")>`.
pub fn sign(secret: &str, payload: &str, timestamp: i64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("{timestamp}.{payload}").as_bytes());
    format!("t={timestamp},v1={}", hex::encode(mac.finalize().into_bytes()))
}

type Shared = State<Arc<Mutex<Ledger>>>;

fn record(ledger: &mut Ledger, method: Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> RecordedRequest {
    let raw = if method == Method::GET {
        uri.query().unwrap_or_default().as_bytes().to_vec()
    } else {
        body.to_vec()
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let request = RecordedRequest {
        method,
        path: uri.path().to_owned(),
        form: url::form_urlencoded::parse(&raw).into_owned().collect(),
        authorization: header("authorization"),
        idempotency_key: header("idempotency-key"),
    };
    ledger.requests.push(request.clone());
    request
}

fn metadata_of(request: &RecordedRequest, prefix: &str) -> HashMap<String, String> {
    let start = format!("{prefix}[");
    request
        .form
        .iter()
        .filter_map(|(k, v)| {
            let key = k.strip_prefix(&start)?.strip_suffix(']')?;
            Some((key.to_owned(), v.clone()))
        })
        .collect()
}

fn stripe_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({ "error": { "type": "invalid_request_error", "code": code, "message": message } });
    (status, axum::Json(body)).into_response()
}

async fn create_customer(State(ledger): Shared, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let mut ledger = ledger.lock().unwrap();
    let request = record(&mut ledger, method, &uri, &headers, &body);
    // Like Stripe: a repeated idempotency key gets the first answer.
    let existing = request
        .idempotency_key
        .as_ref()
        .and_then(|key| ledger.customers_by_idempotency_key.get(key).cloned());
    let id = match existing {
        Some(id) => id,
        None => {
            let id = ledger.id("cus");
            ledger
                .customers
                .insert(id.clone(), request.field("name").unwrap_or_default().to_owned());
            if let Some(key) = &request.idempotency_key {
                ledger.customers_by_idempotency_key.insert(key.clone(), id.clone());
            }
            id
        }
    };
    axum::Json(json!({
        "id": id,
        "object": "customer",
        "created": 1_800_000_000,
        "livemode": false,
        "name": request.field("name"),
        "email": request.field("email"),
        "metadata": metadata_of(&request, "metadata"),
    }))
    .into_response()
}

async fn create_checkout_session(
    State(ledger): Shared,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut ledger = ledger.lock().unwrap();
    let request = record(&mut ledger, method, &uri, &headers, &body);
    let (Some(customer), Some(price)) = (request.field("customer"), request.field("line_items[0][price]")) else {
        return stripe_error(
            StatusCode::BAD_REQUEST,
            "parameter_missing",
            "customer and a price are required",
        );
    };
    if !ledger.customers.contains_key(customer) {
        return stripe_error(StatusCode::BAD_REQUEST, "resource_missing", "No such customer");
    }
    let id = ledger.id("cs");
    let session = FakeSession {
        customer: customer.to_owned(),
        price: price.to_owned(),
        metadata: metadata_of(&request, "subscription_data[metadata]"),
    };
    ledger.sessions.insert(id.clone(), session);
    axum::Json(json!({
        "id": id,
        "object": "checkout.session",
        "automatic_tax": { "enabled": false, "liability": null, "status": null },
        "cancel_url": request.field("cancel_url"),
        "client_reference_id": request.field("client_reference_id"),
        "created": 1_800_000_000,
        "custom_fields": [],
        "custom_text": {},
        "customer": customer,
        "expires_at": 1_800_086_400,
        "livemode": false,
        "metadata": metadata_of(&request, "metadata"),
        "mode": request.field("mode"),
        "payment_method_types": ["card"],
        "payment_status": "unpaid",
        "shipping_options": [],
        "status": "open",
        "subscription": null,
        "success_url": request.field("success_url"),
        "url": format!("https://checkout.stripe.test/c/pay/{id}"),
    }))
    .into_response()
}

async fn create_portal_session(
    State(ledger): Shared,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut ledger = ledger.lock().unwrap();
    let request = record(&mut ledger, method, &uri, &headers, &body);
    let Some(customer) = request.field("customer").filter(|c| ledger.customers.contains_key(*c)) else {
        return stripe_error(StatusCode::BAD_REQUEST, "resource_missing", "No such customer");
    };
    let customer = customer.to_owned();
    let id = ledger.id("bps");
    axum::Json(json!({
        "id": id,
        "object": "billing_portal.session",
        "configuration": "bpc_test_default",
        "created": 1_800_000_000,
        "customer": customer,
        "livemode": false,
        "return_url": request.field("return_url"),
        "url": format!("https://billing.stripe.test/p/session/{id}"),
    }))
    .into_response()
}

async fn subscription(
    State(ledger): Shared,
    Path(id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut ledger = ledger.lock().unwrap();
    let request = record(&mut ledger, method.clone(), &uri, &headers, &body);
    let Some(subscription) = ledger.subscriptions.get_mut(&id) else {
        return stripe_error(StatusCode::NOT_FOUND, "resource_missing", "No such subscription");
    };
    if method == Method::POST {
        if let Some(cancel) = request.field("cancel_at_period_end") {
            subscription.cancel_at_period_end = cancel == "true";
        }
    } else if method == Method::DELETE {
        if subscription.status == "canceled" {
            return stripe_error(StatusCode::BAD_REQUEST, "resource_missing", "already canceled");
        }
        subscription.status = "canceled".to_owned();
    } else if method != Method::GET {
        return stripe_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed",
        );
    }
    axum::Json(subscription_json(subscription)).into_response()
}

async fn unknown(State(ledger): Shared, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let mut ledger = ledger.lock().unwrap();
    record(&mut ledger, method, &uri, &headers, &body);
    stripe_error(StatusCode::NOT_FOUND, "resource_missing", "Unrecognized request URL")
}

/// A subscription object of the API version async-stripe speaks: periods
/// on the items, not on the subscription.
pub fn subscription_json(subscription: &FakeSubscription) -> Value {
    let FakeSubscription {
        id,
        customer,
        status,
        price,
        period_start,
        period_end,
        cancel_at_period_end,
        metadata,
        created,
    } = subscription;
    let recurring = json!({ "interval": "month", "interval_count": 1, "usage_type": "licensed", "meter": null, "trial_period_days": null });
    let item = json!({
        "id": format!("si_{id}"),
        "object": "subscription_item",
        "created": created,
        "current_period_start": period_start,
        "current_period_end": period_end,
        "discounts": [],
        "metadata": {},
        "plan": {
            "id": price, "object": "plan", "active": true, "amount": 2000, "amount_decimal": "2000",
            "billing_scheme": "per_unit", "created": created, "currency": "usd", "interval": "month",
            "interval_count": 1, "livemode": false, "metadata": {}, "product": "prod_test", "usage_type": "licensed",
        },
        "price": {
            "id": price, "object": "price", "active": true, "billing_scheme": "per_unit", "created": created,
            "currency": "usd", "livemode": false, "metadata": {}, "product": "prod_test",
            "recurring": recurring, "tax_behavior": "unspecified", "type": "recurring",
            "unit_amount": 2000, "unit_amount_decimal": "2000",
        },
        "quantity": 1,
        "subscription": id,
        "tax_rates": [],
    });
    json!({
        "id": id,
        "object": "subscription",
        "automatic_tax": { "enabled": false, "disabled_reason": null, "liability": null },
        "billing_cycle_anchor": period_start,
        "billing_mode": { "type": "classic" },
        "billing_schedules": [],
        "cancel_at": if *cancel_at_period_end { json!(period_end) } else { Value::Null },
        "cancel_at_period_end": cancel_at_period_end,
        "canceled_at": null,
        "collection_method": "charge_automatically",
        "created": created,
        "currency": "usd",
        "customer": customer,
        "discounts": [],
        "ended_at": if status == "canceled" { json!(period_end) } else { Value::Null },
        "invoice_settings": { "account_tax_ids": null, "issuer": { "type": "self" } },
        "items": { "object": "list", "data": [item], "has_more": false, "url": format!("/v1/subscription_items?subscription={id}") },
        "latest_invoice": null,
        "livemode": false,
        "metadata": metadata,
        "start_date": created,
        "status": status,
        "trial_end": null,
        "trial_start": null,
    })
}
