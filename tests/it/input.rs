//! Hostile input: U+0000 (which PostgreSQL text cannot hold) and strings
//! too long to store, refused with BAD_USER_INPUT naming the field.

use serde_json::{Value, json};
use tollgate::auth::users::Role;

use crate::harness::{
    TestApp, create_user,
    ws::{connect_as, receive, send},
};

/// `(code, field)` of the first error.
fn refusal(body: &Value) -> (String, String) {
    let extensions = &body["errors"][0]["extensions"];
    (
        extensions["code"].as_str().unwrap_or_default().to_owned(),
        extensions["field"].as_str().unwrap_or_default().to_owned(),
    )
}

fn bad_input(field: &str) -> (String, String) {
    ("BAD_USER_INPUT".to_owned(), field.to_owned())
}

#[tokio::test]
async fn nul_in_arguments_and_variables_is_bad_user_input_over_http() {
    let app = TestApp::spawn().await;
    let user = create_user(&app, "nul@example.com", Role::Admin).await;
    let token = app.token_for(user).await;

    let literal = app
        .graphql_as(&token, r#"{ organization(slug: "\u0000") { id } }"#, json!({}))
        .await;
    assert_eq!(refusal(&literal.body), bad_input("slug"), "{}", literal.body);

    let variable = app
        .graphql_as(
            &token,
            "query ($s: String) { organization(slug: $s) { id } }",
            json!({ "s": "acme\u{0}" }),
        )
        .await;
    assert_eq!(refusal(&variable.body), bad_input("slug"), "{}", variable.body);

    let in_json = app
        .graphql_as(
            &token,
            "mutation ($p: JSON) { updateProfile(input: { preferences: $p }) { id } }",
            json!({ "p": { "theme\u{0}": "dark" } }),
        )
        .await;
    assert_eq!(refusal(&in_json.body), bad_input("preferences"), "{}", in_json.body);

    let search = app
        .graphql_as(
            &token,
            "query ($a: String) { auditLog(action: $a) { totalCount } }",
            json!({ "a": "user.\u{0}" }),
        )
        .await;
    assert_eq!(refusal(&search.body), bad_input("action"), "{}", search.body);
}

#[tokio::test]
async fn nul_in_arguments_and_variables_is_bad_user_input_over_websockets() {
    let app = TestApp::spawn().await;
    let user = create_user(&app, "nul-ws@example.com", Role::User).await;
    let token = app.token_for(user).await;
    let mut socket = connect_as(&app, "graphql-transport-ws", &token).await;

    send(
        &mut socket,
        json!({ "type": "subscribe", "id": "q", "payload": { "query": r#"{ organization(slug: "\u0000") { id } }"# } }),
    )
    .await;
    let error = receive(&mut socket).await;
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(
        refusal(&json!({ "errors": error["payload"] })),
        bad_input("slug"),
        "{error}"
    );

    send(
        &mut socket,
        json!({ "type": "subscribe", "id": "s", "payload": {
            "query": "subscription ($o: ID!) { usageUpdated(organizationId: $o) { event { id } } }",
            "variables": { "o": "\u{0}" },
        } }),
    )
    .await;
    let error = receive(&mut socket).await;
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(
        refusal(&json!({ "errors": error["payload"] })),
        bad_input("organizationId"),
        "{error}"
    );
}

/// `{k:{k:...1...}}`, `levels` deep, as a GraphQL literal: literals may
/// nest deeper than a JSON request body can.
fn nested_literal(levels: usize) -> String {
    format!("{}1{}", "{k:".repeat(levels), "}".repeat(levels))
}

#[tokio::test]
async fn json_too_deep_to_read_back_is_refused_and_the_profile_stays_readable() {
    let app = TestApp::spawn().await;
    let user = create_user(&app, "deep@example.com", Role::User).await;
    let token = app.token_for(user).await;

    let deep = app
        .graphql_as(
            &token,
            &format!(
                "mutation {{ updateProfile(input: {{ preferences: {} }}) {{ id }} }}",
                nested_literal(130)
            ),
            json!({}),
        )
        .await;
    assert_eq!(refusal(&deep.body), bad_input("preferences"), "{}", deep.body);
    let me = app.graphql_as(&token, "{ me { preferences } }", json!({})).await;
    assert_eq!(me.data()["me"]["preferences"], json!({}));

    let shallow = app
        .graphql_as(
            &token,
            &format!(
                "mutation {{ updateProfile(input: {{ preferences: {} }}) {{ id }} }}",
                nested_literal(5)
            ),
            json!({}),
        )
        .await;
    shallow.data();
    let me = app.graphql_as(&token, "{ me { preferences } }", json!({})).await;
    assert_eq!(me.data()["me"]["preferences"]["k"]["k"]["k"]["k"]["k"], 1);
}

#[tokio::test]
async fn a_subscription_over_http_is_a_validation_failure_not_internal() {
    let app = TestApp::spawn().await;
    let response = app
        .graphql(
            "subscription { usageUpdated(organizationId: \"00000000-0000-0000-0000-000000000000\") { thresholdCrossed } }",
            json!({}),
        )
        .await;
    assert_eq!(
        response.error_code(),
        Some("GRAPHQL_VALIDATION_FAILED"),
        "{}",
        response.body
    );
}

#[tokio::test]
async fn an_input_object_given_a_scalar_names_the_argument() {
    let app = TestApp::spawn().await;
    let response = app
        .graphql(
            "mutation ($input: RegisterInput!) { register(input: $input) { accessToken } }",
            json!({ "input": -2147483648_i64 }),
        )
        .await;
    assert_eq!(refusal(&response.body), bad_input("input"), "{}", response.body);
    let timestamp = app
        .graphql(
            "mutation ($at: DateTime) { createApiKey(input: { organizationId: \"x\", name: \"k\", expiresAt: $at }) { secret } }",
            json!({ "at": "tomorrow" }),
        )
        .await;
    assert_eq!(refusal(&timestamp.body), bad_input("expiresAt"), "{}", timestamp.body);
}

/// What an ADMIN sends to upsertPlan, with `change` applied.
fn plan(change: impl FnOnce(&mut Value)) -> Value {
    let mut input = json!({ "key": "team", "name": "Team", "priceCents": 900, "features": ["Fast"] });
    change(&mut input);
    json!({ "input": input })
}

#[tokio::test]
async fn strings_reach_storage_and_searches_only_within_their_bounds() {
    let app = TestApp::spawn().await;
    let admin = create_user(&app, "bounds@example.com", Role::Admin).await;
    let token = app.token_for(admin).await;
    let upsert_plan = "mutation ($input: PlanInput!) { upsertPlan(input: $input) { key } }";
    let upsert_model = "mutation ($input: ModelInput!) { upsertModel(input: $input) { id } }";
    let model = |aliases: usize| {
        json!({ "input": { "id": "m", "provider": "p", "displayName": "M", "inputUsdPerMillionTokens": 1.0,
            "outputUsdPerMillionTokens": 1.0, "aliases": (0..aliases).map(|n| format!("m-{n}")).collect::<Vec<_>>() } })
    };
    let cases = [
        (
            upsert_plan,
            plan(|p| p["description"] = json!("d".repeat(501))),
            "description",
        ),
        (upsert_plan, plan(|p| p["features"] = json!(vec!["f"; 21])), "features"),
        (
            upsert_plan,
            plan(|p| p["features"] = json!(["f".repeat(101)])),
            "features",
        ),
        (upsert_model, model(101), "aliases"),
        (
            "query ($a: String) { auditLog(action: $a) { totalCount } }",
            json!({ "a": "a".repeat(65) }),
            "action",
        ),
        (
            "mutation ($p: String!) { login(input: { email: \"a@b.c\", password: $p }) { accessToken } }",
            json!({ "p": "p".repeat(9000) }),
            "password",
        ),
    ];
    for (query, variables, field) in cases {
        let response = app.graphql_as(&token, query, variables).await;
        assert_eq!(refusal(&response.body), bad_input(field), "{}", response.body);
    }
    // At the limits, all is well.
    app.graphql_as(
        &token,
        upsert_plan,
        plan(|p| {
            p["description"] = json!("d".repeat(500));
            p["features"] = json!(vec!["f".repeat(100); 20]);
        }),
    )
    .await
    .data();
    app.graphql_as(&token, upsert_model, model(100)).await.data();

    let owner = crate::harness::people::register(&app, "owner@example.com").await;
    let organization = app
        .graphql_as(
            &owner.access,
            "{ me { memberships { organization { id } } } }",
            json!({}),
        )
        .await;
    let organization = organization.data()["me"]["memberships"][0]["organization"]["id"].clone();
    let events = app
        .graphql_as(
            &token,
            "query ($id: ID!, $m: String) { organization(id: $id) { usageEvents(model: $m) { totalCount } } }",
            json!({ "id": organization, "m": "m".repeat(201) }),
        )
        .await;
    assert_eq!(refusal(&events.body), bad_input("model"), "{}", events.body);
}
