//! Billing end to end against a fake Stripe: checkout, the portal,
//! webhooks (signatures, duplicates, order), grace periods and
//! cancellations with their notices, billing switched off, and the staff
//! tools for plans.

use std::time::Duration;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use futures_util::future::join_all;
use reqwest::Method;
use serde_json::{Value, json};
use tollgate::{
    auth::{roles::OrgRole, users::Role},
    db::schema::{audit_log, email_outbox, plans, stripe_events, subscriptions, usage_counters, usage_events},
};
use uuid::Uuid;

use crate::{
    harness::{
        GqlResponse, TestApp, TestAppOptions, create_user,
        people::{SignedIn, register},
        smtp::FakeSmtp,
        stripe::{ENTERPRISE_PRICE, FakeStripe, PERIOD_SECS, PRO_PRICE, WEBHOOK_SECRET, sign},
    },
    organizations::{add_member, create_org, field},
};

const APP_URL: &str = "https://app.example.test";
const ADMIN_ORIGIN: &str = "https://admin.example.test";
const SUCCESS: &str = "https://app.example.test/billing/done?session={CHECKOUT_SESSION_ID}";
const CANCEL: &str = "https://app.example.test/billing";

const CHECKOUT: &str = "mutation ($org: ID!, $plan: String!, $success: String!, $cancel: String!) {
    startCheckout(organizationId: $org, planKey: $plan, successUrl: $success, cancelUrl: $cancel) { id url } }";
const PORTAL: &str =
    "mutation ($org: ID!, $back: String!) { openBillingPortal(organizationId: $org, returnUrl: $back) }";
const SUBSCRIPTION_FIELDS: &str =
    "plan { key } status currentPeriodStart currentPeriodEnd cancelAtPeriodEnd stripeSubscriptionId";
const SET_PLAN: &str =
    "mutation ($org: ID!, $plan: String!) { setOrganizationPlan(organizationId: $org, planKey: $plan) {
    plan { key } status stripeSubscriptionId } }";
const UPSERT_PLAN: &str = "mutation ($input: PlanInput!) { upsertPlan(input: $input) {
    id key name priceCents currency interval monthlyTokenLimit maxMembers features public stripePriceId } }";

/// An app pointed at a fake Stripe, with an organization and its OWNER.
struct Shop {
    app: TestApp,
    stripe: FakeStripe,
    owner: SignedIn,
    org: Uuid,
    smtp: FakeSmtp,
}

async fn shop() -> Shop {
    shop_with(vec![("CORS_ORIGINS".to_owned(), ADMIN_ORIGIN.to_owned())]).await
}

async fn shop_with(extra: Vec<(String, String)>) -> Shop {
    let stripe = FakeStripe::start().await;
    let smtp = FakeSmtp::start().await;
    let mut vars = stripe.vars();
    vars.push(("APP_URL".to_owned(), APP_URL.to_owned()));
    vars.push(("SMTP_URL".to_owned(), format!("smtp://127.0.0.1:{}", smtp.port())));
    vars.extend(extra);
    let app = TestApp::spawn_with(TestAppOptions {
        vars,
        ..Default::default()
    })
    .await;
    price_plan(&app, "pro", PRO_PRICE).await;
    price_plan(&app, "enterprise", ENTERPRISE_PRICE).await;
    let owner = register(&app, "owner@example.test").await;
    let org = create_org(&app, &owner.access, "Acme").await;
    Shop {
        app,
        stripe,
        owner,
        org,
        smtp,
    }
}

async fn price_plan(app: &TestApp, key: &str, price: &str) {
    diesel::update(plans::table.filter(plans::key.eq(key)))
        .set(plans::stripe_price_id.eq(price))
        .execute(&mut app.db().await)
        .await
        .expect("pricing a plan");
}

impl Shop {
    async fn checkout(&self, plan: &str) -> GqlResponse {
        let vars = json!({ "org": self.org, "plan": plan, "success": SUCCESS, "cancel": CANCEL });
        self.app.graphql_as(&self.owner.access, CHECKOUT, vars).await
    }

    /// Checkout, payment in Stripe, and the webhook that follows; returns
    /// the subscription's id.
    async fn subscribe(&self, plan: &str) -> String {
        let session = self.checkout(plan).await;
        let session_id = session.data()["startCheckout"]["id"].as_str().unwrap().to_owned();
        let subscription = self
            .stripe
            .complete_checkout(&session_id, self.app.state.now().timestamp());
        let event = self
            .stripe
            .checkout_completed_event(&format!("evt_{session_id}"), &session_id, &subscription);
        assert_eq!(deliver(&self.app, &event).await, 200);
        subscription
    }

    /// The OWNER reports a call of `tokens` prompt tokens; the receipt.
    async fn report(&self, tokens: i64) -> Value {
        // A fresh token: these tests move the clock.
        let token = self.app.token_for(self.owner.user_id).await;
        let input =
            json!({ "organizationId": self.org, "model": "gpt-4o", "promptTokens": tokens, "completionTokens": 0 });
        crate::usage::recorded(&self.app, &token, input).await
    }

    /// `organization { plan subscription }` as the OWNER sees it.
    async fn billing(&self) -> Value {
        let query = format!(
            "query ($id: ID!) {{ organization(id: $id) {{ plan {{ key }} subscription {{ {SUBSCRIPTION_FIELDS} }} }} }}"
        );
        // A fresh token: tests move the clock past an access token's life.
        let token = self.app.token_for(self.owner.user_id).await;
        let response = self.app.graphql_as(&token, &query, json!({ "id": self.org })).await;
        response.data()["organization"].clone()
    }

    async fn plan_in_effect(&self) -> String {
        self.billing().await["plan"]["key"].as_str().unwrap().to_owned()
    }

    async fn cancel(&self, at_period_end: Option<bool>) -> GqlResponse {
        let (args, vars) = match at_period_end {
            Some(at_end) => (", atPeriodEnd: $atEnd", json!({ "org": self.org, "atEnd": at_end })),
            None => ("", json!({ "org": self.org })),
        };
        let declared = if at_period_end.is_some() {
            ", $atEnd: Boolean!"
        } else {
            ""
        };
        let query = format!(
            "mutation ($org: ID!{declared}) {{ cancelSubscription(organizationId: $org{args}) {{ {SUBSCRIPTION_FIELDS} }} }}"
        );
        self.app.graphql_as(&self.owner.access, &query, vars).await
    }

    /// `plan.changed` entries of the organization, oldest first.
    async fn plan_changes(&self) -> Vec<(Option<Uuid>, Value)> {
        audit_log::table
            .filter(audit_log::organization_id.eq(self.org))
            .filter(audit_log::action.eq("plan.changed"))
            .order(audit_log::created_at)
            .select((audit_log::actor_id, audit_log::metadata))
            .load(&mut self.app.db().await)
            .await
            .unwrap()
    }

    /// The next downgrade notice the OWNER's mail server received:
    /// (recipient, subject, plain text).
    async fn downgrade_notice(&self) -> (String, String, String) {
        loop {
            let message = self.smtp.next_message().await;
            let subject = message.header("subject").unwrap_or_default();
            if subject.contains("Free plan") {
                let text = message.part("text/plain").expect("a plain-text part").body;
                return (message.to.join(","), subject, text);
            }
        }
    }

    /// Recipients of the outbox's emails of a kind.
    async fn emails(&self, kind: &str) -> Vec<String> {
        email_outbox::table
            .filter(email_outbox::kind.eq(kind))
            .select(email_outbox::to_address)
            .load(&mut self.app.db().await)
            .await
            .unwrap()
    }

    async fn stripe_customer(&self) -> Option<String> {
        subscriptions::table
            .find(self.org)
            .select(subscriptions::stripe_customer_id)
            .first(&mut self.app.db().await)
            .await
            .unwrap()
    }

    fn fetches_of(&self, subscription: &str) -> usize {
        self.stripe
            .requests_to(Method::GET, &format!("/v1/subscriptions/{subscription}"))
            .len()
    }
}

/// Posts a webhook signed as Stripe signs it, at the app's time; returns
/// the HTTP status.
async fn deliver(app: &TestApp, payload: &str) -> u16 {
    let signature = sign(WEBHOOK_SECRET, payload, app.state.now().timestamp());
    deliver_with(app, payload, Some(&signature)).await
}

async fn deliver_with(app: &TestApp, payload: &str, signature: Option<&str>) -> u16 {
    let mut request = app
        .http()
        .post(app.url("/webhooks/stripe"))
        .header("content-type", "application/json")
        .body(payload.to_owned());
    if let Some(signature) = signature {
        request = request.header("stripe-signature", signature);
    }
    request.send().await.expect("POST /webhooks/stripe").status().as_u16()
}

fn seconds(value: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(value.as_str().expect("a DateTime"))
        .expect("RFC 3339")
        .timestamp()
}

#[tokio::test]
async fn concurrent_checkouts_create_one_customer() {
    let shop = shop().await;
    let answers = join_all((0..5).map(|_| shop.checkout("pro"))).await;
    for answer in &answers {
        let session = &answer.data()["startCheckout"];
        let id = session["id"].as_str().unwrap();
        assert_eq!(session["url"], format!("https://checkout.stripe.test/c/pay/{id}"));
    }
    let creates = shop.stripe.requests_to(Method::POST, "/v1/customers");
    assert_eq!(creates.len(), 1, "one customer, however many checkouts raced");
    assert_eq!(shop.stripe.customer_count(), 1);
    assert_eq!(creates[0].field("name"), Some("Acme"));
    assert_eq!(creates[0].field("email"), Some("owner@example.test"));
    assert_eq!(
        creates[0].authorization.as_deref(),
        Some("Bearer sk_test_tollgate_fake")
    );
    let customer = shop.stripe_customer().await.expect("the customer is stored");

    let sessions = shop.stripe.requests_to(Method::POST, "/v1/checkout/sessions");
    assert_eq!(sessions.len(), 5);
    let org = shop.org.to_string();
    for session in &sessions {
        assert_eq!(session.field("mode"), Some("subscription"));
        assert_eq!(session.field("customer"), Some(customer.as_str()));
        assert_eq!(session.field("line_items[0][price]"), Some(PRO_PRICE));
        assert_eq!(session.field("client_reference_id"), Some(org.as_str()));
        assert_eq!(
            session.field("subscription_data[metadata][organization_id]"),
            Some(org.as_str())
        );
        assert_eq!(session.field("success_url"), Some(SUCCESS));
        assert_eq!(session.field("cancel_url"), Some(CANCEL));
    }

    // A later checkout reuses the stored customer.
    shop.checkout("enterprise").await.data();
    assert_eq!(shop.stripe.requests_to(Method::POST, "/v1/customers").len(), 1);
}

#[tokio::test]
async fn a_completed_checkout_moves_the_plan_through_the_webhook() {
    let shop = shop().await;
    assert_eq!(shop.plan_in_effect().await, "free");
    let subscription = shop.subscribe("pro").await;

    let billing = shop.billing().await;
    assert_eq!(billing["plan"]["key"], "pro");
    let sub = &billing["subscription"];
    assert_eq!(sub["plan"]["key"], "pro");
    assert_eq!(sub["status"], "ACTIVE");
    assert_eq!(sub["stripeSubscriptionId"], subscription.as_str());
    assert_eq!(sub["cancelAtPeriodEnd"], false);
    let stripe_side = shop.stripe.subscription(&subscription);
    assert_eq!(seconds(&sub["currentPeriodStart"]), stripe_side.period_start);
    assert_eq!(seconds(&sub["currentPeriodEnd"]), stripe_side.period_end);

    let changes = shop.plan_changes().await;
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].0, None, "Stripe, not a user, changed it");
    assert_eq!(
        (changes[0].1["from"].as_str(), changes[0].1["to"].as_str()),
        (Some("free"), Some("pro"))
    );

    // A plan change made in the portal arrives as subscription.updated.
    shop.stripe
        .update_subscription(&subscription, |s| s.price = ENTERPRISE_PRICE.to_owned());
    let updated = shop
        .stripe
        .subscription_event("evt_portal_change", "customer.subscription.updated", &subscription);
    assert_eq!(deliver(&shop.app, &updated).await, 200);
    assert_eq!(shop.plan_in_effect().await, "enterprise");
    assert_eq!(shop.plan_changes().await.len(), 2);

    // Unknown event types are acknowledged and change nothing.
    let other = tollgate_event(
        "evt_unrelated",
        "charge.refunded",
        json!({ "id": "ch_1", "customer": "cus_x" }),
    );
    assert_eq!(deliver(&shop.app, &other).await, 200);
    assert_eq!(shop.plan_in_effect().await, "enterprise");
}

/// Stripe starts the paid period when the buyer pays; its webhook comes
/// later. Usage received in between belongs to the paid period.
#[tokio::test]
async fn usage_between_a_payment_and_its_webhook_counts_in_the_paid_period() {
    let shop = shop().await;
    let at = |text: &str| text.parse::<chrono::DateTime<chrono::Utc>>().unwrap();
    shop.app.clock.set(at("2026-11-12T12:00:00Z"));
    shop.report(100).await;
    let session = shop.checkout("pro").await;
    let session_id = session.data()["startCheckout"]["id"].as_str().unwrap().to_owned();
    let paid_at = at("2026-11-12T12:10:00Z");
    let subscription = shop.stripe.complete_checkout(&session_id, paid_at.timestamp());
    shop.app.clock.set(at("2026-11-12T12:20:00Z"));
    shop.report(40).await;

    let event = shop
        .stripe
        .checkout_completed_event("evt_late_webhook", &session_id, &subscription);
    assert_eq!(deliver(&shop.app, &event).await, 200);
    let token = shop.app.token_for(shop.owner.user_id).await;
    let response = shop
        .app
        .graphql_as(
            &token,
            "query ($id: ID!) { organization(id: $id) { plan { key } quota { periodStart tokensUsed } members { tokensUsed } } }",
            json!({ "id": shop.org }),
        )
        .await;
    let organization = &response.data()["organization"];
    assert_eq!(organization["plan"]["key"], "pro");
    assert_eq!(organization["quota"]["periodStart"], "2026-11-12T12:10:00.000Z");
    assert_eq!(organization["quota"]["tokensUsed"], 40);
    assert_eq!(organization["members"][0]["tokensUsed"], 40);
    let receipt = shop.report(2).await;
    assert_eq!(receipt["quota"]["tokensUsed"], 42);
}

/// Asserts that each of the organization's counter rows holds exactly the
/// events received from its start to the next row's.
async fn assert_rows_hold_their_events(app: &TestApp, org: Uuid) {
    let mut conn = app.db().await;
    let rows: Vec<(chrono::DateTime<chrono::Utc>, i64)> = usage_counters::table
        .filter(usage_counters::organization_id.eq(org))
        .filter(usage_counters::subject_kind.eq("ORGANIZATION"))
        .order(usage_counters::window_start)
        .select((usage_counters::window_start, usage_counters::tokens))
        .load(&mut conn)
        .await
        .unwrap();
    for (index, (start, tokens)) in rows.iter().enumerate() {
        let end = rows
            .get(index + 1)
            .map_or(chrono::DateTime::<chrono::Utc>::MAX_UTC, |row| row.0);
        let events: Option<i64> = usage_events::table
            .filter(usage_events::organization_id.eq(org))
            .filter(usage_events::created_at.ge(start))
            .filter(usage_events::created_at.lt(end))
            .select(diesel::dsl::sum(usage_events::total_tokens))
            .first(&mut conn)
            .await
            .unwrap();
        assert_eq!(events.unwrap_or(0), *tokens, "the row from {start}");
    }
}

/// Paid, cancelled now, paid again with the webhook late: the quota
/// follows each period and every counter row keeps holding exactly its
/// events (the cancelled period's boundary stays one).
#[tokio::test]
async fn counters_follow_a_subscription_through_a_cancellation_and_a_late_webhook() {
    let shop = shop().await;
    let at = |text: &str| text.parse::<chrono::DateTime<chrono::Utc>>().unwrap();
    let report = async |tokens: i64| shop.report(tokens).await["quota"].clone();
    let clock = &shop.app.clock;
    clock.set(at("2026-11-05T12:00:00Z"));
    report(100).await;
    clock.set(at("2026-11-10T12:00:00Z"));
    shop.subscribe("pro").await;
    clock.set(at("2026-11-12T12:00:00Z"));
    assert_eq!(report(200).await["periodStart"], "2026-11-10T12:00:00.000Z");

    clock.set(at("2026-11-15T12:00:00Z"));
    shop.cancel(Some(false)).await.data();
    let quota = report(50).await;
    assert_eq!(quota["periodStart"], "2026-11-01T00:00:00.000Z");
    assert_eq!(quota["tokensUsed"], 350);

    clock.set(at("2026-11-20T12:00:00Z"));
    let session = shop.checkout("pro").await;
    let session_id = session.data()["startCheckout"]["id"].as_str().unwrap().to_owned();
    let subscription = shop
        .stripe
        .complete_checkout(&session_id, shop.app.state.now().timestamp());
    clock.set(at("2026-11-20T12:05:00Z"));
    report(7).await;
    clock.set(at("2026-11-20T12:10:00Z"));
    let event = shop
        .stripe
        .checkout_completed_event("evt_second_checkout", &session_id, &subscription);
    assert_eq!(deliver(&shop.app, &event).await, 200);
    let quota = report(3).await;
    assert_eq!(quota["periodStart"], "2026-11-20T12:00:00.000Z");
    assert_eq!(quota["tokensUsed"], 10);
    assert_rows_hold_their_events(&shop.app, shop.org).await;
}

fn tollgate_event(id: &str, kind: &str, object: Value) -> String {
    crate::harness::stripe::event(id, kind, object)
}

#[tokio::test]
async fn a_repeated_event_is_applied_once() {
    let shop = shop().await;
    let subscription = shop.subscribe("pro").await;
    let fetched = shop.fetches_of(&subscription);

    shop.stripe
        .update_subscription(&subscription, |s| s.price = ENTERPRISE_PRICE.to_owned());
    let event = shop
        .stripe
        .subscription_event("evt_once", "customer.subscription.updated", &subscription);
    assert_eq!(deliver(&shop.app, &event).await, 200);
    assert_eq!(deliver(&shop.app, &event).await, 200, "a repeat is acknowledged");
    let repeats = join_all((0..3).map(|_| deliver(&shop.app, &event))).await;
    assert!(repeats.iter().all(|status| *status == 200));

    assert_eq!(shop.fetches_of(&subscription), fetched + 1, "applied once");
    assert_eq!(shop.plan_changes().await.len(), 2, "free→pro, pro→enterprise");
    let stored: i64 = stripe_events::table
        .filter(stripe_events::id.eq("evt_once"))
        .count()
        .get_result(&mut shop.app.db().await)
        .await
        .unwrap();
    assert_eq!(stored, 1);
}

#[tokio::test]
async fn an_old_event_arriving_late_does_not_undo_a_newer_state() {
    let shop = shop().await;
    let subscription = shop.subscribe("pro").await;
    // Stripe sends created (pro) and, after an upgrade, updated
    // (enterprise); the network delivers them the other way round.
    let created = shop
        .stripe
        .subscription_event("evt_created", "customer.subscription.created", &subscription);
    shop.stripe
        .update_subscription(&subscription, |s| s.price = ENTERPRISE_PRICE.to_owned());
    let updated = shop
        .stripe
        .subscription_event("evt_updated", "customer.subscription.updated", &subscription);

    assert_eq!(deliver(&shop.app, &updated).await, 200);
    assert_eq!(shop.plan_in_effect().await, "enterprise");
    assert_eq!(deliver(&shop.app, &created).await, 200);
    let billing = shop.billing().await;
    assert_eq!(
        billing["plan"]["key"], "enterprise",
        "the current state was fetched, not the stale payload"
    );
    assert_eq!(billing["subscription"]["status"], "ACTIVE");
    // An event about a subscription that ended long ago changes nothing
    // about today's.
    let stale_deleted = tollgate_event(
        "evt_old_sub",
        "customer.subscription.deleted",
        json!({ "id": "sub_gone", "customer": shop.stripe_customer().await }),
    );
    assert_eq!(deliver(&shop.app, &stale_deleted).await, 200);
    assert_eq!(shop.plan_in_effect().await, "enterprise");
}

#[tokio::test]
async fn a_bad_or_missing_signature_is_refused_and_changes_nothing() {
    let shop = shop().await;
    let session = shop.checkout("pro").await;
    let session_id = session.data()["startCheckout"]["id"].as_str().unwrap().to_owned();
    let now = shop.app.state.now().timestamp();
    let subscription = shop.stripe.complete_checkout(&session_id, now);
    let event = shop
        .stripe
        .checkout_completed_event("evt_signed", &session_id, &subscription);

    let tampered = event.replace("\"paid\"", "\"unpaid\"");
    let cases = [
        ("no header", None),
        ("another secret", Some(sign("whsec_someone_else", &event, now))),
        ("another body", Some(sign(WEBHOOK_SECRET, &tampered, now))),
        ("six minutes old", Some(sign(WEBHOOK_SECRET, &event, now - 360))),
        ("garbage", Some("t=abc,v1=zz".to_owned())),
    ];
    for (what, signature) in cases {
        assert_eq!(
            deliver_with(&shop.app, &event, signature.as_deref()).await,
            400,
            "{what}"
        );
    }
    assert_eq!(shop.plan_in_effect().await, "free");
    assert_eq!(shop.fetches_of(&subscription), 0, "nothing was looked up");
    let stored: i64 = stripe_events::table
        .count()
        .get_result(&mut shop.app.db().await)
        .await
        .unwrap();
    assert_eq!(stored, 0, "no event id was kept");

    // The same event, properly signed, still applies.
    assert_eq!(deliver(&shop.app, &event).await, 200);
    assert_eq!(shop.plan_in_effect().await, "pro");
}

#[tokio::test]
async fn a_failed_payment_keeps_the_plan_for_the_grace_period_then_falls_to_free() {
    let shop = shop().await;
    let subscription = shop.subscribe("pro").await;

    shop.stripe
        .update_subscription(&subscription, |s| s.status = "past_due".to_owned());
    let failed = shop
        .stripe
        .invoice_event("evt_failed", "invoice.payment_failed", &subscription);
    assert_eq!(deliver(&shop.app, &failed).await, 200);
    let billing = shop.billing().await;
    assert_eq!(billing["subscription"]["status"], "PAST_DUE");
    assert_eq!(billing["plan"]["key"], "pro", "grace: the plan holds");

    shop.app.clock.advance(chrono::Duration::days(6));
    assert_eq!(shop.plan_in_effect().await, "pro");
    // Stripe's retries keep failing; the grace end does not move.
    shop.stripe
        .update_subscription(&subscription, |s| s.status = "unpaid".to_owned());
    let again = shop
        .stripe
        .invoice_event("evt_failed_again", "invoice.payment_failed", &subscription);
    assert_eq!(deliver(&shop.app, &again).await, 200);
    assert_eq!(shop.plan_in_effect().await, "pro");

    shop.app
        .clock
        .advance(chrono::Duration::days(1) + chrono::Duration::minutes(1));
    let billing = shop.billing().await;
    assert_eq!(billing["plan"]["key"], "free", "the grace period is over");
    assert_eq!(
        billing["subscription"]["plan"]["key"], "pro",
        "still what Stripe bills for"
    );
    assert_eq!(billing["subscription"]["status"], "UNPAID");

    // The job notices the moment: one audit entry, one email to the OWNER.
    let (to, subject, text) = shop.downgrade_notice().await;
    assert_eq!(to, "owner@example.test");
    assert_eq!(subject, "Acme is now on the Free plan");
    assert!(text.contains("grace period has ended"), "{text}");
    assert_eq!(shop.emails("plan_downgraded").await.len(), 1);
    let changes = shop.plan_changes().await;
    assert_eq!(changes.len(), 2);
    assert_eq!(changes[1].1["reason"], "grace_period_ended");
    assert_eq!(
        (changes[1].1["from"].as_str(), changes[1].1["to"].as_str()),
        (Some("pro"), Some("free"))
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(shop.emails("plan_downgraded").await.len(), 1, "once per moment");
    assert_eq!(shop.plan_changes().await.len(), 2);

    // Paying at last brings the plan back.
    shop.stripe
        .update_subscription(&subscription, |s| s.status = "active".to_owned());
    let paid = shop.stripe.invoice_event("evt_paid", "invoice.paid", &subscription);
    assert_eq!(deliver(&shop.app, &paid).await, 200);
    let billing = shop.billing().await;
    assert_eq!(billing["plan"]["key"], "pro");
    assert_eq!(billing["subscription"]["status"], "ACTIVE");
    assert_eq!(shop.plan_changes().await.len(), 3);
}

#[tokio::test]
async fn the_grace_period_is_configurable() {
    let shop = shop_with(vec![("BILLING_GRACE_DAYS".to_owned(), "0".to_owned())]).await;
    let subscription = shop.subscribe("pro").await;
    shop.stripe
        .update_subscription(&subscription, |s| s.status = "past_due".to_owned());
    let failed = shop
        .stripe
        .invoice_event("evt_failed", "invoice.payment_failed", &subscription);
    assert_eq!(deliver(&shop.app, &failed).await, 200);
    assert_eq!(shop.plan_in_effect().await, "free", "no grace at all");
}

#[tokio::test]
async fn cancelling_at_period_end_keeps_the_plan_until_the_end() {
    let shop = shop().await;
    let subscription = shop.subscribe("pro").await;

    let cancelled = shop.cancel(None).await;
    let sub = &cancelled.data()["cancelSubscription"];
    assert_eq!(sub["cancelAtPeriodEnd"], true, "atPeriodEnd defaults to true");
    assert_eq!(sub["status"], "ACTIVE");
    assert_eq!(sub["plan"]["key"], "pro");
    let updates = shop
        .stripe
        .requests_to(Method::POST, &format!("/v1/subscriptions/{subscription}"));
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].field("cancel_at_period_end"), Some("true"));
    assert_eq!(shop.plan_in_effect().await, "pro");

    // The webhook that follows changes nothing more.
    let followed = shop
        .stripe
        .subscription_event("evt_cancel_update", "customer.subscription.updated", &subscription);
    assert_eq!(deliver(&shop.app, &followed).await, 200);
    assert_eq!(shop.billing().await["subscription"]["cancelAtPeriodEnd"], true);
    assert_eq!(shop.plan_changes().await.len(), 1);

    shop.app.clock.advance(chrono::Duration::seconds(PERIOD_SECS - 60));
    assert_eq!(shop.plan_in_effect().await, "pro");
    shop.app.clock.advance(chrono::Duration::seconds(120));
    assert_eq!(shop.plan_in_effect().await, "free", "free from the period's end");
    let (to, _, text) = shop.downgrade_notice().await;
    assert_eq!(to, "owner@example.test");
    assert!(text.contains("end of its paid period"), "{text}");
    let changes = shop.plan_changes().await;
    assert_eq!(changes.len(), 2);
    assert_eq!(changes[1].1["reason"], "cancelled_at_period_end");

    // Stripe then ends the subscription: the row is free again, with no
    // second entry (the plan in effect was already free).
    shop.stripe
        .update_subscription(&subscription, |s| s.status = "canceled".to_owned());
    let deleted = shop
        .stripe
        .subscription_event("evt_deleted", "customer.subscription.deleted", &subscription);
    assert_eq!(deliver(&shop.app, &deleted).await, 200);
    let billing = shop.billing().await;
    assert_eq!(billing["subscription"]["plan"]["key"], "free");
    assert_eq!(billing["subscription"]["status"], "ACTIVE");
    assert_eq!(billing["subscription"]["stripeSubscriptionId"], Value::Null);
    assert_eq!(billing["subscription"]["cancelAtPeriodEnd"], false);
    assert_eq!(shop.plan_changes().await.len(), 2);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(shop.emails("plan_downgraded").await.len(), 1);
}

#[tokio::test]
async fn cancelling_now_returns_to_the_free_plan_at_once() {
    let shop = shop().await;
    let subscription = shop.subscribe("pro").await;

    let cancelled = shop.cancel(Some(false)).await;
    let sub = &cancelled.data()["cancelSubscription"];
    assert_eq!(sub["plan"]["key"], "free");
    assert_eq!(sub["status"], "ACTIVE");
    assert_eq!(sub["stripeSubscriptionId"], Value::Null);
    assert_eq!(sub["cancelAtPeriodEnd"], false);
    assert_eq!(
        shop.stripe
            .requests_to(Method::DELETE, &format!("/v1/subscriptions/{subscription}"))
            .len(),
        1
    );
    assert_eq!(shop.stripe.subscription(&subscription).status, "canceled");
    assert_eq!(shop.plan_in_effect().await, "free");
    let changes = shop.plan_changes().await;
    assert_eq!(changes.len(), 2);
    assert_eq!(changes[1].0, Some(shop.owner.user_id), "the OWNER did it");
    assert_eq!(changes[1].1["reason"], "cancelled");

    let deleted = shop
        .stripe
        .subscription_event("evt_deleted", "customer.subscription.deleted", &subscription);
    assert_eq!(deliver(&shop.app, &deleted).await, 200);
    assert_eq!(shop.plan_in_effect().await, "free");
    assert_eq!(shop.plan_changes().await.len(), 2, "the webhook changes nothing more");

    // Nothing left to cancel.
    let again = shop.cancel(Some(false)).await;
    assert_eq!(again.error_code(), Some("BAD_USER_INPUT"));
    // And a new checkout is possible again, for the same customer.
    shop.checkout("pro").await.data();
    assert_eq!(shop.stripe.customer_count(), 1);
}

#[tokio::test]
async fn checkout_is_refused_while_a_subscription_runs() {
    let shop = shop().await;
    shop.subscribe("pro").await;
    let second = shop.checkout("enterprise").await;
    assert_eq!(second.error_code(), Some("CONFLICT"));
    let unsold = shop.checkout("free").await;
    assert_eq!(unsold.error_code(), Some("BAD_USER_INPUT"));
    assert_eq!(field(&unsold), Some("planKey"));
}

#[tokio::test]
async fn return_urls_must_be_on_the_apps_own_origins() {
    let shop = shop().await;
    let attempt = |success: &'static str, cancel: &'static str| {
        let vars = json!({ "org": shop.org, "plan": "pro", "success": success, "cancel": cancel });
        shop.app.graphql_as(&shop.owner.access, CHECKOUT, vars)
    };
    for (success, cancel, refused_field) in [
        ("https://evil.example.com/done", CANCEL, "successUrl"),
        (SUCCESS, "https://evil.example.com/back", "cancelUrl"),
        ("javascript:alert(1)", CANCEL, "successUrl"),
        ("https://app.example.test.evil.com/", CANCEL, "successUrl"),
        ("http://app.example.test/done", CANCEL, "successUrl"),
        (SUCCESS, "/relative/path", "cancelUrl"),
    ] {
        let response = attempt(success, cancel).await;
        assert_eq!(response.error_code(), Some("BAD_USER_INPUT"), "{success} {cancel}");
        assert_eq!(field(&response), Some(refused_field));
    }
    assert!(shop.stripe.requests().is_empty(), "nothing reached Stripe");

    // APP_URL's and an explicitly listed origin are fine.
    attempt("https://admin.example.test/after", CANCEL).await.data();
    let portal = shop
        .app
        .graphql_as(
            &shop.owner.access,
            PORTAL,
            json!({ "org": shop.org, "back": "https://evil.example.com/" }),
        )
        .await;
    assert_eq!(portal.error_code(), Some("BAD_USER_INPUT"));
    assert_eq!(field(&portal), Some("returnUrl"));
}

#[tokio::test]
async fn the_portal_needs_a_customer() {
    let shop = shop().await;
    let back = json!({ "org": shop.org, "back": "https://app.example.test/settings" });
    let early = shop.app.graphql_as(&shop.owner.access, PORTAL, back.clone()).await;
    assert_eq!(early.error_code(), Some("BAD_USER_INPUT"));
    assert_eq!(field(&early), Some("organizationId"));

    shop.checkout("pro").await.data();
    let portal = shop.app.graphql_as(&shop.owner.access, PORTAL, back).await;
    let url = portal.data()["openBillingPortal"].as_str().unwrap();
    assert!(url.starts_with("https://billing.stripe.test/p/session/"), "{url}");
    let sessions = shop.stripe.requests_to(Method::POST, "/v1/billing_portal/sessions");
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].field("customer"), shop.stripe_customer().await.as_deref());
    assert_eq!(
        sessions[0].field("return_url"),
        Some("https://app.example.test/settings")
    );
}

#[tokio::test]
async fn only_owners_and_admins_pay_and_outsiders_see_nothing() {
    let shop = shop().await;
    let vars = json!({ "org": shop.org, "plan": "pro", "success": SUCCESS, "cancel": CANCEL });
    let anonymous = shop.app.graphql(CHECKOUT, vars.clone()).await;
    assert_eq!(anonymous.error_code(), Some("UNAUTHENTICATED"));
    let outsider = register(&shop.app, "outsider@example.test").await;
    let refused = shop.app.graphql_as(&outsider.access, CHECKOUT, vars.clone()).await;
    assert_eq!(refused.error_code(), Some("NOT_FOUND"));
    let member = register(&shop.app, "member@example.test").await;
    add_member(&shop.app, shop.org, member.user_id, OrgRole::Member).await;
    for query in [CHECKOUT, PORTAL] {
        let vars = json!({ "org": shop.org, "plan": "pro", "success": SUCCESS, "cancel": CANCEL, "back": CANCEL });
        let response = shop.app.graphql_as(&member.access, query, vars).await;
        assert_eq!(response.error_code(), Some("FORBIDDEN"));
    }
    let cancel = shop
        .app
        .graphql_as(
            &member.access,
            "mutation ($org: ID!) { cancelSubscription(organizationId: $org) { status } }",
            json!({ "org": shop.org }),
        )
        .await;
    assert_eq!(cancel.error_code(), Some("FORBIDDEN"));
    let admin = register(&shop.app, "admin@example.test").await;
    add_member(&shop.app, shop.org, admin.user_id, OrgRole::Admin).await;
    shop.app.graphql_as(&admin.access, CHECKOUT, vars).await.data();

    // Members read the plan and subscription; outsiders do not.
    let query = "query ($id: ID!) { organization(id: $id) { plan { key } subscription { status } } }";
    let read = shop
        .app
        .graphql_as(&member.access, query, json!({ "id": shop.org }))
        .await;
    assert_eq!(read.data()["organization"]["plan"]["key"], "free");
    let hidden = shop
        .app
        .graphql_as(&outsider.access, query, json!({ "id": shop.org }))
        .await;
    assert_eq!(hidden.data()["organization"], Value::Null);
}

#[tokio::test]
async fn billing_off_means_no_stripe_and_plans_assigned_by_admins() {
    let app = TestApp::spawn().await;
    let config = app.graphql("{ clientConfig { billingEnabled } }", json!({})).await;
    assert_eq!(config.data()["clientConfig"]["billingEnabled"], false);
    let owner = register(&app, "owner@example.test").await;
    let org = create_org(&app, &owner.access, "Acme").await;
    let calls = [
        (
            CHECKOUT,
            json!({ "org": org, "plan": "pro", "success": SUCCESS, "cancel": CANCEL }),
        ),
        (PORTAL, json!({ "org": org, "back": CANCEL })),
        (
            "mutation ($org: ID!) { cancelSubscription(organizationId: $org) { status } }",
            json!({ "org": org }),
        ),
    ];
    for (query, vars) in calls {
        let response = app.graphql_as(&owner.access, query, vars).await;
        assert_eq!(response.error_code(), Some("BAD_USER_INPUT"), "{query}");
        let message = response.body["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains("billing is not configured"), "{message}");
    }
    let webhook = tollgate_event("evt_1", "customer.subscription.updated", json!({ "id": "sub_1" }));
    assert_eq!(deliver(&app, &webhook).await, 400);

    let staff = create_user(&app, "staff@example.test", Role::Admin).await;
    let staff_token = app.token_for(staff).await;
    let assigned = app
        .graphql_as(&staff_token, SET_PLAN, json!({ "org": org, "plan": "enterprise" }))
        .await;
    let sub = &assigned.data()["setOrganizationPlan"];
    assert_eq!(sub["plan"]["key"], "enterprise");
    assert_eq!(sub["status"], "ACTIVE");
    assert_eq!(sub["stripeSubscriptionId"], Value::Null);
    let query = "query ($id: ID!) { organization(id: $id) { plan { key } } }";
    let seen = app.graphql_as(&owner.access, query, json!({ "id": org })).await;
    assert_eq!(seen.data()["organization"]["plan"]["key"], "enterprise");
    let audited: Vec<(Option<Uuid>, Value)> = audit_log::table
        .filter(audit_log::organization_id.eq(org))
        .filter(audit_log::action.eq("plan.changed"))
        .select((audit_log::actor_id, audit_log::metadata))
        .load(&mut app.db().await)
        .await
        .unwrap();
    assert_eq!(audited.len(), 1);
    assert_eq!(audited[0].0, Some(staff));
    assert_eq!(audited[0].1["to"], "enterprise");
}

#[tokio::test]
async fn billing_on_is_announced_to_clients() {
    let shop = shop().await;
    let config = shop.app.graphql("{ clientConfig { billingEnabled } }", json!({})).await;
    assert_eq!(config.data()["clientConfig"]["billingEnabled"], true);
}

#[tokio::test]
async fn set_organization_plan_is_for_platform_admins() {
    let shop = shop().await;
    let vars = json!({ "org": shop.org, "plan": "enterprise" });
    let by_owner = shop.app.graphql_as(&shop.owner.access, SET_PLAN, vars.clone()).await;
    assert_eq!(by_owner.error_code(), Some("FORBIDDEN"));
    let support = create_user(&shop.app, "support@example.test", Role::Support).await;
    let by_support = shop
        .app
        .graphql_as(&shop.app.token_for(support).await, SET_PLAN, vars.clone())
        .await;
    assert_eq!(by_support.error_code(), Some("FORBIDDEN"));

    let admin = create_user(&shop.app, "admin@example.test", Role::Admin).await;
    let admin_token = shop.app.token_for(admin).await;
    let unknown = shop
        .app
        .graphql_as(&admin_token, SET_PLAN, json!({ "org": shop.org, "plan": "platinum" }))
        .await;
    assert_eq!(unknown.error_code(), Some("BAD_USER_INPUT"));
    assert_eq!(field(&unknown), Some("planKey"));
    let missing = shop
        .app
        .graphql_as(&admin_token, SET_PLAN, json!({ "org": Uuid::now_v7(), "plan": "pro" }))
        .await;
    assert_eq!(missing.error_code(), Some("NOT_FOUND"));
    shop.app.graphql_as(&admin_token, SET_PLAN, vars.clone()).await.data();
    assert_eq!(shop.plan_in_effect().await, "enterprise");

    // An organization paying through Stripe is Stripe's to change.
    shop.app
        .graphql_as(&admin_token, SET_PLAN, json!({ "org": shop.org, "plan": "free" }))
        .await
        .data();
    shop.subscribe("pro").await;
    let paying = shop.app.graphql_as(&admin_token, SET_PLAN, vars).await;
    assert_eq!(paying.error_code(), Some("CONFLICT"));
    assert_eq!(shop.plan_in_effect().await, "pro");
}

#[tokio::test]
async fn upsert_plan_creates_and_updates_plans_for_admins() {
    let shop = shop().await;
    let input = json!({
        "key": "team", "name": "Team", "priceCents": 4900, "monthlyTokenLimit": 50_000_000_i64,
        "maxMembers": 10, "features": ["50M tokens"], "stripePriceId": "price_team_monthly",
    });
    let by_owner = shop
        .app
        .graphql_as(&shop.owner.access, UPSERT_PLAN, json!({ "input": input }))
        .await;
    assert_eq!(by_owner.error_code(), Some("FORBIDDEN"));

    let admin = create_user(&shop.app, "admin@example.test", Role::Admin).await;
    let token = shop.app.token_for(admin).await;
    let created = shop
        .app
        .graphql_as(&token, UPSERT_PLAN, json!({ "input": input }))
        .await;
    let plan = created.data()["upsertPlan"].clone();
    assert_eq!(plan["key"], "team");
    assert_eq!(plan["currency"], "usd");
    assert_eq!(plan["interval"], "MONTH");
    assert_eq!(plan["public"], true);
    assert_eq!(plan["monthlyTokenLimit"], 50_000_000_i64);
    assert_eq!(plan["stripePriceId"], "price_team_monthly");
    let listed = shop.app.graphql("{ plans { key } }", json!({})).await;
    let keys: Vec<&str> = listed.data()["plans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["free", "pro", "enterprise", "team"]);

    // The same key updates; the id stays.
    let mut renamed = input.clone();
    renamed["name"] = json!("Team+");
    renamed["public"] = json!(false);
    let updated = shop
        .app
        .graphql_as(&token, UPSERT_PLAN, json!({ "input": renamed }))
        .await;
    assert_eq!(updated.data()["upsertPlan"]["id"], plan["id"]);
    assert_eq!(updated.data()["upsertPlan"]["name"], "Team+");
    let public = shop.app.graphql("{ plans { key } }", json!({})).await;
    assert!(!public.data()["plans"].to_string().contains("team"), "private now");

    // A price already sold as another plan.
    let mut taken = input.clone();
    taken["key"] = json!("team-yearly");
    taken["stripePriceId"] = json!(PRO_PRICE);
    let conflict = shop
        .app
        .graphql_as(&token, UPSERT_PLAN, json!({ "input": taken }))
        .await;
    assert_eq!(conflict.error_code(), Some("CONFLICT"));

    for (name, value, refused) in [
        ("key", json!("Team Plan"), "key"),
        ("priceCents", json!(-1), "priceCents"),
        ("monthlyTokenLimit", json!(-5), "monthlyTokenLimit"),
        ("maxMembers", json!(0), "maxMembers"),
        ("currency", json!("dollars"), "currency"),
    ] {
        let mut bad = input.clone();
        bad["key"] = json!("other");
        bad["stripePriceId"] = Value::Null;
        bad[name] = value;
        let response = shop.app.graphql_as(&token, UPSERT_PLAN, json!({ "input": bad })).await;
        assert_eq!(response.error_code(), Some("BAD_USER_INPUT"), "{name}");
        assert_eq!(field(&response), Some(refused));
    }
    // A sold plan is bought through its price.
    shop.app
        .graphql_as(&token, UPSERT_PLAN, json!({ "input": input }))
        .await
        .data();
    shop.checkout("team").await.data();
    let sessions = shop.stripe.requests_to(Method::POST, "/v1/checkout/sessions");
    assert_eq!(sessions[0].field("line_items[0][price]"), Some("price_team_monthly"));
}

#[tokio::test]
async fn deleting_an_organization_cancels_its_subscription_now() {
    let shop = shop().await;
    let subscription = shop.subscribe("pro").await;
    let deleted = shop
        .app
        .graphql_as(
            &shop.owner.access,
            "mutation ($id: ID!) { deleteOrganization(id: $id) }",
            json!({ "id": shop.org }),
        )
        .await;
    assert_eq!(deleted.data()["deleteOrganization"], true);
    let cancels = shop
        .stripe
        .requests_to(Method::DELETE, &format!("/v1/subscriptions/{subscription}"));
    assert_eq!(cancels.len(), 1);
    assert_eq!(shop.stripe.subscription(&subscription).status, "canceled");
    // Stripe's deleted event for the gone organization is acknowledged.
    let event = shop
        .stripe
        .subscription_event("evt_after_delete", "customer.subscription.deleted", &subscription);
    assert_eq!(deliver(&shop.app, &event).await, 200);
}
