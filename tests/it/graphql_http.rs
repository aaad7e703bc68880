//! GraphQL over HTTP as a client meets it: methods, limits and error codes.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{GqlResponse, TestApp, TestAppOptions};

/// The introspection query GraphiQL sends (graphql-js `getIntrospectionQuery`
/// with every option on).
pub(crate) const INTROSPECTION_QUERY: &str = r#"
query IntrospectionQuery {
  __schema {
    description
    queryType { name kind }
    mutationType { name kind }
    subscriptionType { name kind }
    types { ...FullType }
    directives { name description isRepeatable locations args(includeDeprecated: true) { ...InputValue } }
  }
}
fragment FullType on __Type {
  kind name description specifiedByURL isOneOf
  fields(includeDeprecated: true) { name description args(includeDeprecated: true) { ...InputValue } type { ...TypeRef } isDeprecated deprecationReason }
  inputFields(includeDeprecated: true) { ...InputValue }
  interfaces { ...TypeRef }
  enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
  possibleTypes { ...TypeRef }
}
fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue isDeprecated deprecationReason }
fragment TypeRef on __Type {
  kind name
  ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } } } }
}
"#;

async fn post_raw(app: &TestApp, body: impl Into<reqwest::Body>, content_type: &str) -> GqlResponse {
    let response = app
        .http()
        .post(app.url("/graphql"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    GqlResponse::from(response).await
}

#[tokio::test]
async fn queries_work_by_get_and_mutations_are_refused_there() {
    let app = TestApp::spawn().await;
    let response = app
        .http()
        .get(app.url("/graphql"))
        .query(&[("query", "{ plans { key } }")])
        .send()
        .await
        .unwrap();
    let response = GqlResponse::from(response).await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.data()["plans"][0]["key"], "free");

    let response = app
        .http()
        .get(app.url("/graphql"))
        .query(&[("query", "mutation { anything }")])
        .send()
        .await
        .unwrap();
    let response = GqlResponse::from(response).await;
    assert_eq!(response.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.error_code(), Some("BAD_USER_INPUT"));
}

#[tokio::test]
async fn batched_requests_are_refused() {
    let app = TestApp::spawn().await;
    let batch = json!([{ "query": "{ plans { key } }" }, { "query": "{ models { id } }" }]).to_string();
    let response = post_raw(&app, batch, "application/json").await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST);
    assert_eq!(response.error_code(), Some("BAD_USER_INPUT"));
}

#[tokio::test]
async fn an_oversized_body_gets_413_without_a_graphql_body() {
    let app = TestApp::spawn().await;
    let padding = "x".repeat(3 * 1024 * 1024);
    let body = json!({ "query": "{ plans { key } }", "variables": { "padding": padding } }).to_string();
    let response = app
        .http()
        .post(app.url("/graphql"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(response.text().await.unwrap().is_empty());
}

#[tokio::test]
async fn parse_validation_and_input_errors_carry_their_codes() {
    let app = TestApp::spawn().await;
    let cases: [(&str, Value, &str); 5] = [
        ("{ plans { key }", json!({}), "GRAPHQL_PARSE_FAILED"),
        ("{ plans { nonsense } }", json!({}), "GRAPHQL_VALIDATION_FAILED"),
        (
            "query ($n: String!) { __type(name: $n) { name } }",
            json!({ "n": 5 }),
            "BAD_USER_INPUT",
        ),
        ("{ __type(name: 5) { name } }", json!({}), "BAD_USER_INPUT"),
        (
            "query ($n: String!) { __type(name: $n) { name } }",
            json!({}),
            "BAD_USER_INPUT",
        ),
    ];
    for (query, variables, code) in cases {
        let response = app.graphql(query, variables).await;
        assert_eq!(response.error_code(), Some(code), "{query}: {}", response.body);
    }
    let wrong_type = app
        .graphql("query ($n: String!) { __type(name: $n) { name } }", json!({ "n": 5 }))
        .await;
    assert_eq!(wrong_type.body["errors"][0]["extensions"]["field"], "name");
    let not_json = post_raw(&app, "{not json", "application/json").await;
    assert_eq!(not_json.status, StatusCode::BAD_REQUEST);
    assert_eq!(not_json.error_code(), Some("GRAPHQL_PARSE_FAILED"));
}

#[tokio::test]
async fn depth_complexity_and_alias_limits_refuse_with_query_too_complex() {
    let app = TestApp::spawn_with(TestAppOptions {
        vars: vec![
            ("GRAPHQL_MAX_DEPTH".into(), "3".into()),
            // plans is a list (counted 10 times): 1 + 10 x 2 fields = 21.
            ("GRAPHQL_MAX_COMPLEXITY".into(), "21".into()),
        ],
        ..Default::default()
    })
    .await;
    let deep = app
        .graphql("{ __schema { types { fields { name } } } }", json!({}))
        .await;
    assert_eq!(deep.error_code(), Some("QUERY_TOO_COMPLEX"), "{}", deep.body);

    let wide = app
        .graphql("{ plans { key name priceCents currency public features } }", json!({}))
        .await;
    assert_eq!(wide.error_code(), Some("QUERY_TOO_COMPLEX"), "{}", wide.body);

    let within = app.graphql("{ plans { key name } }", json!({})).await;
    assert_eq!(within.data()["plans"][0]["key"], "free");

    let default_limits = TestApp::spawn().await;
    let aliases: String = (0..51).map(|i| format!("a{i}: clientConfig {{ version }} ")).collect();
    let aliased = default_limits.graphql(&format!("{{ {aliases} }}"), json!({})).await;
    assert_eq!(aliased.error_code(), Some("QUERY_TOO_COMPLEX"), "{}", aliased.body);
}

#[tokio::test]
async fn the_standard_introspection_query_passes_the_default_limits() {
    let app = TestApp::spawn().await;
    let response = app.graphql(INTROSPECTION_QUERY, json!({})).await;
    let schema = &response.data()["__schema"];
    assert_eq!(schema["queryType"]["name"], "Query");
    assert!(schema["types"].as_array().unwrap().iter().any(|t| t["name"] == "Plan"));
}

#[tokio::test]
async fn introspection_can_be_turned_off() {
    let app = TestApp::spawn_with(TestAppOptions {
        vars: vec![("INTROSPECTION".into(), "false".into())],
        ..Default::default()
    })
    .await;
    let response = app
        .graphql(
            "query { ...Q } fragment Q on Query { __schema { queryType { name } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        response.error_code(),
        Some("GRAPHQL_VALIDATION_FAILED"),
        "{}",
        response.body
    );
    assert_eq!(
        app.graphql("{ plans { key } }", json!({})).await.data()["plans"][0]["key"],
        "free"
    );
}

#[tokio::test]
async fn health_and_readiness_report_the_process_and_its_dependencies() {
    let app = TestApp::spawn().await;
    let health: Value = app
        .http()
        .get(app.url("/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
    assert!(health["uptimeSecs"].is_u64());

    let ready = app.http().get(app.url("/ready")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["checks"], json!({ "database": "ok", "redis": "ok" }));

    let without_redis = TestApp::spawn_with(TestAppOptions {
        without_redis: true,
        ..Default::default()
    })
    .await;
    let ready: Value = without_redis
        .http()
        .get(without_redis.url("/ready"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["checks"], json!({ "database": "ok" }));
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let app = TestApp::spawn().await;
    let response = app.http().get(app.url("/health")).send().await.unwrap();
    let id = response
        .headers()
        .get("x-request-id")
        .expect("x-request-id")
        .to_str()
        .unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");

    let response = app
        .http()
        .get(app.url("/health"))
        .header("x-request-id", "trace-me")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-me");
}

#[tokio::test]
async fn cors_allows_only_the_configured_origins() {
    let app = TestApp::spawn_with(TestAppOptions {
        vars: vec![("CORS_ORIGINS".into(), "https://app.example.com".into())],
        ..Default::default()
    })
    .await;
    let preflight = |origin: &'static str| {
        app.http()
            .request(reqwest::Method::OPTIONS, app.url("/graphql"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization, content-type")
            .send()
    };
    let allowed = preflight("https://app.example.com").await.unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let allowed_headers = allowed.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_owned();
    for header in [
        "authorization",
        "content-type",
        "apollo-require-preflight",
        "x-tollgate-csrf",
    ] {
        assert!(allowed_headers.contains(header), "{header}: {allowed_headers}");
    }

    let refused = preflight("https://evil.example.com").await.unwrap();
    assert!(refused.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn two_instances_share_one_database() {
    let a = TestApp::spawn().await;
    let b = a.spawn_sibling().await;
    assert_ne!(a.addr, b.addr);
    let id = crate::harness::create_user(&a, "shared@example.com", tollgate::auth::users::Role::User).await;
    // A token minted by one instance works on the other.
    let me = b
        .graphql_as(&a.token_for(id).await, "{ me { email } }", json!({}))
        .await;
    assert_eq!(me.data()["me"]["email"], "shared@example.com");
}

#[tokio::test]
async fn statements_are_counted_per_instance() {
    let app = TestApp::spawn().await;
    let before = app.query_count();
    app.graphql("{ plans { key } models { id } }", json!({})).await.data();
    assert_eq!(app.query_count() - before, 2, "one statement for plans, one for models");
}

/// A sign-up sent as `body` with `content_type` (None: no header).
async fn register_with(app: &TestApp, content_type: Option<&str>, email: &str) -> reqwest::Response {
    let body = json!({
        "query": crate::harness::people::REGISTER,
        "variables": { "input": { "email": email, "password": crate::harness::people::PASSWORD, "name": "Eve" } },
    })
    .to_string();
    let mut request = app.http().post(app.url("/graphql")).body(body);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn only_json_and_multipart_bodies_are_executed() {
    let app = TestApp::spawn().await;
    // What a page on another site can send without asking first.
    for (i, content_type) in [
        Some("text/plain"),
        Some("text/plain;charset=UTF-8"),
        Some("application/x-www-form-urlencoded"),
        None,
    ]
    .into_iter()
    .enumerate()
    {
        let response = register_with(&app, content_type, &format!("eve{i}@example.com")).await;
        assert_eq!(
            response.status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type:?}"
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT", "{body}");
        assert!(body.get("data").is_none(), "{body}");
    }
    // Nothing ran: the address is still free.
    let response = register_with(&app, Some("application/json; charset=utf-8"), "eve0@example.com").await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["data"]["register"]["user"]["email"], "eve0@example.com", "{body}");
}

#[tokio::test]
async fn a_multipart_request_needs_a_header_that_forces_a_preflight() {
    let app = TestApp::spawn().await;
    let operations = json!({ "query": "mutation ($file: Upload!) { uploadAvatar(file: $file) { id } }", "variables": { "file": null } });
    let form = || {
        reqwest::multipart::Form::new()
            .text("operations", operations.to_string())
            .text("map", json!({ "0": ["variables.file"] }).to_string())
            .part(
                "0",
                reqwest::multipart::Part::bytes(b"not a picture".to_vec()).file_name("a.png"),
            )
    };
    let bare = app
        .http()
        .post(app.url("/graphql"))
        .multipart(form())
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), StatusCode::BAD_REQUEST);
    let body: Value = bare.json().await.unwrap();
    let message = body["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("Apollo-Require-Preflight") && message.contains("X-Tollgate-Csrf"),
        "{body}"
    );
    assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
    // With any of the headers it runs (and, anonymous, is refused by the
    // resolver, not before).
    for header in ["apollo-require-preflight", "x-tollgate-csrf"] {
        let response = app
            .http()
            .post(app.url("/graphql"))
            .header(header, "1")
            .multipart(form())
            .send()
            .await
            .unwrap();
        let response = GqlResponse::from(response).await;
        assert_eq!(
            response.error_code(),
            Some("UNAUTHENTICATED"),
            "{header}: {}",
            response.body
        );
    }
}

/// POSTs `body` (JSON) with `accept`; the status, the Content-Type and
/// the body.
async fn post_accepting(app: &TestApp, accept: &str, token: Option<&str>, body: Value) -> (StatusCode, String, Value) {
    let mut request = app
        .http()
        .post(app.url("/graphql"))
        .header("accept", accept)
        .json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    (status, content_type, response.json().await.unwrap_or(Value::Null))
}

const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";

#[tokio::test]
async fn graphql_response_json_answers_request_errors_with_4xx_and_no_data() {
    let app = TestApp::spawn().await;
    for (query, variables, code) in [
        ("{ plans { key }", json!({}), "GRAPHQL_PARSE_FAILED"),
        ("{ plans { nonsense } }", json!({}), "GRAPHQL_VALIDATION_FAILED"),
        (
            "query ($n: String!) { __type(name: $n) { name } }",
            json!({ "n": 5 }),
            "BAD_USER_INPUT",
        ),
    ] {
        let body = json!({ "query": query, "variables": variables });
        let (status, content_type, answer) = post_accepting(&app, GRAPHQL_RESPONSE, None, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {answer}");
        assert!(content_type.starts_with(GRAPHQL_RESPONSE), "{content_type}");
        assert!(answer.get("data").is_none(), "{query}: {answer}");
        assert_eq!(answer["errors"][0]["extensions"]["code"], code, "{answer}");
        // The same under application/json: 200, still without data.
        let (status, content_type, answer) = post_accepting(&app, "application/json", None, body).await;
        assert_eq!(status, StatusCode::OK, "{query}: {answer}");
        assert!(content_type.starts_with("application/json"), "{content_type}");
        assert!(answer.get("data").is_none(), "{query}: {answer}");
    }

    // Executed: 200, with data, even when a field failed.
    let (status, content_type, answer) = post_accepting(
        &app,
        GRAPHQL_RESPONSE,
        None,
        json!({ "query": "{ me { id } plans { key } }" }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(content_type.starts_with(GRAPHQL_RESPONSE));
    assert_eq!(answer["data"]["me"], Value::Null);
    let (status, _, answer) = post_accepting(
        &app,
        GRAPHQL_RESPONSE,
        None,
        json!({ "query": "{ apiKeyInfo { apiKey { id } } }" }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "a field error is not a request error: {answer}");
    assert_eq!(answer["data"], Value::Null, "{answer}");
    assert_eq!(answer["errors"][0]["path"], json!(["apiKeyInfo"]));

    // Credentials that do not work: 401 with the code.
    let (status, _, answer) = post_accepting(
        &app,
        GRAPHQL_RESPONSE,
        Some("not-a-token"),
        json!({ "query": "{ me { id } }" }),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    assert_eq!(answer["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
    assert!(answer.get("data").is_none());
    let (status, _, answer) = post_accepting(
        &app,
        "application/json",
        Some("not-a-token"),
        json!({ "query": "{ me { id } }" }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");

    // Nothing the server speaks.
    let (status, _, _) = post_accepting(&app, "text/html", None, json!({ "query": "{ plans { key } }" })).await;
    assert_eq!(status, StatusCode::NOT_ACCEPTABLE);
    // A request without a query is malformed whatever the type.
    let (status, _, answer) =
        post_accepting(&app, "application/json", None, json!({ "qeury": "{ plans { key } }" })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
}

#[tokio::test]
async fn a_get_query_may_name_its_operation() {
    let app = TestApp::spawn().await;
    let response = app
        .http()
        .get(app.url("/graphql"))
        .query(&[
            (
                "query",
                "query A { plans { key } } query B { clientConfig { version } }",
            ),
            ("operationName", "B"),
        ])
        .send()
        .await
        .unwrap();
    let response = GqlResponse::from(response).await;
    assert!(
        response.data()["clientConfig"]["version"].is_string(),
        "{}",
        response.body
    );
    assert!(response.data().get("plans").is_none());
}
