//! Automatic persisted queries over the wire, as Apollo Client and urql
//! speak them (the clients themselves run in `clients.rs`).

use reqwest::StatusCode;
use serde_json::{Value, json};
use tollgate::graphql::persisted::sha256_hex;

use crate::harness::{GqlResponse, TestApp, TestAppOptions, services};

const PLANS: &str = "query Plans { plans { key } }";

fn persisted(hash: &str) -> Value {
    json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } })
}

/// A POST of `body` accepting `accept`.
async fn post(app: &TestApp, accept: &str, body: Value) -> GqlResponse {
    let response = app
        .http()
        .post(app.url("/graphql"))
        .header("accept", accept)
        .json(&body)
        .send()
        .await
        .unwrap();
    GqlResponse::from(response).await
}

/// A GET naming the document by hash only.
async fn get_by_hash(app: &TestApp, hash: &str) -> GqlResponse {
    let response = app
        .http()
        .get(app.url("/graphql"))
        .query(&[
            ("operationName", "Plans".to_owned()),
            ("extensions", persisted(hash).to_string()),
        ])
        .send()
        .await
        .unwrap();
    GqlResponse::from(response).await
}

fn assert_not_found(response: &GqlResponse) {
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    assert_eq!(response.body["errors"][0]["message"], "PersistedQueryNotFound");
    assert_eq!(response.error_code(), Some("PERSISTED_QUERY_NOT_FOUND"));
    assert!(response.body.get("data").is_none(), "{}", response.body);
}

#[tokio::test]
async fn a_document_is_sent_once_then_named_by_its_hash_over_post_and_get() {
    let app = TestApp::spawn().await;
    let hash = sha256_hex(PLANS);
    for accept in ["application/json", "application/graphql-response+json"] {
        let unknown = post(&app, accept, json!({ "extensions": persisted(&hash) })).await;
        assert_not_found(&unknown);
    }
    assert_not_found(&get_by_hash(&app, &hash).await);

    let registered = post(
        &app,
        "application/json",
        json!({ "query": PLANS, "extensions": persisted(&hash) }),
    )
    .await;
    assert_eq!(registered.data()["plans"][0]["key"], "free");

    let by_get = get_by_hash(&app, &hash).await;
    assert_eq!(by_get.data()["plans"][0]["key"], "free");
    let by_post = post(&app, "application/json", json!({ "extensions": persisted(&hash) })).await;
    assert_eq!(by_post.data()["plans"][0]["key"], "free");
}

#[tokio::test]
async fn a_hash_that_is_not_the_documents_is_refused_and_nothing_is_registered() {
    let app = TestApp::spawn().await;
    let other = sha256_hex("{ models { id } }");
    let wrong = post(
        &app,
        "application/graphql-response+json",
        json!({ "query": PLANS, "extensions": persisted(&other) }),
    )
    .await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST, "{}", wrong.body);
    assert_eq!(wrong.error_code(), Some("BAD_USER_INPUT"));
    assert_eq!(wrong.body["errors"][0]["extensions"]["field"], "sha256Hash");
    assert_not_found(&post(&app, "application/json", json!({ "extensions": persisted(&other) })).await);

    // A document that does not validate is not kept under its hash.
    let invalid = "{ plans { nonsense } }";
    let refused = post(
        &app,
        "application/json",
        json!({ "query": invalid, "extensions": persisted(&sha256_hex(invalid)) }),
    )
    .await;
    assert_eq!(refused.error_code(), Some("GRAPHQL_VALIDATION_FAILED"));
    assert_not_found(
        &post(
            &app,
            "application/json",
            json!({ "extensions": persisted(&sha256_hex(invalid)) }),
        )
        .await,
    );

    let version = post(
        &app,
        "application/json",
        json!({ "query": PLANS, "extensions": { "persistedQuery": { "version": 2, "sha256Hash": sha256_hex(PLANS) } } }),
    )
    .await;
    assert_eq!(version.error_code(), Some("BAD_USER_INPUT"), "{}", version.body);
}

#[tokio::test]
async fn mutations_named_by_hash_are_still_refused_over_get() {
    let app = TestApp::spawn().await;
    let logout = "mutation Plans { logout }";
    let hash = sha256_hex(logout);
    post(
        &app,
        "application/json",
        json!({ "query": logout, "extensions": persisted(&hash) }),
    )
    .await;
    let response = get_by_hash(&app, &hash).await;
    assert_eq!(response.status, StatusCode::METHOD_NOT_ALLOWED, "{}", response.body);
}

#[tokio::test]
async fn instances_share_documents_through_redis_under_the_deployments_prefix() {
    let a = TestApp::spawn().await;
    let b = a.spawn_sibling().await;
    let hash = sha256_hex(PLANS);
    post(
        &a,
        "application/json",
        json!({ "query": PLANS, "extensions": persisted(&hash) }),
    )
    .await;
    let elsewhere = get_by_hash(&b, &hash).await;
    assert_eq!(elsewhere.data()["plans"][0]["key"], "free");

    let client = redis::Client::open(services().redis_url.as_str()).unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    let key = format!("{}:apq:{hash}", a.database);
    let (stored, ttl): (Option<String>, i64) = redis::pipe().get(&key).ttl(&key).query_async(&mut redis).await.unwrap();
    assert_eq!(stored.as_deref(), Some(PLANS));
    assert!(ttl > 0, "a TTL: {ttl}");

    // Without Redis each instance keeps its own.
    let alone = TestApp::spawn_with(TestAppOptions {
        without_redis: true,
        ..Default::default()
    })
    .await;
    let sibling = alone.spawn_sibling().await;
    post(
        &alone,
        "application/json",
        json!({ "query": PLANS, "extensions": persisted(&hash) }),
    )
    .await;
    assert_eq!(get_by_hash(&alone, &hash).await.data()["plans"][0]["key"], "free");
    assert_not_found(&get_by_hash(&sibling, &hash).await);
}
