//! `/metrics` and `/ready`: what an operator's monitoring reads from each
//! instance.

use std::{process::Stdio, time::Duration};

use serde_json::{Value, json};

use crate::harness::{TestApp, TestAppOptions, people, ws};

/// The page `/metrics` serves now.
async fn scrape(app: &TestApp) -> String {
    let response = app.http().get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    response.text().await.unwrap()
}

/// The value of the sample written exactly as `series` (name and labels).
fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.parse().ok())
}

/// Scrapes until `series` has `value` (counters settle after the response
/// that changed them is sent).
async fn eventually(app: &TestApp, series: &str, value: f64) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let page = scrape(app).await;
        if sample(&page, series) == Some(value) {
            return page;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("{series} never became {value}:\n{page}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn operations_are_counted_by_name_and_outcome_with_latencies() {
    let app = TestApp::spawn().await;
    for _ in 0..2 {
        let ok = app.graphql("query Probe { plans { key } }", json!({})).await;
        assert!(ok.body.get("errors").is_none(), "{:?}", ok.body);
    }
    let invalid = app.graphql("query Broken { plans { nope } }", json!({})).await;
    assert_eq!(invalid.error_code(), Some("GRAPHQL_VALIDATION_FAILED"));
    let anonymous = app.graphql("mutation { logout }", json!({})).await;
    assert_eq!(anonymous.error_code(), Some("UNAUTHENTICATED"));
    let unparsable = app.graphql("query {", json!({})).await;
    assert_eq!(unparsable.error_code(), Some("GRAPHQL_PARSE_FAILED"));

    let page = eventually(
        &app,
        "tollgate_graphql_operations_total{type=\"query\",operation=\"Probe\",outcome=\"ok\"}",
        2.0,
    )
    .await;
    for (series, value) in [
        (
            "tollgate_graphql_operations_total{type=\"query\",operation=\"Broken\",outcome=\"GRAPHQL_VALIDATION_FAILED\"}",
            1.0,
        ),
        (
            "tollgate_graphql_operations_total{type=\"mutation\",operation=\"anonymous\",outcome=\"UNAUTHENTICATED\"}",
            1.0,
        ),
        (
            "tollgate_graphql_operations_total{type=\"unknown\",operation=\"unknown\",outcome=\"GRAPHQL_PARSE_FAILED\"}",
            1.0,
        ),
        (
            "tollgate_graphql_operation_duration_seconds_count{type=\"query\",operation=\"Probe\"}",
            2.0,
        ),
        (
            "tollgate_graphql_operation_duration_seconds_bucket{type=\"query\",operation=\"Probe\",le=\"+Inf\"}",
            2.0,
        ),
        (
            "tollgate_http_requests_total{method=\"POST\",route=\"/graphql\",status=\"200\"}",
            5.0,
        ),
        (
            "tollgate_http_request_duration_seconds_count{method=\"POST\",route=\"/graphql\"}",
            5.0,
        ),
        ("tollgate_db_pool_max_connections{pool=\"requests\"}", 16.0),
    ] {
        assert_eq!(sample(&page, series), Some(value), "{series} in\n{page}");
    }
    let sum = sample(
        &page,
        "tollgate_graphql_operation_duration_seconds_sum{type=\"query\",operation=\"Probe\"}",
    )
    .expect("a latency sum");
    assert!(sum > 0.0 && sum < 60.0, "{sum}");
    assert!(page.contains("# TYPE tollgate_graphql_operation_duration_seconds histogram\n"));
    assert!(page.contains("tollgate_db_pool_connections{pool=\"requests\",state=\"in_use\"} "));
    assert!(page.contains("tollgate_db_pool_waiting{pool=\"requests\"} 0\n"));
    let statements = sample(&page, "tollgate_db_statements_total").expect("a statement count");
    assert!(statements > 0.0, "the plans query ran SQL");
    assert!(page.contains("tollgate_build_info{version=\""));
}

#[tokio::test]
async fn open_websockets_and_subscriptions_are_counted() {
    let app = TestApp::spawn().await;
    let ada = people::register(&app, "metrics-ws@example.test").await;
    let me = app
        .graphql_as(&ada.access, "{ me { memberships { organization { id } } } }", json!({}))
        .await;
    let organization = me.data()["me"]["memberships"][0]["organization"]["id"].clone();

    let mut socket = ws::connect_as(&app, "graphql-transport-ws", &ada.access).await;
    eventually(&app, "tollgate_websockets_open", 1.0).await;
    ws::send(
        &mut socket,
        json!({ "id": "1", "type": "subscribe", "payload": {
            "query": "subscription Watch($org: ID!) { usageUpdated(organizationId: $org) { event { model } } }",
            "variables": { "org": organization },
        }}),
    )
    .await;
    ws::send(
        &mut socket,
        json!({ "id": "2", "type": "subscribe", "payload": {
            "query": "subscription Elsewhere { usageUpdated(organizationId: \"00000000-0000-0000-0000-000000000000\") { event { model } } }",
        }}),
    )
    .await;
    // The refused one answers at once; then report until the other delivers
    // (it may start a moment after it was sent).
    let mut refused = None;
    let mut delivered = None;
    for attempt in 0..50 {
        let input = json!({ "input": { "organizationId": organization, "model": "gpt-4o-mini",
            "promptTokens": 10, "completionTokens": 5, "requestId": format!("metrics-{attempt}") } });
        app.graphql_as(
            &ada.access,
            "mutation ($input: RecordUsageInput!) { recordUsage(input: $input) { duplicate } }",
            input,
        )
        .await;
        while let Some(message) = ws::receive_within(&mut socket, Duration::from_millis(300)).await {
            match (message["id"].as_str(), message["type"].as_str()) {
                (Some("2"), Some("error")) => refused = Some(message),
                (Some("1"), Some("next")) => delivered = Some(message),
                _ => {}
            }
        }
        if refused.is_some() && delivered.is_some() {
            break;
        }
    }
    assert_eq!(
        refused.expect("the refusal")["payload"][0]["extensions"]["code"],
        "NOT_FOUND"
    );
    assert!(delivered.is_some(), "a usage event");

    let page = scrape(&app).await;
    for (series, value) in [
        (
            "tollgate_graphql_operations_total{type=\"subscription\",operation=\"Watch\",outcome=\"ok\"}",
            1.0,
        ),
        (
            "tollgate_graphql_operations_total{type=\"subscription\",operation=\"Elsewhere\",outcome=\"NOT_FOUND\"}",
            1.0,
        ),
        ("tollgate_websocket_connections_total", 1.0),
    ] {
        assert_eq!(sample(&page, series), Some(value), "{series} in\n{page}");
    }
    assert!(
        !page.contains("tollgate_graphql_operation_duration_seconds_count{type=\"subscription\""),
        "a subscription's length is not a latency"
    );

    drop(socket);
    eventually(&app, "tollgate_websockets_open", 0.0).await;
}

#[tokio::test]
async fn recorded_usage_events_and_tokens_are_counted_once() {
    let app = TestApp::spawn().await;
    let ada = people::register(&app, "metrics-usage@example.test").await;
    let me = app
        .graphql_as(&ada.access, "{ me { memberships { organization { id } } } }", json!({}))
        .await;
    let organization = me.data()["me"]["memberships"][0]["organization"]["id"].clone();
    let record = "mutation ($input: RecordUsageInput!) { recordUsage(input: $input) { duplicate } }";
    for (request_id, prompt) in [("a", 1000), ("b", 200), ("a", 1000)] {
        let input = json!({ "input": { "organizationId": organization, "model": "gpt-4o-mini",
            "promptTokens": prompt, "completionTokens": 34, "requestId": request_id } });
        let response = app.graphql_as(&ada.access, record, input).await;
        assert!(response.body.get("errors").is_none(), "{:?}", response.body);
    }
    let page = eventually(&app, "tollgate_usage_events_recorded_total", 2.0).await;
    assert_eq!(
        sample(&page, "tollgate_usage_tokens_recorded_total"),
        Some(1268.0),
        "prompt plus completion tokens of the two new events:\n{page}"
    );
}

#[tokio::test]
async fn readiness_names_redis_when_it_stops_answering() {
    // A Redis of this test's own, to stop halfway.
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("redis.sock");
    let mut redis = tokio::process::Command::new("redis-server")
        .args(["--port", "0", "--save", "", "--appendonly", "no", "--unixsocket"])
        .arg(&socket)
        .arg("--dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("starting redis-server");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !socket.exists() {
        assert!(tokio::time::Instant::now() < deadline, "redis-server did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let app = TestApp::spawn_with(TestAppOptions {
        vars: vec![("REDIS_URL".to_owned(), format!("redis+unix://{}", socket.display()))],
        ..Default::default()
    })
    .await;
    let ready = |app: &TestApp| {
        let request = app.http().get(app.url("/ready")).send();
        async move {
            let response = request.await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    assert_eq!(
        ready(&app).await,
        (
            200,
            json!({ "status": "ok", "checks": { "database": "ok", "redis": "ok" } })
        )
    );

    redis.kill().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = ready(&app).await;
        if status == 503 {
            assert_eq!(
                body,
                json!({ "status": "unavailable", "checks": { "database": "ok", "redis": "unavailable" } })
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still ready without Redis: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The pool's size comes from DATABASE_POOL_SIZE, and a request that finds
/// every connection taken is counted as waiting until it gets one.
#[tokio::test]
async fn requests_waiting_for_a_full_pool_are_counted() {
    let app = TestApp::spawn_with(TestAppOptions {
        vars: vec![("DATABASE_POOL_SIZE".to_owned(), "2".to_owned())],
        ..Default::default()
    })
    .await;
    let page = scrape(&app).await;
    assert_eq!(
        sample(&page, "tollgate_db_pool_max_connections{pool=\"requests\"}"),
        Some(2.0)
    );
    assert_eq!(sample(&page, "tollgate_db_pool_waiting{pool=\"requests\"}"), Some(0.0));

    let held = [app.db().await, app.db().await];
    let models = app.graphql("{ models { id } }", json!({}));
    let watched = async {
        let page = eventually(&app, "tollgate_db_pool_waiting{pool=\"requests\"}", 1.0).await;
        assert_eq!(
            sample(
                &page,
                "tollgate_db_pool_connections{pool=\"requests\",state=\"in_use\"}"
            ),
            Some(2.0)
        );
        drop(held);
    };
    let (answer, ()) = tokio::join!(models, watched);
    assert!(answer.body.get("errors").is_none(), "{}", answer.body);
    eventually(&app, "tollgate_db_pool_waiting{pool=\"requests\"}", 0.0).await;
}
