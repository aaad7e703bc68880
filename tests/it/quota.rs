//! Quotas and authorizeUsage: every budget says no once spent and yes
//! again in the next period or after resetUsage, denials come in their
//! order, the model allow-list and disabled models, requestsPerMinute,
//! no writes, and thresholds announced once and emailed.

use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tollgate::{
    auth::roles::OrgRole,
    db::schema::{audit_log, plans, subscriptions, usage_counters, usage_daily, usage_events, usage_thresholds},
    platform::events::BusMessage,
    usage::live_message::UsageUpdateMessage,
};
use uuid::Uuid;

use crate::{
    harness::{
        TestApp, TestAppOptions,
        smtp::{FakeSmtp, ReceivedMessage},
    },
    usage::{admin_token, app_mid_month, create_key, mid_month, recorded, set_free_plan, team},
};

const AUTHORIZE: &str = "query ($org: ID, $model: String!) { authorizeUsage(organizationId: $org, model: $model) {
    allowed reason quota { tokensUsed tokenLimit remaining exceeded requestsToday dailyRequestLimit periodStart periodEnd } } }";
const RESET: &str =
    "mutation ($org: ID!) { resetUsage(organizationId: $org) { tokensUsed requestsToday periodStart remaining } }";

/// authorizeUsage's answer, asserting success.
async fn authorize(app: &TestApp, token: &str, organization: Option<&str>, model: &str) -> Value {
    let response = app
        .graphql_as(token, AUTHORIZE, json!({ "org": organization, "model": model }))
        .await;
    response.data()["authorizeUsage"].clone()
}

/// The denial (None when allowed).
async fn denial(app: &TestApp, token: &str, organization: Option<&str>, model: &str) -> Option<String> {
    let answer = authorize(app, token, organization, model).await;
    assert_eq!(answer["allowed"], answer["reason"].is_null(), "{answer}");
    answer["reason"].as_str().map(str::to_owned)
}

fn tokens(organization: &str, model: &str, prompt: i64) -> Value {
    json!({ "organizationId": organization, "model": model, "promptTokens": prompt, "completionTokens": 0 })
}

fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

#[tokio::test]
async fn the_organization_budget_says_no_once_spent_and_yes_in_the_next_period() {
    let app = app_mid_month().await;
    set_free_plan(&app, Some(1000), None, None).await;
    let team = team(&app, "budget.test", &[]).await;
    let org = Some(team.id.as_str());
    let owner = &team.owner.access;
    assert_eq!(denial(&app, owner, org, "gpt-4o").await, None);
    recorded(&app, owner, tokens(&team.id, "gpt-4o", 999)).await;
    let answer = authorize(&app, owner, org, "gpt-4o").await;
    assert_eq!(answer["allowed"], true);
    assert_eq!(answer["quota"]["remaining"], 1);
    recorded(&app, owner, tokens(&team.id, "gpt-4o", 1)).await;
    let answer = authorize(&app, owner, org, "gpt-4o").await;
    assert_eq!(answer["reason"], "ORGANIZATION_BUDGET");
    assert_eq!(answer["quota"]["exceeded"], true);
    assert_eq!(answer["quota"]["remaining"], 0);
    // Usage that happened is still recorded; remaining never goes negative.
    let over = recorded(&app, owner, tokens(&team.id, "gpt-4o", 500)).await;
    assert_eq!(over["quota"]["tokensUsed"], 1500);
    assert_eq!(over["quota"]["remaining"], 0);

    // The next period starts at zero, without any job.
    app.clock.set(at("2026-12-02T09:00:00Z"));
    let owner = app.token_for(team.owner.user_id).await;
    let answer = authorize(&app, &owner, org, "gpt-4o").await;
    assert_eq!(answer["allowed"], true);
    assert_eq!(answer["quota"]["tokensUsed"], 0);
    assert_eq!(answer["quota"]["periodStart"], "2026-12-01T00:00:00.000Z");
    assert_eq!(answer["quota"]["periodEnd"], "2027-01-01T00:00:00.000Z");
}

/// Puts the organization on `plan` with `status` and Stripe's period.
async fn subscribe(app: &TestApp, organization: Uuid, plan: &str, status: &str, period: (&str, &str)) {
    let plan_id: Uuid = plans::table
        .filter(plans::key.eq(plan))
        .select(plans::id)
        .first(&mut app.db().await)
        .await
        .unwrap();
    diesel::update(subscriptions::table.filter(subscriptions::organization_id.eq(organization)))
        .set((
            subscriptions::plan_id.eq(plan_id),
            subscriptions::status.eq(status),
            subscriptions::current_period_start.eq(at(period.0)),
            subscriptions::current_period_end.eq(at(period.1)),
        ))
        .execute(&mut app.db().await)
        .await
        .unwrap();
}

/// Tokens of the organization's events received from `since` on: what
/// the quota must say.
async fn received_since(app: &TestApp, organization: Uuid, since: &str) -> i64 {
    let tokens: Option<i64> = usage_events::table
        .filter(usage_events::organization_id.eq(organization))
        .filter(usage_events::created_at.ge(at(since)))
        .select(diesel::dsl::sum(usage_events::total_tokens))
        .first(&mut app.db().await)
        .await
        .unwrap();
    tokens.unwrap_or(0)
}

/// The quota period jumps back when a paid plan with its own period
/// (from the 10th) lapses to the free plan's calendar month (from the 1st),
/// and forward again when it is paid for: each time the organization's,
/// key's and member's totals count exactly the events received in the
/// period in effect.
#[tokio::test]
async fn a_period_that_jumps_back_counts_every_event_received_in_it() {
    let app = TestApp::spawn().await;
    app.clock.set(at("2026-11-05T12:00:00Z"));
    let team = team(&app, "jumps.test", &[]).await;
    let org: Uuid = team.id.parse().unwrap();
    let (_, key) = create_key(&app, &team.owner.access, &team.id, json!({})).await;
    let quota_now = async |expected_start: &str| {
        let answer = authorize(&app, &key, None, "gpt-4o").await;
        assert_eq!(answer["quota"]["periodStart"], expected_start);
        let used = answer["quota"]["tokensUsed"].as_i64().unwrap();
        assert_eq!(used, received_since(&app, org, expected_start).await, "{answer}");
        let owner = app.token_for(team.owner.user_id).await;
        let totals = app
            .graphql_as(
                &owner,
                "query ($id: ID!) { organization(id: $id) { apiKeys { tokensUsed } members { tokensUsed } } }",
                json!({ "id": team.id }),
            )
            .await;
        let totals = &totals.data()["organization"];
        assert_eq!(totals["apiKeys"][0]["tokensUsed"], used, "the key's total");
        assert_eq!(totals["members"][0]["tokensUsed"], used, "the member's total");
        used
    };
    let paid = ("2026-11-10T08:00:00Z", "2026-12-10T08:00:00Z");

    recorded(&app, &key, tokens_of_key("gpt-4o", 100)).await;
    assert_eq!(quota_now("2026-11-01T00:00:00.000Z").await, 100);

    app.clock.set(at("2026-11-15T12:00:00Z"));
    subscribe(&app, org, "pro", "ACTIVE", paid).await;
    recorded(&app, &key, tokens_of_key("gpt-4o", 200)).await;
    assert_eq!(quota_now("2026-11-10T08:00:00.000Z").await, 200);

    // Lapsed to free: the whole calendar month counts again.
    subscribe(&app, org, "pro", "CANCELED", paid).await;
    assert_eq!(quota_now("2026-11-01T00:00:00.000Z").await, 300);
    let receipt = recorded(&app, &key, tokens_of_key("gpt-4o", 50)).await;
    assert_eq!(receipt["quota"]["tokensUsed"], 350);
    assert_eq!(quota_now("2026-11-01T00:00:00.000Z").await, 350);

    // Paid for again in December, inside the same Stripe period.
    app.clock.set(at("2026-12-03T12:00:00Z"));
    subscribe(&app, org, "pro", "ACTIVE", paid).await;
    let receipt = recorded(&app, &key, tokens_of_key("gpt-4o", 10)).await;
    assert_eq!(receipt["quota"]["tokensUsed"], 260);
    assert_eq!(quota_now("2026-11-10T08:00:00.000Z").await, 260);

    // And lapsed again: December's calendar month.
    subscribe(&app, org, "pro", "CANCELED", paid).await;
    assert_eq!(quota_now("2026-12-01T00:00:00.000Z").await, 10);
}

/// When staff put a paid organization back on the free plan, its billing
/// period is gone and the calendar month's segment is written again,
/// although a later segment (the paid period's) lies inside the window:
/// the receipt must count that one too.
#[tokio::test]
async fn a_receipt_counts_every_segment_of_its_window() {
    let app = TestApp::spawn().await;
    app.clock.set(at("2026-11-05T12:00:00Z"));
    let team = team(&app, "segments.test", &[]).await;
    let org: Uuid = team.id.parse().unwrap();
    let (_, key) = create_key(&app, &team.owner.access, &team.id, json!({})).await;
    recorded(&app, &key, tokens_of_key("gpt-4o", 100)).await;
    app.clock.set(at("2026-11-15T12:00:00Z"));
    subscribe(
        &app,
        org,
        "pro",
        "ACTIVE",
        ("2026-11-10T08:00:00Z", "2026-12-10T08:00:00Z"),
    )
    .await;
    recorded(&app, &key, tokens_of_key("gpt-4o", 200)).await;

    let admin = admin_token(&app).await;
    let assigned = app
        .graphql_as(
            &admin,
            "mutation ($org: ID!) { setOrganizationPlan(organizationId: $org, planKey: \"free\") { plan { key } } }",
            json!({ "org": team.id }),
        )
        .await;
    assert_eq!(assigned.data()["setOrganizationPlan"]["plan"]["key"], "free");
    let receipt = recorded(&app, &key, tokens_of_key("gpt-4o", 50)).await;
    assert_eq!(receipt["quota"]["periodStart"], "2026-11-01T00:00:00.000Z");
    assert_eq!(receipt["quota"]["tokensUsed"], 350);
    assert_eq!(received_since(&app, org, "2026-11-01T00:00:00Z").await, 350);
}

fn tokens_of_key(model: &str, prompt: i64) -> Value {
    json!({ "model": model, "promptTokens": prompt, "completionTokens": 0 })
}

#[tokio::test]
async fn reset_usage_restarts_every_counter_but_keeps_the_events() {
    let app = app_mid_month().await;
    set_free_plan(&app, Some(1000), Some(100), None).await;
    let team = team(&app, "reset.test", &[("member", OrgRole::Member)]).await;
    let member = &team.people[0];
    let org = Some(team.id.as_str());
    recorded(&app, &member.access, tokens(&team.id, "gpt-4o", 1200)).await;
    assert_eq!(
        denial(&app, &member.access, org, "gpt-4o").await.as_deref(),
        Some("ORGANIZATION_BUDGET")
    );

    let refused = app
        .graphql_as(&team.owner.access, RESET, json!({ "org": team.id }))
        .await;
    assert_eq!(
        refused.error_code(),
        Some("FORBIDDEN"),
        "resetUsage is for platform ADMINs"
    );
    let admin = admin_token(&app).await;
    let missing = app.graphql_as(&admin, RESET, json!({ "org": Uuid::now_v7() })).await;
    assert_eq!(missing.error_code(), Some("NOT_FOUND"));
    app.clock.advance(Duration::seconds(5));
    let reset = app.graphql_as(&admin, RESET, json!({ "org": team.id })).await;
    let quota = &reset.data()["resetUsage"];
    assert_eq!(quota["tokensUsed"], 0);
    assert_eq!(quota["requestsToday"], 0);
    assert_eq!(quota["remaining"], 1000);
    let reset_at: DateTime<Utc> = quota["periodStart"].as_str().unwrap().parse().unwrap();
    assert!(reset_at > mid_month(), "counters count from the reset");

    assert_eq!(denial(&app, &member.access, org, "gpt-4o").await, None);
    let after = recorded(&app, &member.access, tokens(&team.id, "gpt-4o", 10)).await;
    assert_eq!(after["quota"]["tokensUsed"], 10);
    assert_eq!(after["quota"]["requestsToday"], 1);
    let read = app
        .graphql_as(
            &team.owner.access,
            "query ($id: ID!) { organization(id: $id) { members { user { id } tokensUsed }
                usageEvents { totalCount } usage { totalTokens } } }",
            json!({ "id": team.id }),
        )
        .await;
    let organization = &read.data()["organization"];
    assert_eq!(organization["usageEvents"]["totalCount"], 2, "events stay");
    assert_eq!(organization["usage"][0]["totalTokens"], 1210, "history stays");
    let member_used: Vec<&Value> = organization["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["user"]["id"] == member.user_id.to_string())
        .map(|m| &m["tokensUsed"])
        .collect();
    assert_eq!(member_used, vec![&json!(10)]);

    let audited: Vec<(Option<Uuid>, Option<String>)> = audit_log::table
        .filter(audit_log::action.eq("usage.reset"))
        .select((audit_log::organization_id, audit_log::target_id))
        .load(&mut app.db().await)
        .await
        .unwrap();
    assert_eq!(audited, vec![(Some(team.id.parse().unwrap()), Some(team.id.clone()))]);
}

#[tokio::test]
async fn member_budgets_count_their_own_usage_and_their_keys() {
    let app = app_mid_month().await;
    let team = team(&app, "member-budget.test", &[("member", OrgRole::Member)]).await;
    let member = &team.people[0];
    let org = Some(team.id.as_str());
    let limited = app
        .graphql_as(
            &team.owner.access,
            "mutation ($org: ID!, $user: ID!) { updateMember(organizationId: $org, userId: $user, tokenLimit: 100) { tokenLimit tokensUsed } }",
            json!({ "org": team.id, "user": member.user_id }),
        )
        .await;
    assert_eq!(
        limited.data()["updateMember"],
        json!({ "tokenLimit": 100, "tokensUsed": 0 })
    );
    let (_, secret) = create_key(&app, &member.access, &team.id, json!({})).await;
    recorded(&app, &member.access, tokens(&team.id, "gpt-4o", 60)).await;
    assert_eq!(denial(&app, &member.access, org, "gpt-4o").await, None);
    // The key's usage counts against its creator.
    recorded(
        &app,
        &secret,
        json!({ "model": "gpt-4o", "promptTokens": 40, "completionTokens": 0 }),
    )
    .await;
    assert_eq!(
        denial(&app, &member.access, org, "gpt-4o").await.as_deref(),
        Some("MEMBER_BUDGET")
    );
    assert_eq!(
        denial(&app, &secret, None, "gpt-4o").await.as_deref(),
        Some("MEMBER_BUDGET")
    );
    assert_eq!(
        denial(&app, &team.owner.access, org, "gpt-4o").await,
        None,
        "other members are not limited"
    );
}

#[tokio::test]
async fn key_budgets_come_after_the_organization_and_before_the_member() {
    let app = app_mid_month().await;
    let team = team(&app, "key-budget.test", &[]).await;
    let org = Some(team.id.as_str());
    let (_, limited) = create_key(&app, &team.owner.access, &team.id, json!({ "tokenLimit": 50 })).await;
    let (_, free) = create_key(&app, &team.owner.access, &team.id, json!({})).await;
    let call = json!({ "model": "gpt-4o", "promptTokens": 50, "completionTokens": 0 });
    recorded(&app, &limited, call.clone()).await;
    assert_eq!(
        denial(&app, &limited, None, "gpt-4o").await.as_deref(),
        Some("API_KEY_BUDGET")
    );
    assert_eq!(denial(&app, &free, None, "gpt-4o").await, None);
    assert_eq!(denial(&app, &team.owner.access, org, "gpt-4o").await, None);
    // Member budget spent too: the key's budget is named first.
    diesel::sql_query("UPDATE memberships SET token_limit = 10 WHERE organization_id = $1")
        .bind::<diesel::sql_types::Uuid, _>(team.id.parse::<Uuid>().unwrap())
        .execute(&mut app.db().await)
        .await
        .unwrap();
    assert_eq!(
        denial(&app, &limited, None, "gpt-4o").await.as_deref(),
        Some("API_KEY_BUDGET")
    );
    assert_eq!(
        denial(&app, &free, None, "gpt-4o").await.as_deref(),
        Some("MEMBER_BUDGET")
    );
    // Organization spent: named before the key's.
    set_free_plan(&app, Some(50), None, None).await;
    assert_eq!(
        denial(&app, &limited, None, "gpt-4o").await.as_deref(),
        Some("ORGANIZATION_BUDGET")
    );
}

#[tokio::test]
async fn the_daily_request_limit_counts_events_since_utc_midnight() {
    let app = app_mid_month().await;
    set_free_plan(&app, None, Some(3), None).await;
    let team = team(&app, "daily.test", &[]).await;
    let org = Some(team.id.as_str());
    for _ in 0..2 {
        recorded(&app, &team.owner.access, tokens(&team.id, "gpt-4o", 1)).await;
    }
    assert_eq!(denial(&app, &team.owner.access, org, "gpt-4o").await, None);
    let third = recorded(&app, &team.owner.access, tokens(&team.id, "gpt-4o", 1)).await;
    assert_eq!(third["quota"]["requestsToday"], 3);
    assert_eq!(third["quota"]["dailyRequestLimit"], 3);
    assert_eq!(
        denial(&app, &team.owner.access, org, "gpt-4o").await.as_deref(),
        Some("DAILY_REQUESTS")
    );
    // A back-dated report counts by receive time: still today.
    app.clock.set(at("2026-11-16T00:00:01Z"));
    let owner = app.token_for(team.owner.user_id).await;
    let answer = authorize(&app, &owner, org, "gpt-4o").await;
    assert_eq!(answer["allowed"], true);
    assert_eq!(answer["quota"]["requestsToday"], 0);
    assert_eq!(answer["quota"]["tokensUsed"], 3, "the period goes on");
}

#[tokio::test]
async fn models_are_matched_after_resolving_names_and_disabled_ones_refused_but_recorded() {
    let app = app_mid_month().await;
    let team = team(&app, "models.test", &[]).await;
    let org = Some(team.id.as_str());
    let owner = &team.owner.access;
    let (_, listed) = create_key(
        &app,
        owner,
        &team.id,
        json!({ "allowedModels": ["gpt-4o", "deepseek-v3"] }),
    )
    .await;
    for (model, expected) in [
        ("gpt-4o-2024-08-06", None),
        ("deepseek-chat", None),
        ("DeepSeek-V3", None),
        ("gpt-4o-mini", Some("MODEL_NOT_ALLOWED")),
        ("claude-sonnet-4", Some("MODEL_NOT_ALLOWED")),
        ("mystery-model", Some("MODEL_NOT_ALLOWED")),
    ] {
        assert_eq!(denial(&app, &listed, None, model).await.as_deref(), expected, "{model}");
    }
    assert_eq!(
        denial(&app, owner, org, "mystery-model").await,
        None,
        "unknown models pass without a list"
    );

    let admin = admin_token(&app).await;
    let disable = json!({ "input": { "id": "gpt-4o", "aliases": [], "provider": "openai", "displayName": "GPT-4o",
        "contextWindow": 128000, "inputUsdPerMillionTokens": 2.5, "cachedInputUsdPerMillionTokens": 1.25,
        "outputUsdPerMillionTokens": 10.0, "enabled": false } });
    app.graphql_as(
        &admin,
        "mutation ($input: ModelInput!) { upsertModel(input: $input) { enabled } }",
        disable,
    )
    .await
    .data();
    assert_eq!(
        denial(&app, owner, org, "gpt-4o-2024-08-06").await.as_deref(),
        Some("MODEL_NOT_ALLOWED")
    );
    assert_eq!(
        denial(&app, &listed, None, "gpt-4o").await.as_deref(),
        Some("MODEL_NOT_ALLOWED")
    );
    let still = recorded(&app, owner, tokens(&team.id, "gpt-4o", 1_000_000)).await;
    assert_eq!(still["event"]["priced"], true);
    assert_eq!(still["event"]["costMicroUsd"], 2_500_000);
    // The model comes first: a spent budget is not what the answer names.
    set_free_plan(&app, Some(10), None, None).await;
    assert_eq!(
        denial(&app, owner, org, "gpt-4o").await.as_deref(),
        Some("MODEL_NOT_ALLOWED")
    );
    assert_eq!(
        denial(&app, owner, org, "gpt-5").await.as_deref(),
        Some("ORGANIZATION_BUDGET")
    );
    let empty = app
        .graphql_as(owner, AUTHORIZE, json!({ "org": team.id, "model": " " }))
        .await;
    assert_eq!(empty.error_code(), Some("BAD_USER_INPUT"));
}

#[tokio::test]
async fn requests_per_minute_limit_authorize_usage_per_key_but_never_reports() {
    let app = app_mid_month().await;
    set_free_plan(&app, None, None, Some(2)).await;
    let team = team(&app, "rpm.test", &[("member", OrgRole::Member)]).await;
    let (_, first) = create_key(&app, &team.owner.access, &team.id, json!({})).await;
    let (_, second) = create_key(&app, &team.owner.access, &team.id, json!({})).await;
    for _ in 0..2 {
        assert_eq!(denial(&app, &first, None, "gpt-4o").await, None);
    }
    let limited = app.graphql_as(&first, AUTHORIZE, json!({ "model": "gpt-4o" })).await;
    assert_eq!(limited.error_code(), Some("RATE_LIMITED"));
    let retry = limited.body["errors"][0]["extensions"]["retryAfter"].as_u64().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(
        denial(&app, &second, None, "gpt-4o").await,
        None,
        "each key has its own minute"
    );
    let report = json!({ "model": "gpt-4o", "promptTokens": 1, "completionTokens": 1 });
    for _ in 0..5 {
        recorded(&app, &first, report.clone()).await;
    }
    // A user's token is limited per member of the organization.
    let org = Some(team.id.as_str());
    let member = &team.people[0].access;
    for _ in 0..2 {
        assert_eq!(denial(&app, member, org, "gpt-4o").await, None);
    }
    let limited = app
        .graphql_as(member, AUTHORIZE, json!({ "org": team.id, "model": "gpt-4o" }))
        .await;
    assert_eq!(limited.error_code(), Some("RATE_LIMITED"));
    assert_eq!(denial(&app, &team.owner.access, org, "gpt-4o").await, None);
}

#[tokio::test]
async fn authorize_usage_writes_nothing_and_checks_the_caller() {
    let app = app_mid_month().await;
    let team = team(&app, "nowrite.test", &[("viewer", OrgRole::Viewer)]).await;
    let other = crate::usage::team(&app, "nowrite-other.test", &[]).await;
    let (_, key) = create_key(&app, &team.owner.access, &team.id, json!({})).await;
    let (_, reader) = create_key(&app, &team.owner.access, &team.id, json!({ "scopes": ["USAGE_READ"] })).await;
    for _ in 0..3 {
        authorize(&app, &team.owner.access, Some(&team.id), "gpt-4o").await;
        authorize(&app, &key, None, "gpt-4o").await;
    }
    let mut conn = app.db().await;
    let events: i64 = usage_events::table.count().get_result(&mut conn).await.unwrap();
    let counters: i64 = usage_counters::table.count().get_result(&mut conn).await.unwrap();
    let daily: i64 = usage_daily::table.count().get_result(&mut conn).await.unwrap();
    assert_eq!((events, counters, daily), (0, 0, 0));

    for (token, org, expected) in [
        (&team.owner.access, None, "BAD_USER_INPUT"),
        (&team.people[0].access, Some(&team.id), "FORBIDDEN"),
        (&other.owner.access, Some(&team.id), "NOT_FOUND"),
        (&key, Some(&other.id), "FORBIDDEN"),
        (&reader, None, "FORBIDDEN"),
    ] {
        let response = app
            .graphql_as(token, AUTHORIZE, json!({ "org": org, "model": "gpt-4o" }))
            .await;
        assert_eq!(response.error_code(), Some(expected), "{org:?}");
    }
    let anonymous = app
        .graphql(AUTHORIZE, json!({ "org": team.id, "model": "gpt-4o" }))
        .await;
    assert_eq!(anonymous.error_code(), Some("UNAUTHENTICATED"));
}

/// The next `usage.recorded` message on the bus.
async fn next_update(messages: &mut broadcast::Receiver<BusMessage>) -> UsageUpdateMessage {
    loop {
        let message = tokio::time::timeout(StdDuration::from_secs(5), messages.recv())
            .await
            .expect("a usage message in time")
            .expect("the bus is open");
        if let BusMessage::Event { topic, payload } = message
            && &*topic == "usage.recorded"
        {
            return UsageUpdateMessage::from_json(&payload).unwrap();
        }
    }
}

fn is_threshold_email(message: &ReceivedMessage) -> bool {
    message
        .header("Subject")
        .is_some_and(|s| s.contains("of its token limit"))
}

/// The next `count` threshold emails (other emails, such as address
/// verification, are skipped): (recipient, subject).
async fn threshold_emails(smtp: &FakeSmtp, count: usize) -> Vec<(String, String)> {
    let mut found = Vec::new();
    while found.len() < count {
        let message = smtp.next_message().await;
        if is_threshold_email(&message) {
            found.push((message.to.join(","), message.header("Subject").unwrap()));
        }
    }
    found.sort();
    found
}

#[tokio::test]
async fn thresholds_are_announced_once_per_period_and_emailed_to_owners_and_admins() {
    let smtp = FakeSmtp::start().await;
    let app = TestApp::spawn_with(TestAppOptions {
        vars: vec![("SMTP_URL".into(), format!("smtp://127.0.0.1:{}", smtp.port()))],
        ..Default::default()
    })
    .await;
    app.clock.set(mid_month());
    set_free_plan(&app, Some(1000), None, None).await;
    let team = team(
        &app,
        "alerts.test",
        &[("admin", OrgRole::Admin), ("member", OrgRole::Member)],
    )
    .await;
    let (mut messages, _) = app.state.events().subscribe();
    let member = &team.people[1].access;
    let mut crossed = Vec::new();
    for (n, amount) in [400, 100, 300, 100, 100, 50].into_iter().enumerate() {
        let mut input = tokens(&team.id, "gpt-4o", amount);
        input["requestId"] = json!(format!("call-{n}"));
        let receipt = recorded(&app, member, input).await;
        let update = next_update(&mut messages).await;
        assert_eq!(update.event.id.to_string(), receipt["event"]["id"].as_str().unwrap());
        assert_eq!(json!(update.quota.tokens_used), receipt["quota"]["tokensUsed"]);
        crossed.push(update.threshold_crossed);
    }
    assert_eq!(crossed, vec![None, Some(50), Some(80), None, Some(100), None]);
    // A repeat publishes nothing and announces nothing.
    let mut repeat = tokens(&team.id, "gpt-4o", 100);
    repeat["requestId"] = json!("call-4");
    assert_eq!(recorded(&app, member, repeat).await["duplicate"], true);

    let emails = threshold_emails(&smtp, 6).await;
    let owner = "owner@alerts.test".to_owned();
    let admin = "admin@alerts.test".to_owned();
    let subject = |percent: u32| format!("Team has used {percent}% of its token limit");
    let mut expected: Vec<(String, String)> = [50, 80, 100]
        .into_iter()
        .flat_map(|p| [(owner.clone(), subject(p)), (admin.clone(), subject(p))])
        .collect();
    expected.sort();
    assert_eq!(emails, expected);

    // A reset starts thresholds afresh; one event crossing several announces the highest.
    let staff = admin_token(&app).await;
    app.clock.advance(Duration::seconds(1));
    app.graphql_as(&staff, RESET, json!({ "org": team.id })).await.data();
    recorded(&app, member, tokens(&team.id, "gpt-4o", 900)).await;
    assert_eq!(next_update(&mut messages).await.threshold_crossed, Some(80));
    let emails = threshold_emails(&smtp, 2).await;
    assert_eq!(emails, vec![(admin, subject(80)), (owner, subject(80))]);
    let rows: i64 = usage_thresholds::table
        .filter(usage_thresholds::organization_id.eq(team.id.parse::<Uuid>().unwrap()))
        .count()
        .get_result(&mut app.db().await)
        .await
        .unwrap();
    assert_eq!(rows, 3 + 2, "50, 80 and 100 before the reset; 50 and 80 after");
}

#[tokio::test]
async fn member_totals_over_a_list_take_the_same_statements_whatever_its_length() {
    let app = app_mid_month().await;
    let small = team(&app, "small.test", &[]).await;
    let big = team(
        &app,
        "big.test",
        &[
            ("a", OrgRole::Member),
            ("b", OrgRole::Member),
            ("c", OrgRole::Viewer),
            ("d", OrgRole::Admin),
        ],
    )
    .await;
    for person in &big.people[..2] {
        recorded(&app, &person.access, tokens(&big.id, "gpt-4o", 10)).await;
    }
    recorded(&app, &small.owner.access, tokens(&small.id, "gpt-4o", 10)).await;
    const MEMBERS: &str = "query ($id: ID!) { organization(id: $id) { quota { tokensUsed }
        members { tokensUsed } apiKeys { tokensUsed } } }";
    let statements = |token: String, id: String| {
        let app = &app;
        async move {
            let before = app.query_count();
            let response = app.graphql_as(&token, MEMBERS, json!({ "id": id })).await;
            (
                app.query_count() - before,
                response.data()["organization"]["members"].clone(),
            )
        }
    };
    // Warm up (the first request of a session resolves it from the database).
    statements(small.owner.access.clone(), small.id.clone()).await;
    statements(big.owner.access.clone(), big.id.clone()).await;
    let (few, small_members) = statements(small.owner.access.clone(), small.id.clone()).await;
    let (many, big_members) = statements(big.owner.access.clone(), big.id.clone()).await;
    assert_eq!(small_members.as_array().unwrap().len(), 1);
    assert_eq!(big_members.as_array().unwrap().len(), 5);
    let used: i64 = big_members
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["tokensUsed"].as_i64().unwrap())
        .sum();
    assert_eq!(used, 20);
    assert_eq!(few, many, "one batch per level, not one query per member");
}
