//! recordUsage end to end: who may report for which organization, the
//! checks on numbers, pricing, idempotency under concurrency, counters
//! that equal their events across instances, and reading usage back
//! (buckets, event pages, per-key and per-member totals).
//!
//! The helpers at the top are shared with `usage_batch` and `quota`.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use futures_util::future::join_all;
use serde_json::{Value, json};
use tollgate::{
    auth::{roles::OrgRole, users::Role},
    db::schema::{plans, usage_counters, usage_daily, usage_events},
    orgs::{model as orgs, model::MembershipRow},
};
use uuid::Uuid;

use crate::harness::{
    GqlResponse, TestApp, create_user,
    people::{SignedIn, register, register_verified, verify_caller},
};

/// Everything a receipt holds.
pub const RECORD: &str = "mutation ($input: RecordUsageInput!) { recordUsage(input: $input) { duplicate
    event { id model promptTokens cachedTokens completionTokens totalTokens costMicroUsd priced requestId metadata
            occurredAt createdAt user { id } apiKey { id } organization { id } }
    quota { periodStart periodEnd tokensUsed tokenLimit remaining exceeded requestsToday dailyRequestLimit } } }";

/// The middle of a month, far from period and day boundaries.
pub fn mid_month() -> DateTime<Utc> {
    "2026-11-15T12:00:00Z".parse().unwrap()
}

/// An app whose clock reads [`mid_month`].
pub async fn app_mid_month() -> TestApp {
    let app = TestApp::spawn().await;
    app.clock.set(mid_month());
    app
}

/// A team organization owned by a new person, with more people in the
/// given roles (inserted directly: plan member limits do not matter here).
pub struct Team {
    /// The organization's id.
    pub id: String,
    /// Its owner.
    pub owner: SignedIn,
    /// The others, in the order asked for.
    pub people: Vec<SignedIn>,
}

/// Creates a [`Team`]; emails are `<name>@<domain>`.
pub async fn team(app: &TestApp, domain: &str, roles: &[(&str, OrgRole)]) -> Team {
    let owner = register_verified(app, &format!("owner@{domain}")).await;
    let created = app
        .graphql_as(
            &owner.access,
            "mutation { createOrganization(input: { name: \"Team\" }) { id } }",
            json!({}),
        )
        .await;
    let id = created.data()["createOrganization"]["id"].as_str().unwrap().to_owned();
    let mut people = Vec::new();
    for (name, role) in roles {
        let person = register(app, &format!("{name}@{domain}")).await;
        let now = app.state.now();
        let membership = MembershipRow {
            organization_id: id.parse().unwrap(),
            user_id: person.user_id,
            role: *role,
            token_limit: None,
            created_at: now,
            updated_at: now,
        };
        let mut conn = app.db().await;
        orgs::insert_membership(&mut conn, &membership).await.unwrap();
        people.push(person);
    }
    Team { id, owner, people }
}

/// Reports one call with `token`.
pub async fn record(app: &TestApp, token: &str, input: Value) -> GqlResponse {
    app.graphql_as(token, RECORD, json!({ "input": input })).await
}

/// Reports one call and returns the receipt, asserting success.
pub async fn recorded(app: &TestApp, token: &str, input: Value) -> Value {
    record(app, token, input).await.data()["recordUsage"].clone()
}

/// A key of `organization` created by the holder of `token`; returns (id, secret).
pub async fn create_key(app: &TestApp, token: &str, organization: &str, extra: Value) -> (String, String) {
    verify_caller(app, token).await;
    let mut input = json!({ "organizationId": organization, "name": "tool" });
    if let (Some(input), Some(extra)) = (input.as_object_mut(), extra.as_object()) {
        input.extend(extra.clone());
    }
    let response = app
        .graphql_as(
            token,
            "mutation ($input: CreateApiKeyInput!) { createApiKey(input: $input) { secret apiKey { id } } }",
            json!({ "input": input }),
        )
        .await;
    let created = &response.data()["createApiKey"];
    (
        created["apiKey"]["id"].as_str().unwrap().to_owned(),
        created["secret"].as_str().unwrap().to_owned(),
    )
}

/// Sets the free plan's limits (every organization of a test starts on it).
pub async fn set_free_plan(app: &TestApp, tokens: Option<i64>, daily: Option<i32>, per_minute: Option<i32>) {
    diesel::update(plans::table.filter(plans::key.eq("free")))
        .set((
            plans::monthly_token_limit.eq(tokens),
            plans::daily_request_limit.eq(daily),
            plans::requests_per_minute.eq(per_minute),
        ))
        .execute(&mut app.db().await)
        .await
        .unwrap();
}

/// A platform ADMIN's access token.
pub async fn admin_token(app: &TestApp) -> String {
    let admin = create_user(app, "admin@staff.test", Role::Admin).await;
    app.token_for(admin).await
}

/// `extensions.field` of the first error.
pub fn field_of(response: &GqlResponse) -> Option<&str> {
    response.body["errors"][0]["extensions"]["field"].as_str()
}

fn call(organization: &str, model: &str, prompt: i64, completion: i64) -> Value {
    json!({ "organizationId": organization, "model": model, "promptTokens": prompt, "completionTokens": completion })
}

/// Every counter row of an organization: (kind, subject) -> (tokens, requests).
async fn counters(app: &TestApp, organization: Uuid) -> HashMap<(String, Uuid), (i64, i64)> {
    let rows: Vec<(String, Uuid, i64, i64)> = usage_counters::table
        .filter(usage_counters::organization_id.eq(organization))
        .select((
            usage_counters::subject_kind,
            usage_counters::subject_id,
            usage_counters::tokens,
            usage_counters::requests,
        ))
        .load(&mut app.db().await)
        .await
        .unwrap();
    let mut totals = HashMap::new();
    for (kind, subject, tokens, requests) in rows {
        let entry = totals.entry((kind, subject)).or_insert((0, 0));
        entry.0 += tokens;
        entry.1 += requests;
    }
    totals
}

/// A stored event: (api key, user, total tokens, cost).
type Stored = (Option<Uuid>, Option<Uuid>, i64, i64);

/// The organization's stored events.
async fn events(app: &TestApp, organization: Uuid) -> Vec<Stored> {
    let rows: Vec<(Option<Uuid>, Option<Uuid>, i32, i64)> = usage_events::table
        .filter(usage_events::organization_id.eq(organization))
        .select((
            usage_events::api_key_id,
            usage_events::user_id,
            usage_events::total_tokens,
            usage_events::cost_micro_usd,
        ))
        .load(&mut app.db().await)
        .await
        .unwrap();
    rows.into_iter().map(|(k, u, t, c)| (k, u, i64::from(t), c)).collect()
}

#[tokio::test]
async fn a_member_records_usage_priced_and_counted_against_them() {
    let app = app_mid_month().await;
    let team = team(&app, "record.test", &[("member", OrgRole::Member)]).await;
    let member = &team.people[0];
    let receipt = recorded(
        &app,
        &member.access,
        json!({ "organizationId": team.id, "model": "gpt-4o", "promptTokens": 2000, "cachedTokens": 1000,
                "completionTokens": 100, "requestId": "r-1", "metadata": { "feature": "chat" } }),
    )
    .await;
    let event = &receipt["event"];
    assert_eq!(receipt["duplicate"], false);
    assert_eq!(event["model"], "gpt-4o");
    assert_eq!(event["totalTokens"], 2100);
    // 1000 uncached x $2.50 + 1000 cached x $1.25 + 100 x $10 per Mtok.
    assert_eq!(event["costMicroUsd"], 4750);
    assert_eq!(event["priced"], true);
    assert_eq!(event["requestId"], "r-1");
    assert_eq!(event["metadata"], json!({ "feature": "chat" }));
    assert_eq!(event["user"]["id"], member.user_id.to_string());
    assert_eq!(event["apiKey"], Value::Null);
    assert_eq!(event["organization"]["id"], team.id);
    assert_eq!(event["occurredAt"], event["createdAt"], "occurredAt defaults to now");
    let quota = &receipt["quota"];
    assert_eq!(quota["tokensUsed"], 2100);
    assert_eq!(quota["requestsToday"], 1);
    assert_eq!(quota["tokenLimit"], 1_000_000);
    assert_eq!(quota["remaining"], 1_000_000 - 2100);
    assert_eq!(quota["periodStart"], "2026-11-01T00:00:00.000Z");
    assert_eq!(quota["periodEnd"], "2026-12-01T00:00:00.000Z");

    let org: Uuid = team.id.parse().unwrap();
    let counters = counters(&app, org).await;
    assert_eq!(counters[&("ORGANIZATION".into(), org)], (2100, 1));
    assert_eq!(counters[&("MEMBER".into(), member.user_id)], (2100, 1));
    assert_eq!(counters[&("DAY".into(), org)], (2100, 1));
    assert!(!counters.keys().any(|(kind, _)| kind == "API_KEY"));

    let members = app
        .graphql_as(
            &team.owner.access,
            "query ($id: ID!) { organization(id: $id) { quota { tokensUsed requestsToday }
                members { user { id } tokensUsed } } }",
            json!({ "id": team.id }),
        )
        .await;
    let organization = &members.data()["organization"];
    assert_eq!(organization["quota"]["tokensUsed"], 2100);
    for membership in organization["members"].as_array().unwrap() {
        let expected = if membership["user"]["id"] == member.user_id.to_string() {
            2100
        } else {
            0
        };
        assert_eq!(membership["tokensUsed"], expected);
    }
}

#[tokio::test]
async fn user_tokens_need_the_organization_and_a_member_role() {
    let app = app_mid_month().await;
    let team = team(&app, "who.test", &[("viewer", OrgRole::Viewer)]).await;
    let outsider = register(&app, "outsider@who.test").await;
    let support = create_user(&app, "support@staff.test", Role::Support).await;
    let support = app.token_for(support).await;
    let input = call(&team.id, "gpt-4o", 10, 10);

    let missing = record(
        &app,
        &team.owner.access,
        json!({ "model": "gpt-4o", "promptTokens": 1, "completionTokens": 1 }),
    )
    .await;
    assert_eq!(missing.error_code(), Some("BAD_USER_INPUT"));
    assert_eq!(field_of(&missing), Some("organizationId"));
    assert_eq!(
        record(&app, &outsider.access, input.clone()).await.error_code(),
        Some("NOT_FOUND")
    );
    let unknown = call(&Uuid::now_v7().to_string(), "gpt-4o", 1, 1);
    assert_eq!(
        record(&app, &outsider.access, unknown).await.error_code(),
        Some("NOT_FOUND")
    );
    assert_eq!(
        record(&app, &team.people[0].access, input.clone()).await.error_code(),
        Some("FORBIDDEN"),
        "viewers read usage but do not report it"
    );
    assert_eq!(
        record(&app, &support, input.clone()).await.error_code(),
        Some("FORBIDDEN")
    );
    let anonymous = app.graphql(RECORD, json!({ "input": input })).await;
    assert_eq!(anonymous.error_code(), Some("UNAUTHENTICATED"));
    assert!(events(&app, team.id.parse().unwrap()).await.is_empty());
}

#[tokio::test]
async fn impossible_numbers_are_refused_naming_their_field() {
    let app = app_mid_month().await;
    let org = team(&app, "checks-team.test", &[]).await;
    let token = &org.owner.access;
    let now = app.state.now();
    let base = call(&org.id, "gpt-4o", 100, 10);
    let with = |key: &str, value: Value| {
        let mut input = base.clone();
        input[key] = value;
        input
    };
    for (input, field) in [
        (with("promptTokens", json!(-1)), "promptTokens"),
        (with("completionTokens", json!(-5)), "completionTokens"),
        (with("cachedTokens", json!(-1)), "cachedTokens"),
        (with("promptTokens", json!(10_000_001)), "promptTokens"),
        (with("completionTokens", json!(10_000_001)), "completionTokens"),
        (with("cachedTokens", json!(101)), "cachedTokens"),
        (with("model", json!("")), "model"),
        (with("model", json!("m".repeat(201))), "model"),
        (with("requestId", json!("")), "requestId"),
        (with("requestId", json!("r".repeat(201))), "requestId"),
        (
            with("occurredAt", json!((now - Duration::days(36)).to_rfc3339())),
            "occurredAt",
        ),
        (
            with("occurredAt", json!((now + Duration::minutes(6)).to_rfc3339())),
            "occurredAt",
        ),
        (with("metadata", json!({ "blob": "x".repeat(4100) })), "metadata"),
    ] {
        let response = record(&app, token, input.clone()).await;
        assert_eq!(response.error_code(), Some("BAD_USER_INPUT"), "{input}");
        assert_eq!(field_of(&response), Some(field), "{input}");
    }
    assert!(
        events(&app, org.id.parse().unwrap()).await.is_empty(),
        "nothing refused is stored"
    );

    // The edges themselves are fine: 10M tokens, 34 days back, 4 minutes ahead, 200 characters.
    for input in [
        with("completionTokens", json!(10_000_000)),
        with("occurredAt", json!((now - Duration::days(34)).to_rfc3339())),
        with("occurredAt", json!((now + Duration::minutes(4)).to_rfc3339())),
        with("model", json!("m".repeat(200))),
        with("requestId", json!("r".repeat(200))),
    ] {
        record(&app, token, input).await.data();
    }
}

#[tokio::test]
async fn prices_resolve_dated_names_and_aliases_round_half_up_and_never_change_afterwards() {
    let app = app_mid_month().await;
    let org = team(&app, "prices.test", &[]).await;
    let token = &org.owner.access;
    let cost = |receipt: &Value| receipt["event"]["costMicroUsd"].as_i64().unwrap();

    // A dated version prices as its model; cached tokens at the cached price.
    let dated = recorded(
        &app,
        token,
        json!({ "organizationId": org.id, "model": "GPT-4o-2024-08-06",
        "promptTokens": 1_000_000, "cachedTokens": 400_000, "completionTokens": 0 }),
    )
    .await;
    assert_eq!(
        cost(&dated),
        600_000 * 2_500_000 / 1_000_000 + 400_000 * 1_250_000 / 1_000_000
    );
    assert_eq!(
        dated["event"]["model"], "GPT-4o-2024-08-06",
        "the name is kept as reported"
    );
    // The longest id wins: gpt-4o-mini, not gpt-4o.
    let mini = recorded(&app, token, call(&org.id, "gpt-4o-mini-2024-07-18", 1_000_000, 0)).await;
    assert_eq!(cost(&mini), 150_000);
    // Seeded alias and the aliases added for common alternate names.
    let alias = recorded(&app, token, call(&org.id, "deepseek-v3", 1_000_000, 1_000_000)).await;
    assert_eq!(cost(&alias), 270_000 + 1_100_000);
    let sonnet = recorded(&app, token, call(&org.id, "claude-sonnet-4-0", 0, 1_000)).await;
    assert_eq!(cost(&sonnet), 15_000);
    let routed = recorded(&app, token, call(&org.id, "anthropic/claude-sonnet-4.5", 0, 1_000)).await;
    assert_eq!(cost(&routed), 15_000);
    // Unknown: kept at cost 0, not priced.
    let unknown = recorded(&app, token, call(&org.id, "my-local-llama", 5_000, 5_000)).await;
    assert_eq!((cost(&unknown), &unknown["event"]["priced"]), (0, &json!(false)));
    assert!(
        unknown["quota"]["tokensUsed"].as_i64().unwrap() >= 10_000,
        "unpriced tokens still count"
    );

    // Half a micro-dollar rounds up: $0.10 per Mtok x 5 tokens = 0.5.
    let admin = admin_token(&app).await;
    let upsert = "mutation ($input: ModelInput!) { upsertModel(input: $input) { id inputUsdPerMillionTokens } }";
    let model = json!({ "id": "tenth", "provider": "test", "displayName": "Tenth",
        "inputUsdPerMillionTokens": 0.1, "outputUsdPerMillionTokens": 0.1 });
    app.graphql_as(&admin, upsert, json!({ "input": model })).await.data();
    assert_eq!(cost(&recorded(&app, token, call(&org.id, "tenth", 5, 0)).await), 1);
    assert_eq!(cost(&recorded(&app, token, call(&org.id, "tenth", 4, 0)).await), 0);
    let before = recorded(&app, token, call(&org.id, "tenth", 10_000_000, 0)).await;
    assert_eq!(cost(&before), 1_000_000);

    // A price change prices later events only.
    let mut dearer = model.clone();
    dearer["inputUsdPerMillionTokens"] = json!(1.0);
    app.graphql_as(&admin, upsert, json!({ "input": dearer })).await.data();
    assert_eq!(
        cost(&recorded(&app, token, call(&org.id, "tenth", 10_000_000, 0)).await),
        10_000_000
    );
    let stored: i64 = usage_events::table
        .find(Uuid::parse_str(before["event"]["id"].as_str().unwrap()).unwrap())
        .select(usage_events::cost_micro_usd)
        .first(&mut app.db().await)
        .await
        .unwrap();
    assert_eq!(stored, 1_000_000);
}

#[tokio::test]
async fn a_repeated_request_id_counts_once_and_different_numbers_conflict() {
    let app = app_mid_month().await;
    let org = team(&app, "idem.test", &[]).await;
    let token = &org.owner.access;
    let mut input = call(&org.id, "gpt-4o", 100, 10);
    input["requestId"] = json!("call-1");
    let first = recorded(&app, token, input.clone()).await;
    let again = recorded(&app, token, input.clone()).await;
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["event"]["id"], first["event"]["id"]);
    assert_eq!(again["quota"]["tokensUsed"], 110, "nothing counted twice");
    let mut different = input.clone();
    different["completionTokens"] = json!(11);
    assert_eq!(record(&app, token, different).await.error_code(), Some("CONFLICT"));
    // The same requestId in another organization is another call.
    let other = team(&app, "idem-other.test", &[]).await;
    input["organizationId"] = json!(other.id);
    assert_eq!(recorded(&app, &other.owner.access, input).await["duplicate"], false);
    assert_eq!(events(&app, org.id.parse().unwrap()).await.len(), 1);
}

/// The requestId is checked before the numbers: a retry after the
/// original's occurredAt has aged out of the window is still a duplicate.
#[tokio::test]
async fn a_late_retry_of_a_recorded_call_is_a_duplicate() {
    let app = app_mid_month().await;
    let org = team(&app, "late.test", &[]).await;
    // A key, since the owner's access token would expire meanwhile.
    let (_, token) = create_key(&app, &org.owner.access, &org.id, json!({})).await;
    let token = &token;
    let mut input = call(&org.id, "gpt-4o", 100, 10);
    input.as_object_mut().unwrap().remove("organizationId");
    input["requestId"] = json!("late-1");
    input["occurredAt"] = json!((mid_month() - Duration::days(34)).to_rfc3339());
    let first = recorded(&app, token, input.clone()).await;
    app.clock.advance(Duration::days(3));
    let again = recorded(&app, token, input.clone()).await;
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["event"]["id"], first["event"]["id"]);
    let mut unknown = input;
    unknown["requestId"] = json!("late-2");
    assert_eq!(field_of(&record(&app, token, unknown).await), Some("occurredAt"));
}

#[tokio::test]
async fn a_hundred_concurrent_repeats_count_once_and_answer_one_event() {
    let app = app_mid_month().await;
    let org = team(&app, "race.test", &[]).await;
    let mut input = call(&org.id, "gpt-4o", 1000, 500);
    input["requestId"] = json!("the-one");
    let receipts = join_all((0..100).map(|_| record(&app, &org.owner.access, input.clone()))).await;
    let receipts: Vec<&Value> = receipts.iter().map(|r| &r.data()["recordUsage"]).collect();
    let ids: std::collections::HashSet<&str> = receipts.iter().map(|r| r["event"]["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 1, "every answer names the same event");
    assert_eq!(receipts.iter().filter(|r| r["duplicate"] == false).count(), 1);
    let org_id: Uuid = org.id.parse().unwrap();
    assert_eq!(events(&app, org_id).await.len(), 1);
    assert_eq!(
        counters(&app, org_id).await[&("ORGANIZATION".into(), org_id)],
        (1500, 1)
    );
}

#[tokio::test]
async fn two_hundred_concurrent_reports_on_two_instances_leave_counters_equal_to_their_events() {
    let app = app_mid_month().await;
    let sibling = app.spawn_sibling().await;
    sibling.clock.set(mid_month());
    let team = team(&app, "load.test", &[("member", OrgRole::Member)]).await;
    let member = &team.people[0];
    let (key_id, secret) = create_key(&app, &team.owner.access, &team.id, json!({})).await;
    let models = ["gpt-4o", "claude-sonnet-4-20250514", "unknown-model", "gpt-5-mini"];
    let calls = (0..200).map(|n: i64| {
        let instance = if n % 2 == 0 { &app } else { &sibling };
        let token = match n % 3 {
            0 => &team.owner.access,
            1 => &member.access,
            _ => &secret,
        };
        let mut input = json!({ "model": models[(n % 4) as usize], "promptTokens": 100 + n,
            "cachedTokens": n % 50, "completionTokens": 2 * n });
        if n % 3 != 2 {
            input["organizationId"] = json!(team.id);
        }
        async move { record(instance, token, input).await }
    });
    for response in join_all(calls).await {
        response.data();
    }

    let org: Uuid = team.id.parse().unwrap();
    let key: Uuid = key_id.parse().unwrap();
    let stored = events(&app, org).await;
    assert_eq!(stored.len(), 200);
    let sum = |pick: &dyn Fn(&Stored) -> bool| {
        let matching: Vec<_> = stored.iter().filter(|e| pick(e)).collect();
        (matching.iter().map(|e| e.2).sum::<i64>(), matching.len() as i64)
    };
    let counters = counters(&app, org).await;
    assert_eq!(counters[&("ORGANIZATION".into(), org)], sum(&|_| true));
    assert_eq!(counters[&("DAY".into(), org)], sum(&|_| true));
    assert_eq!(counters[&("API_KEY".into(), key)], sum(&|e| e.0 == Some(key)));
    // Key usage counts against the key's creator, the owner.
    assert_eq!(
        counters[&("MEMBER".into(), team.owner.user_id)],
        sum(&|e| e.1 == Some(team.owner.user_id))
    );
    assert_eq!(
        counters[&("MEMBER".into(), member.user_id)],
        sum(&|e| e.1 == Some(member.user_id))
    );
    assert_eq!(sum(&|e| e.0 == Some(key)).1, 66);

    // The rollup holds the same totals.
    let (tokens, requests, cost): (Option<i64>, Option<i64>, Option<i64>) = usage_daily::table
        .filter(usage_daily::organization_id.eq(org))
        .select((
            diesel::dsl::sql::<diesel::sql_types::Nullable<diesel::sql_types::BigInt>>("SUM(total_tokens)::bigint"),
            diesel::dsl::sql::<diesel::sql_types::Nullable<diesel::sql_types::BigInt>>("SUM(requests)::bigint"),
            diesel::dsl::sql::<diesel::sql_types::Nullable<diesel::sql_types::BigInt>>("SUM(cost_micro_usd)::bigint"),
        ))
        .first(&mut app.db().await)
        .await
        .unwrap();
    assert_eq!((tokens, requests), (Some(sum(&|_| true).0), Some(200)));
    assert_eq!(cost, Some(stored.iter().map(|e| e.3).sum::<i64>()));
}

#[tokio::test]
async fn a_reset_racing_reports_leaves_the_new_window_equal_to_the_events_after_it() {
    let app = app_mid_month().await;
    let team = team(&app, "reset-race.test", &[]).await;
    let admin = admin_token(&app).await;
    let org: Uuid = team.id.parse().unwrap();
    let reports = (0..60).map(|n: i64| {
        let input = call(&team.id, "gpt-4o", 10 + n, 1);
        let app = &app;
        let token = &team.owner.access;
        async move { record(app, token, input).await }
    });
    let reset = async {
        tokio::task::yield_now().await;
        app.graphql_as(
            &admin,
            "mutation ($org: ID!) { resetUsage(organizationId: $org) { tokensUsed } }",
            json!({ "org": team.id }),
        )
        .await
    };
    let (responses, reset) = tokio::join!(join_all(reports), reset);
    reset.data();
    for response in responses {
        response.data();
    }

    // Whatever the interleaving, the counters after the reset hold exactly
    // the events received at or after it, and the quota says so.
    let reset_at: Option<DateTime<Utc>> = tollgate::db::schema::organizations::table
        .find(org)
        .select(tollgate::db::schema::organizations::usage_reset_at)
        .first(&mut app.db().await)
        .await
        .unwrap();
    let reset_at = reset_at.expect("the reset was stored");
    let after: Vec<i32> = usage_events::table
        .filter(usage_events::organization_id.eq(org))
        .filter(usage_events::created_at.ge(reset_at))
        .select(usage_events::total_tokens)
        .load(&mut app.db().await)
        .await
        .unwrap();
    let expected: i64 = after.iter().map(|t| i64::from(*t)).sum();
    let quota = app
        .graphql_as(
            &team.owner.access,
            "query ($org: ID!) { organization(id: $org) { quota { tokensUsed requestsToday } } }",
            json!({ "org": team.id }),
        )
        .await;
    let quota = &quota.data()["organization"]["quota"];
    assert_eq!(quota["tokensUsed"], expected);
    assert_eq!(quota["requestsToday"], after.len());
}

#[tokio::test]
async fn keys_report_for_their_own_organization_and_count_against_their_creator() {
    let app = app_mid_month().await;
    let team = team(&app, "keys.test", &[("member", OrgRole::Member)]).await;
    let member = &team.people[0];
    let other = crate::usage::team(&app, "keys-other.test", &[]).await;
    let (key_id, secret) = create_key(&app, &member.access, &team.id, json!({})).await;
    let (_, reader) = create_key(&app, &team.owner.access, &team.id, json!({ "scopes": ["USAGE_READ"] })).await;
    let input = json!({ "model": "gpt-4o", "promptTokens": 300, "completionTokens": 30 });

    let receipt = recorded(&app, &secret, input.clone()).await;
    assert_eq!(receipt["event"]["organization"]["id"], team.id);
    assert_eq!(
        receipt["event"]["user"],
        Value::Null,
        "a key without ORG_READ does not see members"
    );
    let mut own = input.clone();
    own["organizationId"] = json!(team.id);
    recorded(&app, &secret, own).await;
    let mut foreign = input.clone();
    foreign["organizationId"] = json!(other.id);
    assert_eq!(record(&app, &secret, foreign).await.error_code(), Some("FORBIDDEN"));
    let mut nonsense = input.clone();
    nonsense["organizationId"] = json!("not-an-id");
    assert_eq!(record(&app, &secret, nonsense).await.error_code(), Some("FORBIDDEN"));
    assert_eq!(
        record(&app, &reader, input.clone()).await.error_code(),
        Some("FORBIDDEN"),
        "USAGE_WRITE needed"
    );

    // The member who created the key sees it on the event and the totals.
    let seen = app
        .graphql_as(
            &member.access,
            "query ($id: ID!) { organization(id: $id) { usageEvents { nodes { apiKey { id } user { id } } }
                apiKeys { id tokensUsed } members { user { id } tokensUsed } } }",
            json!({ "id": team.id }),
        )
        .await;
    let organization = &seen.data()["organization"];
    for event in organization["usageEvents"]["nodes"].as_array().unwrap() {
        assert_eq!(event["apiKey"]["id"], key_id);
        assert_eq!(event["user"]["id"], member.user_id.to_string());
    }
    assert_eq!(organization["apiKeys"], json!([{ "id": key_id, "tokensUsed": 660 }]));
    for membership in organization["members"].as_array().unwrap() {
        let expected = if membership["user"]["id"] == member.user_id.to_string() {
            660
        } else {
            0
        };
        assert_eq!(membership["tokensUsed"], expected);
    }
    // apiKeyInfo carries the organization's quota, whatever the key's scopes.
    let info = app
        .graphql_as(&reader, "{ apiKeyInfo { quota { tokensUsed tokenLimit } } }", json!({}))
        .await;
    assert_eq!(
        info.data()["apiKeyInfo"]["quota"],
        json!({ "tokensUsed": 660, "tokenLimit": 1_000_000 })
    );
}

#[tokio::test]
async fn usage_is_grouped_by_day_model_key_and_user() {
    let app = app_mid_month().await;
    let team = team(&app, "buckets.test", &[("member", OrgRole::Member)]).await;
    let member = &team.people[0];
    let (key_id, secret) = create_key(&app, &team.owner.access, &team.id, json!({})).await;
    let now = app.state.now();
    let day = |days_ago: i64| (now - Duration::days(days_ago)).to_rfc3339();
    let report = |model: &str, tokens: i64, when: String| json!({ "organizationId": team.id, "model": model, "promptTokens": tokens, "completionTokens": 0, "occurredAt": when });
    recorded(&app, &team.owner.access, report("gpt-4o-2024-08-06", 1_000, day(0))).await;
    recorded(&app, &member.access, report("gpt-4o", 2_000, day(1))).await;
    recorded(&app, &member.access, report("mystery", 4_000, day(1))).await;
    recorded(&app, &secret, report("gpt-4o", 8_000, day(20))).await;

    let usage = |group: &str, from: Option<String>, to: Option<String>| {
        let app = &app;
        let token = team.owner.access.clone();
        let id = team.id.clone();
        let group = group.to_owned();
        async move {
            app.graphql_as(
                &token,
                "query ($id: ID!, $group: UsageGroupBy!, $from: DateTime, $to: DateTime) { organization(id: $id) {
                    usage(groupBy: $group, from: $from, to: $to) { key totalTokens promptTokens completionTokens requests costMicroUsd } } }",
                json!({ "id": id, "group": group, "from": from, "to": to }),
            )
            .await
        }
    };
    let buckets = |response: &GqlResponse| -> Vec<(String, i64, i64)> {
        response.data()["organization"]["usage"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                (
                    b["key"].as_str().unwrap().to_owned(),
                    b["totalTokens"].as_i64().unwrap(),
                    b["requests"].as_i64().unwrap(),
                )
            })
            .collect()
    };
    let date = |days_ago: i64| (now - Duration::days(days_ago)).format("%Y-%m-%d").to_string();
    // Default range: the days of the current period (November), by day ascending.
    let by_day = buckets(&usage("DAY", None, None).await);
    assert_eq!(
        by_day,
        vec![(date(1), 6_000, 2), (date(0), 1_000, 1)],
        "the event 20 days back lies in October"
    );
    let wide = buckets(&usage("DAY", Some(day(30)), Some(day(0))).await);
    assert_eq!(wide[0], (date(20), 8_000, 1));
    let by_model = buckets(&usage("MODEL", Some(day(30)), None).await);
    assert_eq!(
        by_model,
        vec![("gpt-4o".into(), 11_000, 3), ("mystery".into(), 4_000, 1)]
    );
    let by_key = buckets(&usage("API_KEY", Some(day(30)), None).await);
    assert_eq!(by_key, vec![(key_id.clone(), 8_000, 1), ("none".into(), 7_000, 3)]);
    let by_user = buckets(&usage("USER", Some(day(30)), None).await);
    assert_eq!(
        by_user,
        vec![
            (team.owner.user_id.to_string(), 9_000, 2),
            (member.user_id.to_string(), 6_000, 2)
        ]
    );
    // from/to are whole days: the last second of yesterday still covers it.
    let yesterday_end = format!("{}T23:59:59Z", date(1));
    let one_day = buckets(&usage("DAY", Some(format!("{}T23:00:00Z", date(1))), Some(yesterday_end)).await);
    assert_eq!(one_day, vec![(date(1), 6_000, 2)]);

    let backwards = usage("DAY", Some(day(0)), Some(day(2))).await;
    assert_eq!(backwards.error_code(), Some("BAD_USER_INPUT"));
    let too_long = usage("DAY", Some((now - Duration::days(500)).to_rfc3339()), None).await;
    assert_eq!(too_long.error_code(), Some("BAD_USER_INPUT"));
}

#[tokio::test]
async fn usage_events_page_newest_first_with_filters() {
    let app = app_mid_month().await;
    let team = team(&app, "events.test", &[("member", OrgRole::Member)]).await;
    let member = &team.people[0];
    let (key_id, secret) = create_key(&app, &team.owner.access, &team.id, json!({})).await;
    let now = app.state.now();
    let mut ids = Vec::new();
    for (n, (token, model)) in [
        (&team.owner.access, "gpt-4o-2024-08-06"),
        (&member.access, "gpt-4o"),
        (&secret, "claude-sonnet-4"),
        (&member.access, "mystery"),
        (&team.owner.access, "gpt-4o"),
    ]
    .into_iter()
    .enumerate()
    {
        let occurred = (now - Duration::hours(10 - n as i64)).to_rfc3339();
        let input = json!({ "organizationId": team.id, "model": model, "promptTokens": 10, "completionTokens": 1,
            "occurredAt": occurred });
        ids.push(
            recorded(&app, token, input).await["event"]["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    const EVENTS: &str = "query ($id: ID!, $first: Int, $after: String, $model: String, $key: ID, $user: ID,
        $from: DateTime, $to: DateTime) { organization(id: $id) { usageEvents(first: $first, after: $after,
        model: $model, apiKeyId: $key, userId: $user, from: $from, to: $to) {
        totalCount nodes { id } edges { cursor node { id } } pageInfo { hasNextPage hasPreviousPage endCursor } } } }";
    let page = |vars: Value| {
        let app = &app;
        let token = team.owner.access.clone();
        let mut vars = vars;
        vars["id"] = json!(team.id);
        async move { app.graphql_as(&token, EVENTS, vars).await.data()["organization"]["usageEvents"].clone() }
    };
    let node_ids = |connection: &Value| -> Vec<String> {
        connection["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();

    let first = page(json!({ "first": 2 })).await;
    assert_eq!(node_ids(&first), newest_first[..2]);
    assert_eq!(first["totalCount"], 5);
    assert_eq!(first["pageInfo"]["hasNextPage"], true);
    assert_eq!(first["edges"][1]["cursor"], first["pageInfo"]["endCursor"]);
    let second = page(json!({ "first": 2, "after": first["pageInfo"]["endCursor"] })).await;
    assert_eq!(node_ids(&second), newest_first[2..4]);
    assert_eq!(second["pageInfo"]["hasPreviousPage"], true);
    let last = page(json!({ "first": 2, "after": second["pageInfo"]["endCursor"] })).await;
    assert_eq!(node_ids(&last), newest_first[4..]);
    assert_eq!(last["pageInfo"]["hasNextPage"], false);

    // model matches the reported name or the catalog id.
    let by_catalog_id = page(json!({ "model": "gpt-4o" })).await;
    assert_eq!(
        node_ids(&by_catalog_id),
        vec![ids[4].clone(), ids[1].clone(), ids[0].clone()]
    );
    assert_eq!(by_catalog_id["totalCount"], 3);
    assert_eq!(
        node_ids(&page(json!({ "model": "gpt-4o-2024-08-06" })).await),
        vec![ids[0].clone()]
    );
    assert_eq!(
        node_ids(&page(json!({ "model": "mystery" })).await),
        vec![ids[3].clone()]
    );
    assert_eq!(node_ids(&page(json!({ "key": key_id })).await), vec![ids[2].clone()]);
    let by_member = page(json!({ "user": member.user_id.to_string() })).await;
    assert_eq!(node_ids(&by_member), vec![ids[3].clone(), ids[1].clone()]);
    // from/to bound occurredAt, both ends included.
    let window =
        page(json!({ "from": (now - Duration::hours(9)).to_rfc3339(), "to": (now - Duration::hours(7)).to_rfc3339() }))
            .await;
    assert_eq!(node_ids(&window), vec![ids[3].clone(), ids[2].clone(), ids[1].clone()]);
    assert_eq!(window["totalCount"], 3);

    let bad = app
        .graphql_as(
            &team.owner.access,
            EVENTS,
            json!({ "id": team.id, "after": "nonsense" }),
        )
        .await;
    assert_eq!(bad.error_code(), Some("BAD_USER_INPUT"));
    let bad = app
        .graphql_as(&team.owner.access, EVENTS, json!({ "id": team.id, "key": "nonsense" }))
        .await;
    assert_eq!(field_of(&bad), Some("apiKeyId"));
}

#[tokio::test]
async fn usage_reads_follow_the_access_rules() {
    let app = app_mid_month().await;
    let team = team(&app, "reads.test", &[("viewer", OrgRole::Viewer)]).await;
    let outsider = register(&app, "outsider@reads.test").await;
    recorded(&app, &team.owner.access, call(&team.id, "gpt-4o", 10, 10)).await;
    let (_, writer) = create_key(&app, &team.owner.access, &team.id, json!({})).await;
    let (_, reader) = create_key(&app, &team.owner.access, &team.id, json!({ "scopes": ["USAGE_READ"] })).await;
    const READ: &str = "query ($id: ID!) { organization(id: $id) { quota { tokensUsed } usage { key }
        usageEvents { totalCount } } }";
    let vars = json!({ "id": team.id });
    let viewer = app.graphql_as(&team.people[0].access, READ, vars.clone()).await;
    assert_eq!(viewer.data()["organization"]["quota"]["tokensUsed"], 20);
    let by_reader = app.graphql_as(&reader, READ, vars.clone()).await;
    assert_eq!(by_reader.data()["organization"]["usageEvents"]["totalCount"], 1);
    let by_writer = app.graphql_as(&writer, READ, vars.clone()).await;
    assert_eq!(
        by_writer.error_code(),
        Some("FORBIDDEN"),
        "USAGE_READ is needed to read usage"
    );
    let by_outsider = app.graphql_as(&outsider.access, READ, vars).await;
    assert_eq!(by_outsider.data()["organization"], Value::Null);
}

#[tokio::test]
async fn staff_stats_count_working_keys_and_this_months_tokens() {
    let app = app_mid_month().await;
    let team = team(&app, "stats.test", &[]).await;
    let (revoked, _) = create_key(&app, &team.owner.access, &team.id, json!({})).await;
    create_key(&app, &team.owner.access, &team.id, json!({})).await;
    let soon = (app.state.now() + Duration::minutes(30)).to_rfc3339();
    create_key(&app, &team.owner.access, &team.id, json!({ "expiresAt": soon })).await;
    app.graphql_as(
        &team.owner.access,
        "mutation ($id: ID!) { revokeApiKey(id: $id) { id } }",
        json!({ "id": revoked }),
    )
    .await
    .data();
    let now = app.state.now();
    let mut october = call(&team.id, "gpt-4o", 5_000, 0);
    october["occurredAt"] = json!((now - Duration::days(20)).to_rfc3339());
    recorded(&app, &team.owner.access, october).await;
    recorded(&app, &team.owner.access, call(&team.id, "gpt-4o", 300, 20)).await;
    let other = crate::usage::team(&app, "stats-other.test", &[]).await;
    recorded(&app, &other.owner.access, call(&other.id, "mystery", 1_000, 0)).await;

    let admin = admin_token(&app).await;
    const STATS: &str = "{ stats { activeApiKeys tokensThisMonth } }";
    let stats = app.graphql_as(&admin, STATS, json!({})).await;
    assert_eq!(
        stats.data()["stats"],
        json!({ "activeApiKeys": 2, "tokensThisMonth": 1_320 })
    );
    app.clock.advance(Duration::hours(1));
    let admin = app
        .token_for(create_user(&app, "admin2@staff.test", Role::Admin).await)
        .await;
    let stats = app.graphql_as(&admin, STATS, json!({})).await;
    assert_eq!(stats.data()["stats"]["activeApiKeys"], 1, "expired keys do not count");
}

#[tokio::test]
async fn admins_upsert_models_with_exact_prices_and_unique_names() {
    let app = app_mid_month().await;
    let admin = admin_token(&app).await;
    let someone = register(&app, "someone@catalog.test").await;
    const UPSERT: &str = "mutation ($input: ModelInput!) { upsertModel(input: $input) { id aliases provider displayName
        contextWindow inputUsdPerMillionTokens cachedInputUsdPerMillionTokens outputUsdPerMillionTokens enabled } }";
    let model = json!({ "id": " Acme-Large ", "aliases": ["ACME-L", "acme-l", "acme-large"], "provider": "acme",
        "displayName": "Acme Large", "contextWindow": 32000, "inputUsdPerMillionTokens": 0.075,
        "cachedInputUsdPerMillionTokens": 0.0375, "outputUsdPerMillionTokens": 0.3 });
    let refused = app.graphql_as(&someone.access, UPSERT, json!({ "input": model })).await;
    assert_eq!(refused.error_code(), Some("FORBIDDEN"));
    let created = app.graphql_as(&admin, UPSERT, json!({ "input": model })).await;
    assert_eq!(
        created.data()["upsertModel"],
        json!({ "id": "acme-large", "aliases": ["acme-l"], "provider": "acme", "displayName": "Acme Large",
            "contextWindow": 32000, "inputUsdPerMillionTokens": 0.075, "cachedInputUsdPerMillionTokens": 0.0375,
            "outputUsdPerMillionTokens": 0.3, "enabled": true })
    );
    let stored: (i64, Option<i64>, i64) = tollgate::db::schema::models::table
        .find("acme-large")
        .select((
            tollgate::db::schema::models::input_micro_usd_per_mtok,
            tollgate::db::schema::models::cached_input_micro_usd_per_mtok,
            tollgate::db::schema::models::output_micro_usd_per_mtok,
        ))
        .first(&mut app.db().await)
        .await
        .unwrap();
    assert_eq!(stored, (75_000, Some(37_500), 300_000));
    let org = team(&app, "catalog.test", &[]).await;
    let priced = recorded(&app, &org.owner.access, call(&org.id, "ACME-L", 1_000_000, 1_000_000)).await;
    assert_eq!(priced["event"]["costMicroUsd"], 75_000 + 300_000);

    // Names are unique across the catalog: another model's id or alias is CONFLICT.
    let mut taken = model.clone();
    taken["id"] = json!("acme-small");
    taken["aliases"] = json!(["gpt-4o"]);
    assert_eq!(
        app.graphql_as(&admin, UPSERT, json!({ "input": taken }))
            .await
            .error_code(),
        Some("CONFLICT")
    );
    taken["aliases"] = json!(["acme-l"]);
    assert_eq!(
        app.graphql_as(&admin, UPSERT, json!({ "input": taken }))
            .await
            .error_code(),
        Some("CONFLICT")
    );
    taken["id"] = json!("deepseek-v3");
    taken["aliases"] = json!([]);
    assert_eq!(
        app.graphql_as(&admin, UPSERT, json!({ "input": taken }))
            .await
            .error_code(),
        Some("CONFLICT")
    );
    for (key, value, field) in [
        ("id", json!("  "), "id"),
        ("inputUsdPerMillionTokens", json!(-1.0), "inputUsdPerMillionTokens"),
        ("contextWindow", json!(0), "contextWindow"),
        ("displayName", json!(""), "displayName"),
    ] {
        let mut bad = model.clone();
        bad[key] = value;
        let response = app.graphql_as(&admin, UPSERT, json!({ "input": bad })).await;
        assert_eq!(field_of(&response), Some(field), "{key}");
    }
    // The seeded catalog gained aliases for common alternate names.
    let models = app.graphql("{ models { id aliases } }", json!({})).await;
    let sonnet = models.data()["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "claude-sonnet-4")
        .cloned()
        .unwrap();
    assert!(
        sonnet["aliases"]
            .as_array()
            .unwrap()
            .contains(&json!("claude-sonnet-4-0"))
    );
}
