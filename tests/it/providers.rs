//! The gateway's providers and model routes as staff manage them: who may
//! read and write them, the API key that is stored only encrypted and
//! never shown, bad inputs, route replacement, Model.callable and
//! clientConfig.llmBaseUrl, the providers the environment seeds, the
//! production start-up check of SECRETS_KEY, and changes taking effect at
//! the next gateway call on every instance.

use diesel::{
    QueryableByName,
    sql_types::{BigInt, Text},
};
use diesel_async::RunQueryDsl;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use tollgate::auth::users::Role;
use uuid::Uuid;

use crate::{
    harness::{
        GqlResponse, TestApp, TestAppOptions, create_user,
        llm_fake::FakeLlm,
        people::{personal_organization, register_verified},
    },
    usage::create_key,
};

const UPSERT: &str = "mutation ($input: ProviderInput!) {
    upsertProvider(input: $input) { key name kind baseUrl apiKeyHint enabled createdAt updatedAt } }";
const DELETE: &str = "mutation ($key: String!) { deleteProvider(key: $key) }";
const PROVIDERS: &str = "{ providers { key name kind baseUrl apiKeyHint enabled createdAt updatedAt } }";
const UPSERT_MODEL: &str = "mutation ($input: ModelInput!) {
    upsertModel(input: $input) { id enabled maxOutputTokens callable routes { provider { key } upstreamModel } } }";
const MODELS: &str =
    "{ models { id provider maxOutputTokens callable routes { provider { key kind } upstreamModel } } }";
const PUBLIC_MODELS: &str = "{ models { id callable } clientConfig { llmBaseUrl } }";
const AUDIT: &str = "query ($action: String) {
    auditLog(first: 50, action: $action) { totalCount nodes { action actor { id } targetType targetId metadata } } }";

/// A SECRETS_KEY: 32 bytes of 9, in base64.
const SECRETS_KEY: &str = "CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=";

/// A provider key long enough to have a hint, unique to the test.
fn secret_key(tail: &str) -> String {
    format!("sk-test-{}-{tail}", Uuid::new_v4().simple())
}

fn provider(key: &str, api_key: Option<&str>) -> Value {
    let mut input = json!({
        "key": key,
        "kind": "OPENAI_COMPATIBLE",
        "baseUrl": "https://openrouter.example/api/v1/",
    });
    if let Some(api_key) = api_key {
        input["apiKey"] = json!(api_key);
    }
    input
}

fn model(id: &str, routes: Option<Value>) -> Value {
    let mut input = json!({
        "id": id,
        "provider": "acme",
        "displayName": "Acme model",
        "inputUsdPerMillionTokens": 1.0,
        "outputUsdPerMillionTokens": 2.0,
    });
    if let Some(routes) = routes {
        input["routes"] = routes;
    }
    input
}

async fn token(app: &TestApp, email: &str, role: Role) -> (Uuid, String) {
    let id = create_user(app, email, role).await;
    (id, app.token_for(id).await)
}

async fn upsert(app: &TestApp, token: &str, input: Value) -> GqlResponse {
    app.graphql_as(token, UPSERT, json!({ "input": input })).await
}

async fn upsert_model(app: &TestApp, token: &str, input: Value) -> GqlResponse {
    app.graphql_as(token, UPSERT_MODEL, json!({ "input": input })).await
}

/// `extensions.field` of the first error.
fn field(response: &GqlResponse) -> Option<&str> {
    response.body["errors"][0]["extensions"]["field"].as_str()
}

/// The catalog entry `id` in a `models` answer.
fn find<'a>(data: &'a Value, id: &str) -> &'a Value {
    data["models"]
        .as_array()
        .expect("models")
        .iter()
        .find(|m| m["id"] == id)
        .unwrap_or_else(|| panic!("no model {id}"))
}

async fn audit(app: &TestApp, token: &str, action: &str) -> Value {
    app.graphql_as(token, AUDIT, json!({ "action": action })).await.data()["auditLog"].clone()
}

#[derive(QueryableByName)]
struct TableName {
    #[diesel(sql_type = Text)]
    table_name: String,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    count: i64,
}

/// Rows of any table in the public schema whose text form holds `needle`
/// as text or as the hex of its bytes (a bytea shows as `\x...`).
async fn rows_holding(app: &TestApp, needle: &str) -> Vec<String> {
    let mut conn = app.db().await;
    let tables: Vec<TableName> = diesel::sql_query(
        "SELECT table_name::text AS table_name FROM information_schema.tables
         WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
    )
    .load(&mut conn)
    .await
    .unwrap();
    assert!(tables.iter().any(|t| t.table_name == "providers"));
    assert!(tables.iter().any(|t| t.table_name == "audit_log"));
    let hex = hex::encode(needle);
    let mut found = Vec::new();
    for table in tables {
        let count: Count = diesel::sql_query(format!(
            "SELECT count(*) AS count FROM \"{}\" t WHERE t::text LIKE $1 OR t::text LIKE $2",
            table.table_name
        ))
        .bind::<Text, _>(format!("%{needle}%"))
        .bind::<Text, _>(format!("%{hex}%"))
        .get_result(&mut conn)
        .await
        .unwrap();
        if count.count > 0 {
            found.push(table.table_name);
        }
    }
    found
}

/// The decrypted key the gateway would send for `model_id`'s first route.
async fn key_used_for(app: &TestApp, model_id: &str) -> Option<String> {
    let mut conn = app.db().await;
    let upstreams = tollgate::providers::upstreams_for(&mut conn, app.state.secrets(), model_id)
        .await
        .unwrap();
    upstreams
        .into_iter()
        .next()
        .and_then(|u| u.api_key)
        .map(|k| k.expose_secret().to_owned())
}

#[tokio::test]
async fn admins_write_providers_support_reads_them_and_members_are_forbidden() {
    let app = TestApp::spawn().await;
    let (admin_id, admin) = token(&app, "root@example.com", Role::Admin).await;
    let (_, support) = token(&app, "help@example.com", Role::Support).await;
    let (_, member) = token(&app, "ada@example.com", Role::User).await;
    let api_key = secret_key("WXYZ");

    for (who, caller) in [("support", &support), ("member", &member)] {
        let refused = upsert(&app, caller, provider("openrouter", Some(&api_key))).await;
        assert_eq!(refused.error_code(), Some("FORBIDDEN"), "{who}: {}", refused.body);
    }
    let anonymous = app
        .graphql(UPSERT, json!({ "input": provider("openrouter", Some(&api_key)) }))
        .await;
    assert_eq!(anonymous.error_code(), Some("UNAUTHENTICATED"));

    let created = upsert(&app, &admin, provider("openrouter", Some(&api_key))).await;
    let created_text = created.body.to_string();
    let row = &created.data()["upsertProvider"];
    assert_eq!(row["key"], "openrouter");
    assert_eq!(row["name"], "openrouter", "the name defaults to the key");
    assert_eq!(row["kind"], "OPENAI_COMPATIBLE");
    assert_eq!(row["baseUrl"], "https://openrouter.example/api/v1", "no trailing slash");
    assert_eq!(row["apiKeyHint"], "WXYZ");
    assert_eq!(row["enabled"], true);
    assert!(!created_text.contains(&api_key), "the key came back: {created_text}");

    // SUPPORT reads, a member and an anonymous caller do not.
    let listed = app.graphql_as(&support, PROVIDERS, json!({})).await;
    assert_eq!(listed.data()["providers"], json!([row]));
    assert!(!listed.body.to_string().contains(&api_key));
    let refused = app.graphql_as(&member, PROVIDERS, json!({})).await;
    assert_eq!(refused.error_code(), Some("FORBIDDEN"));
    assert_eq!(
        app.graphql(PROVIDERS, json!({})).await.error_code(),
        Some("UNAUTHENTICATED")
    );

    // The audit entry names the provider and the admin, never the key.
    let entries = audit(&app, &admin, "provider.upserted").await;
    assert_eq!(entries["totalCount"], 1);
    let entry = &entries["nodes"][0];
    assert_eq!(entry["actor"]["id"], admin_id.to_string());
    assert_eq!(entry["targetType"], "provider");
    assert_eq!(entry["targetId"], "openrouter");
    assert_eq!(entry["metadata"]["created"], true);
    assert_eq!(entry["metadata"]["apiKeyChanged"], true);
    assert!(!entry.to_string().contains(&api_key));
    assert!(!entry.to_string().contains("WXYZ"), "not even the hint: {entry}");

    // Only an ADMIN deletes; an unknown key is NOT_FOUND.
    for caller in [&support, &member] {
        let refused = app.graphql_as(caller, DELETE, json!({ "key": "openrouter" })).await;
        assert_eq!(refused.error_code(), Some("FORBIDDEN"));
    }
    let deleted = app.graphql_as(&admin, DELETE, json!({ "key": "openrouter" })).await;
    assert_eq!(deleted.data()["deleteProvider"], true);
    let again = app.graphql_as(&admin, DELETE, json!({ "key": "openrouter" })).await;
    assert_eq!(again.error_code(), Some("NOT_FOUND"));
    assert_eq!(
        app.graphql_as(&admin, PROVIDERS, json!({})).await.data()["providers"],
        json!([])
    );
    let entries = audit(&app, &admin, "provider.deleted").await;
    assert_eq!(entries["totalCount"], 1);
    assert_eq!(entries["nodes"][0]["targetId"], "openrouter");
    assert_eq!(entries["nodes"][0]["actor"]["id"], admin_id.to_string());
}

#[tokio::test]
async fn the_stored_key_is_kept_when_omitted_and_is_nowhere_in_the_database_in_the_clear() {
    let app = TestApp::spawn().await;
    let (_, admin) = token(&app, "root@example.com", Role::Admin).await;
    let first = secret_key("1111");
    let second = secret_key("2222");

    upsert(&app, &admin, provider("relay", Some(&first))).await.data();
    let routed = upsert_model(
        &app,
        &admin,
        model(
            "relay-model",
            Some(json!([{ "providerKey": "relay", "upstreamModel": "vendor/model" }])),
        ),
    )
    .await;
    assert_eq!(routed.data()["upsertModel"]["callable"], true);
    assert_eq!(key_used_for(&app, "relay-model").await.as_deref(), Some(first.as_str()));

    // Omitting apiKey changes the rest and keeps the key.
    let mut renamed = provider("relay", None);
    renamed["name"] = json!("Relay");
    renamed["kind"] = json!("OPENAI");
    renamed["baseUrl"] = json!("http://127.0.0.1:9/v1");
    let updated = upsert(&app, &admin, renamed).await;
    let row = &updated.data()["upsertProvider"];
    assert_eq!(row["name"], "Relay");
    assert_eq!(row["kind"], "OPENAI");
    assert_eq!(row["baseUrl"], "http://127.0.0.1:9/v1");
    assert_eq!(row["apiKeyHint"], "1111");
    assert_eq!(key_used_for(&app, "relay-model").await.as_deref(), Some(first.as_str()));
    let entries = audit(&app, &admin, "provider.upserted").await;
    assert_eq!(entries["nodes"][0]["metadata"]["apiKeyChanged"], false);
    assert_eq!(entries["nodes"][0]["metadata"]["created"], false);

    // A new key replaces it.
    let replaced = upsert(&app, &admin, provider("relay", Some(&second))).await;
    assert_eq!(replaced.data()["upsertProvider"]["apiKeyHint"], "2222");
    assert_eq!(
        key_used_for(&app, "relay-model").await.as_deref(),
        Some(second.as_str())
    );

    for key in [&first, &second] {
        assert_eq!(
            rows_holding(&app, key).await,
            Vec::<String>::new(),
            "{key} is stored in the clear"
        );
    }
    // The scan itself finds what is there.
    assert_eq!(rows_holding(&app, "vendor/model").await, ["model_routes"]);
}

#[tokio::test]
async fn bad_inputs_are_refused_naming_their_field() {
    let app = TestApp::spawn().await;
    let (_, admin) = token(&app, "root@example.com", Role::Admin).await;
    let api_key = secret_key("abcd");

    let cases = [
        ("key", provider("OpenAI", Some(&api_key))),
        ("key", provider("x", Some(&api_key))),
        ("key", provider("under_score", Some(&api_key))),
        ("key", provider(&"k".repeat(41), Some(&api_key))),
        (
            "baseUrl",
            json!({ "key": "p-one", "kind": "OPENAI", "baseUrl": "ftp://example.com", "apiKey": api_key }),
        ),
        (
            "baseUrl",
            json!({ "key": "p-one", "kind": "OPENAI", "baseUrl": "not a url", "apiKey": api_key }),
        ),
        (
            "baseUrl",
            json!({ "key": "p-one", "kind": "OPENAI", "baseUrl": "https://u:p@example.com/v1", "apiKey": api_key }),
        ),
        ("apiKey", provider("p-one", None)),
        ("apiKey", provider("p-one", Some("  "))),
        (
            "name",
            json!({ "key": "p-one", "name": "n".repeat(101), "kind": "OPENAI", "baseUrl": "https://example.com", "apiKey": api_key }),
        ),
    ];
    for (expected, input) in cases {
        let refused = upsert(&app, &admin, input.clone()).await;
        assert_eq!(
            refused.error_code(),
            Some("BAD_USER_INPUT"),
            "{input}: {}",
            refused.body
        );
        assert_eq!(field(&refused), Some(expected), "{input}: {}", refused.body);
        assert!(
            !refused.body.to_string().contains(&api_key),
            "the key is echoed: {}",
            refused.body
        );
    }
    assert_eq!(
        app.graphql_as(&admin, PROVIDERS, json!({})).await.data()["providers"],
        json!([])
    );

    // Model inputs: a route to an unknown provider, a bad upstream name,
    // a non-positive output limit; nothing of the model is written.
    upsert(&app, &admin, provider("p-one", Some(&api_key))).await.data();
    let model_cases = [
        (
            "routes",
            model(
                "fresh-model",
                Some(json!([{ "providerKey": "nobody", "upstreamModel": "m" }])),
            ),
        ),
        (
            "routes",
            model(
                "fresh-model",
                Some(json!([{ "providerKey": "p-one", "upstreamModel": " " }])),
            ),
        ),
        (
            "routes",
            model(
                "fresh-model",
                Some(json!([{ "providerKey": "p-one", "upstreamModel": "m".repeat(201) }])),
            ),
        ),
        ("maxOutputTokens", {
            let mut input = model("fresh-model", None);
            input["maxOutputTokens"] = json!(0);
            input
        }),
    ];
    for (expected, input) in model_cases {
        let refused = upsert_model(&app, &admin, input.clone()).await;
        assert_eq!(
            refused.error_code(),
            Some("BAD_USER_INPUT"),
            "{input}: {}",
            refused.body
        );
        assert_eq!(field(&refused), Some(expected), "{input}: {}", refused.body);
    }
    let models = app.graphql_as(&admin, MODELS, json!({})).await;
    let ids: Vec<&Value> = models.data()["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["id"])
        .collect();
    assert!(!ids.contains(&&json!("fresh-model")), "a refused upsert left its model");
}

#[tokio::test]
async fn routes_are_replaced_when_given_cleared_by_an_empty_list_and_kept_when_omitted() {
    let app = TestApp::spawn().await;
    let (_, admin) = token(&app, "root@example.com", Role::Admin).await;
    upsert(&app, &admin, provider("p-one", Some(&secret_key("0001"))))
        .await
        .data();
    upsert(&app, &admin, provider("p-two", Some(&secret_key("0002"))))
        .await
        .data();
    let routes = |response: &GqlResponse| response.data()["upsertModel"]["routes"].clone();

    let mut input = model(
        "acme-large",
        Some(json!([
            { "providerKey": "p-one", "upstreamModel": "acme/large" },
            { "providerKey": "p-two", "upstreamModel": "acme-large-2025" },
        ])),
    );
    input["maxOutputTokens"] = json!(8192);
    let created = upsert_model(&app, &admin, input).await;
    assert_eq!(created.data()["upsertModel"]["maxOutputTokens"], 8192);
    assert_eq!(
        routes(&created),
        json!([
            { "provider": { "key": "p-one" }, "upstreamModel": "acme/large" },
            { "provider": { "key": "p-two" }, "upstreamModel": "acme-large-2025" },
        ])
    );

    let kept = upsert_model(&app, &admin, model("acme-large", None)).await;
    assert_eq!(routes(&kept), routes(&created));
    assert_eq!(
        kept.data()["upsertModel"]["maxOutputTokens"],
        Value::Null,
        "null clears the limit"
    );

    let replaced = upsert_model(
        &app,
        &admin,
        model(
            "acme-large",
            Some(json!([{ "providerKey": "p-two", "upstreamModel": "only" }])),
        ),
    )
    .await;
    assert_eq!(
        routes(&replaced),
        json!([{ "provider": { "key": "p-two" }, "upstreamModel": "only" }])
    );

    // A refused replacement leaves the routes as they were.
    let refused = upsert_model(
        &app,
        &admin,
        model(
            "acme-large",
            Some(json!([{ "providerKey": "gone", "upstreamModel": "x" }])),
        ),
    )
    .await;
    assert_eq!(field(&refused), Some("routes"));
    let listed = app.graphql_as(&admin, MODELS, json!({})).await;
    assert_eq!(
        find(listed.data(), "acme-large")["routes"],
        json!([{ "provider": { "key": "p-two", "kind": "OPENAI_COMPATIBLE" }, "upstreamModel": "only" }])
    );

    let cleared = upsert_model(&app, &admin, model("acme-large", Some(json!([])))).await;
    assert_eq!(routes(&cleared), json!([]));
    assert_eq!(cleared.data()["upsertModel"]["callable"], false);
}

#[tokio::test]
async fn deleting_a_provider_removes_its_routes_and_its_models_stop_being_callable() {
    let app = TestApp::spawn().await;
    let (_, admin) = token(&app, "root@example.com", Role::Admin).await;
    upsert(&app, &admin, provider("p-one", Some(&secret_key("0001"))))
        .await
        .data();
    upsert(&app, &admin, provider("p-two", Some(&secret_key("0002"))))
        .await
        .data();
    upsert_model(
        &app,
        &admin,
        model(
            "solo",
            Some(json!([{ "providerKey": "p-one", "upstreamModel": "solo" }])),
        ),
    )
    .await
    .data();
    upsert_model(
        &app,
        &admin,
        model(
            "duo",
            Some(json!([
                { "providerKey": "p-one", "upstreamModel": "duo-a" },
                { "providerKey": "p-two", "upstreamModel": "duo-b" },
            ])),
        ),
    )
    .await
    .data();
    let before = app.graphql(PUBLIC_MODELS, json!({})).await;
    assert_eq!(find(before.data(), "solo")["callable"], true);

    let deleted = app.graphql_as(&admin, DELETE, json!({ "key": "p-one" })).await;
    assert_eq!(deleted.data()["deleteProvider"], true);
    let after = app.graphql_as(&admin, MODELS, json!({})).await;
    assert_eq!(find(after.data(), "solo")["routes"], json!([]));
    assert_eq!(find(after.data(), "solo")["callable"], false);
    assert_eq!(
        find(after.data(), "duo")["routes"],
        json!([{ "provider": { "key": "p-two", "kind": "OPENAI_COMPATIBLE" }, "upstreamModel": "duo-b" }])
    );
    assert_eq!(find(after.data(), "duo")["callable"], true);
    let entries = audit(&app, &admin, "provider.deleted").await;
    assert_eq!(entries["nodes"][0]["metadata"]["routesRemoved"], 2);
}

#[tokio::test]
async fn callable_and_the_llm_base_url_follow_the_enabled_providers() {
    let app = TestApp::spawn().await;
    let (_, admin) = token(&app, "root@example.com", Role::Admin).await;
    let (_, support) = token(&app, "help@example.com", Role::Support).await;
    let (_, member) = token(&app, "ada@example.com", Role::User).await;

    let fresh = app.graphql(PUBLIC_MODELS, json!({})).await;
    assert_eq!(fresh.data()["clientConfig"]["llmBaseUrl"], Value::Null);
    assert!(
        fresh.data()["models"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["callable"] == false),
        "nothing is callable without providers: {}",
        fresh.body
    );

    let api_key = secret_key("0001");
    upsert(&app, &admin, provider("p-one", Some(&api_key))).await.data();
    upsert_model(
        &app,
        &admin,
        json!({ "id": "gpt-4o", "provider": "openai", "displayName": "GPT-4o",
                "inputUsdPerMillionTokens": 2.5, "cachedInputUsdPerMillionTokens": 1.25,
                "outputUsdPerMillionTokens": 10.0, "maxOutputTokens": 16384,
                "routes": [{ "providerKey": "p-one", "upstreamModel": "openai/gpt-4o" }] }),
    )
    .await
    .data();
    let on = app.graphql(PUBLIC_MODELS, json!({})).await;
    assert_eq!(on.data()["clientConfig"]["llmBaseUrl"], app.url("/v1"));
    assert_eq!(find(on.data(), "gpt-4o")["callable"], true);
    assert_eq!(find(on.data(), "gpt-4o-mini")["callable"], false, "no route");

    // Routes: staff see them; anyone else gets null with FORBIDDEN, and
    // the rest of the catalog.
    let seen = app.graphql_as(&support, MODELS, json!({})).await;
    assert_eq!(
        find(seen.data(), "gpt-4o")["routes"][0]["upstreamModel"],
        "openai/gpt-4o"
    );
    assert_eq!(find(seen.data(), "gpt-4o")["maxOutputTokens"], 16384);
    for caller in [Some(&member), None] {
        let hidden = match caller {
            Some(token) => app.graphql_as(token, MODELS, json!({})).await,
            None => app.graphql(MODELS, json!({})).await,
        };
        let models = hidden.body["data"]["models"].as_array().expect("the catalog stays");
        assert!(models.iter().all(|m| m["routes"].is_null()));
        assert_eq!(find(&hidden.body["data"], "gpt-4o")["callable"], true);
        let errors = hidden.body["errors"].as_array().expect("errors");
        assert_eq!(errors.len(), models.len(), "one per model");
        assert!(errors.iter().all(|e| e["extensions"]["code"] == "FORBIDDEN"));
        assert_eq!(errors[0]["path"][2], "routes");
    }

    // One statement for every model's routes, however many models.
    let before = app.query_count();
    app.graphql_as(&admin, MODELS, json!({})).await.data();
    let statements = app.query_count() - before;
    assert!(statements <= 6, "{statements} statements for the catalog with routes");

    // A disabled provider: nothing is callable, and there is no gateway.
    let mut disabled = provider("p-one", None);
    disabled["enabled"] = json!(false);
    assert_eq!(
        upsert(&app, &admin, disabled).await.data()["upsertProvider"]["apiKeyHint"],
        "0001"
    );
    let off = app.graphql(PUBLIC_MODELS, json!({})).await;
    assert_eq!(off.data()["clientConfig"]["llmBaseUrl"], Value::Null);
    assert_eq!(find(off.data(), "gpt-4o")["callable"], false);

    // Enabled again; then a disabled model is not callable either.
    upsert(&app, &admin, provider("p-one", None)).await.data();
    assert_eq!(
        find(app.graphql(PUBLIC_MODELS, json!({})).await.data(), "gpt-4o")["callable"],
        true
    );
    let switched_off = upsert_model(
        &app,
        &admin,
        json!({ "id": "gpt-4o", "provider": "openai", "displayName": "GPT-4o",
                "inputUsdPerMillionTokens": 2.5, "outputUsdPerMillionTokens": 10.0, "enabled": false }),
    )
    .await;
    assert_eq!(switched_off.data()["upsertModel"]["callable"], false);
    assert_eq!(
        switched_off.data()["upsertModel"]["routes"][0]["provider"]["key"],
        "p-one"
    );
}

#[tokio::test]
async fn the_environment_seeds_providers_and_routes_once_across_restarts() {
    let openai_key = secret_key("0PEN");
    let anthropic_key = secret_key("ANTH");
    let app = TestApp::spawn_with(TestAppOptions {
        vars: vec![
            ("OPENAI_API_KEY".into(), openai_key.clone()),
            ("ANTHROPIC_API_KEY".into(), anthropic_key.clone()),
        ],
        ..Default::default()
    })
    .await;
    let (_, admin) = token(&app, "root@example.com", Role::Admin).await;

    let providers = app.graphql_as(&admin, PROVIDERS, json!({})).await;
    let providers = providers.data()["providers"].as_array().unwrap().clone();
    assert_eq!(providers.len(), 2, "{providers:?}");
    assert_eq!(providers[0]["key"], "anthropic");
    assert_eq!(providers[0]["kind"], "ANTHROPIC");
    assert_eq!(providers[0]["baseUrl"], "https://api.anthropic.com");
    assert_eq!(providers[0]["apiKeyHint"], "ANTH");
    assert_eq!(providers[1]["key"], "openai");
    assert_eq!(providers[1]["kind"], "OPENAI");
    assert_eq!(providers[1]["baseUrl"], "https://api.openai.com/v1");
    assert_eq!(providers[1]["apiKeyHint"], "0PEN");
    assert_eq!(providers[1]["name"], "OpenAI");

    let models = app.graphql_as(&admin, MODELS, json!({})).await;
    for entry in models.data()["models"].as_array().unwrap() {
        let vendor = entry["provider"].as_str().unwrap();
        if vendor == "openai" || vendor == "anthropic" {
            assert_eq!(
                entry["routes"],
                json!([{ "provider": { "key": vendor, "kind": if vendor == "openai" { "OPENAI" } else { "ANTHROPIC" } },
                         "upstreamModel": entry["id"] }]),
                "{entry}"
            );
            assert_eq!(entry["callable"], true, "{entry}");
        } else {
            assert_eq!(entry["routes"], json!([]), "{entry}");
            assert_eq!(entry["callable"], false, "{entry}");
        }
    }
    assert_eq!(key_used_for(&app, "gpt-4o").await.as_deref(), Some(openai_key.as_str()));
    assert_eq!(
        key_used_for(&app, "claude-sonnet-4-5").await.as_deref(),
        Some(anthropic_key.as_str())
    );
    assert_eq!(
        app.graphql(PUBLIC_MODELS, json!({})).await.data()["clientConfig"]["llmBaseUrl"],
        app.url("/v1")
    );
    assert_eq!(audit(&app, &admin, "provider.upserted").await["totalCount"], 2);

    // An admin's choices survive a restart: a model routed elsewhere, one
    // with no routes, a renamed provider.
    upsert_model(
        &app,
        &admin,
        json!({ "id": "gpt-4o-mini", "provider": "openai", "displayName": "GPT-4o mini",
                "inputUsdPerMillionTokens": 0.15, "outputUsdPerMillionTokens": 0.6,
                "routes": [{ "providerKey": "openai", "upstreamModel": "gpt-4o-mini-2024-07-18" }] }),
    )
    .await
    .data();
    let mut renamed = json!({ "key": "anthropic", "name": "Claude", "kind": "ANTHROPIC",
                              "baseUrl": "https://api.anthropic.com" });
    renamed["enabled"] = json!(true);
    upsert(&app, &admin, renamed).await.data();
    let before = app.graphql_as(&admin, MODELS, json!({})).await.body;
    let providers_before = app.graphql_as(&admin, PROVIDERS, json!({})).await.body;

    let restarted = app.spawn_sibling().await;
    assert_eq!(restarted.graphql_as(&admin, MODELS, json!({})).await.body, before);
    assert_eq!(
        restarted.graphql_as(&admin, PROVIDERS, json!({})).await.body,
        providers_before
    );
    assert_eq!(
        audit(&app, &admin, "provider.upserted").await["totalCount"],
        3,
        "no entry for a restart"
    );

    // Another base URL and key: the provider follows, as an
    // OpenAI-compatible service; the name and routes stay.
    let a4f_key = secret_key("A4F1");
    let moved = app
        .spawn_sibling_with(&[
            ("OPENAI_API_KEY", Some(&a4f_key)),
            ("OPENAI_BASE_URL", Some("https://api.a4f.example/v1/")),
        ])
        .await;
    let providers = moved.graphql_as(&admin, PROVIDERS, json!({})).await;
    let openai = &providers.data()["providers"][1];
    assert_eq!(openai["kind"], "OPENAI_COMPATIBLE");
    assert_eq!(openai["baseUrl"], "https://api.a4f.example/v1");
    assert_eq!(openai["apiKeyHint"], "A4F1");
    assert_eq!(openai["name"], "OpenAI");
    assert_eq!(key_used_for(&moved, "gpt-4o").await.as_deref(), Some(a4f_key.as_str()));
    assert_eq!(audit(&app, &admin, "provider.upserted").await["totalCount"], 4);
    for key in [&openai_key, &anthropic_key, &a4f_key] {
        assert_eq!(rows_holding(&app, key).await, Vec::<String>::new());
    }
}

#[tokio::test]
async fn production_without_secrets_key_stores_no_provider_key_and_refuses_to_start_over_one() {
    let app = TestApp::spawn_with(TestAppOptions {
        vars: vec![
            ("APP_ENV".into(), "production".into()),
            // Staff need TOTP in production by default; this test is about keys.
            ("REQUIRE_MFA_FOR_STAFF".into(), "false".into()),
        ],
        ..Default::default()
    })
    .await;
    let (_, admin) = token(&app, "root@example.com", Role::Admin).await;
    let api_key = secret_key("PR0D");
    let refused = upsert(&app, &admin, provider("p-one", Some(&api_key))).await;
    assert_eq!(refused.error_code(), Some("BAD_USER_INPUT"), "{}", refused.body);
    assert_eq!(field(&refused), Some("apiKey"));
    let message = refused.body["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("SECRETS_KEY"), "{message}");
    assert!(!message.contains(&api_key));

    // The environment's provider cannot be stored either: no start.
    let error = app
        .try_spawn_sibling_with(&[("OPENAI_API_KEY", Some(&api_key))])
        .await
        .err()
        .expect("a production start with OPENAI_API_KEY and no SECRETS_KEY fails");
    assert!(format!("{error:#}").contains("SECRETS_KEY"), "{error:#}");
    assert!(!format!("{error:#}").contains(&api_key));

    // With SECRETS_KEY the key is stored; an instance without it then
    // refuses to start, naming the variable, and one with it starts.
    let secrets_key = SECRETS_KEY;
    let keyed = app.spawn_sibling_with(&[("SECRETS_KEY", Some(secrets_key))]).await;
    upsert(&keyed, &admin, provider("p-one", Some(&api_key))).await.data();
    let error = app
        .try_spawn_sibling_with(&[])
        .await
        .err()
        .expect("a production start without SECRETS_KEY over a stored key fails");
    let error = format!("{error:#}");
    assert!(error.contains("SECRETS_KEY") && error.contains("p-one"), "{error}");
    let again = app.spawn_sibling_with(&[("SECRETS_KEY", Some(secrets_key))]).await;
    assert_eq!(
        again.graphql_as(&admin, PROVIDERS, json!({})).await.data()["providers"][0]["apiKeyHint"],
        "PR0D"
    );
}

/// A chat call to `model` through `app`'s gateway with `key`: the status.
async fn chat_status(app: &TestApp, key: &str, model: &str) -> u16 {
    app.http()
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({ "model": model, "messages": [{ "role": "user", "content": "Hi" }] }))
        .send()
        .await
        .expect("POST /v1/chat/completions")
        .status()
        .as_u16()
}

/// The provider key the last request `fake` received carried.
fn last_key(fake: &FakeLlm) -> Option<String> {
    fake.requests()
        .last()
        .and_then(|request| request.header("authorization").map(str::to_owned))
}

#[tokio::test]
async fn a_route_or_provider_changed_on_one_instance_is_used_by_the_next_call_on_every_instance() {
    let app = TestApp::spawn().await;
    let sibling = app.spawn_sibling().await;
    let (_, admin) = token(&app, "admin@cache.test", Role::Admin).await;
    let (first, second) = (FakeLlm::start().await, FakeLlm::start().await);
    for (key, fake) in [("first", &first), ("second", &second)] {
        let mut input = provider(key, Some(&format!("sk-{key}-0000000001")));
        input["baseUrl"] = json!(fake.openai_base());
        upsert(&app, &admin, input).await.data();
    }
    let routed_to = |provider: &str| Some(json!([{ "providerKey": provider, "upstreamModel": "up" }]));
    upsert_model(&app, &admin, model("cached-model", routed_to("first")))
        .await
        .data();
    let owner = register_verified(&app, "owner@cache.test").await;
    let org = personal_organization(&app, &owner.access).await;
    let (_, key) = create_key(&app, &owner.access, &org, json!({ "scopes": ["LLM"] })).await;

    // Both instances have the catalog and the routes in memory now.
    for instance in [&app, &sibling] {
        assert_eq!(chat_status(instance, &key, "cached-model").await, 200);
    }
    assert_eq!((first.requests().len(), second.requests().len()), (2, 0));

    // A new route, saved through one instance, is taken by the next call
    // on the other.
    upsert_model(&app, &admin, model("cached-model", routed_to("second")))
        .await
        .data();
    assert_eq!(chat_status(&sibling, &key, "cached-model").await, 200);
    assert_eq!(chat_status(&app, &key, "cached-model").await, 200);
    assert_eq!((first.requests().len(), second.requests().len()), (2, 2));

    // So is a provider's new key, and its being switched off.
    let mut input = provider("second", Some("sk-second-0000000002"));
    input["baseUrl"] = json!(second.openai_base());
    upsert(&app, &admin, input.clone()).await.data();
    assert_eq!(chat_status(&sibling, &key, "cached-model").await, 200);
    assert_eq!(last_key(&second).as_deref(), Some("Bearer sk-second-0000000002"));
    input["enabled"] = json!(false);
    upsert(&app, &admin, input).await.data();
    assert_eq!(chat_status(&sibling, &key, "cached-model").await, 404);

    // And a change made in plain SQL, on neither instance.
    diesel::sql_query("UPDATE providers SET enabled = true WHERE key = 'second'")
        .execute(&mut app.db().await)
        .await
        .unwrap();
    assert_eq!(chat_status(&sibling, &key, "cached-model").await, 200);
    assert_eq!(second.requests().len(), 4);
    assert_eq!(first.requests().len(), 2);
}
