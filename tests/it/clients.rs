//! The clients web apps and tools use, run by Node against a real server
//! (the scripts and their locked packages are in `tests/node`): the
//! GraphQL-over-HTTP audit, Apollo Client and urql.

use std::time::Duration;

use serde_json::{Value, json};

use crate::{
    field_errors::{World, world},
    harness::{
        TestApp,
        node::{self, NodeRun},
    },
};

/// How long one script may take on a busy machine.
const LIMIT: Duration = Duration::from_secs(180);

fn explain(run: &NodeRun) -> String {
    format!("stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_graphql_over_http_audit_finds_no_error_and_at_most_one_warning() {
    let turn = node::turn("tests/node").await;
    let app = TestApp::spawn().await;
    let run = node::run_script(&turn, "audit.mjs", &[("TOLLGATE_URL", app.url(""))], LIMIT).await;
    assert!(run.success, "{}", explain(&run));
    let report = run.report();
    let results = report["results"].as_array().expect("the audit's results");
    assert!(results.len() > 50, "the audit ran: {report}");
    let with = |status: &str| -> Vec<&Value> { results.iter().filter(|r| r["status"] == status).collect() };
    let (errors, warnings, notices) = (with("error"), with("warn"), with("notice"));
    let listed = |items: &[&Value]| {
        items
            .iter()
            .map(|r| format!("{} {}: {}", r["id"], r["name"], r["reason"]))
            .collect::<Vec<_>>()
            .join("\n")
    };
    eprintln!(
        "graphql-http audit: {} audits, {} errors, {} warnings, {} notices\n{}\n{}",
        results.len(),
        errors.len(),
        warnings.len(),
        notices.len(),
        listed(&warnings),
        listed(&notices)
    );
    assert!(errors.is_empty(), "failed MUSTs:\n{}", listed(&errors));
    assert!(warnings.len() <= 1, "failed SHOULDs:\n{}", listed(&warnings));
}

/// What the client scripts need: the server, a MEMBER of "P Org" (who may
/// not read its audit log), a key that reports usage, the organization.
fn env(world: &World) -> Vec<(&'static str, String)> {
    vec![
        ("TOLLGATE_URL", world.app.url("")),
        ("MEMBER_TOKEN", world.readers[0].token.clone()),
        ("KEY_SECRET", world.readers[1].token.clone()),
        ("ORG_ID", world.organization.clone()),
    ]
}

/// The gated query's answer: the organization with its name and a null
/// audit log, and the one FORBIDDEN error at that field.
fn assert_gated(report: &Value, world: &World) {
    let seen = &report["gated"];
    let org = &seen["data"]["organization"];
    assert_eq!(org["id"], json!(world.organization), "{report}");
    assert_eq!(org["name"], "P Org", "{report}");
    assert!(
        org.as_object().is_some_and(|o| o.get("auditLog") == Some(&Value::Null)),
        "auditLog is there and null: {report}"
    );
    assert_eq!(
        seen["errors"],
        json!([{ "message": "not allowed", "code": "FORBIDDEN", "path": ["organization", "auditLog"] }]),
        "{report}"
    );
}

/// Method, whether the document was sent, whether its hash was, and the
/// status, of each request a client made.
fn requests(list: &Value) -> Vec<(String, bool, bool, u64)> {
    list.as_array()
        .expect("the requests")
        .iter()
        .map(|r| {
            (
                r["method"].as_str().unwrap_or_default().to_owned(),
                r["withQuery"].as_bool().unwrap_or_default(),
                r["withHash"].as_bool().unwrap_or_default(),
                r["status"].as_u64().unwrap_or_default(),
            )
        })
        .collect()
}

fn request(method: &str, with_query: bool) -> (String, bool, bool, u64) {
    (method.to_owned(), with_query, true, 200)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apollo_client_caches_a_refused_field_as_null_mutates_subscribes_and_persists_queries() {
    let turn = node::turn("tests/node").await;
    let world = world().await;
    let run = node::run_script(&turn, "apollo.mjs", &env(&world), LIMIT).await;
    assert!(run.success, "{}", explain(&run));
    let report = run.report();

    // InMemoryCache took the answer whole: no "Missing field" (nor any
    // other) warning, and the cache reads it back.
    assert_eq!(report["logged"], json!([]), "Apollo warned: {report}");
    assert_gated(&report, &world);
    assert_eq!(report["cached"], report["gated"]["data"], "{report}");

    let receipt = &report["mutation"]["data"]["recordUsage"];
    assert_eq!(receipt["event"]["model"], "gpt-4o-mini", "{report}");
    assert_eq!(receipt["duplicate"], false);
    let event = &report["subscription"]["data"]["usageUpdated"]["event"];
    assert_eq!(event["model"], "gpt-4o-mini", "{report}");
    assert_eq!(event["totalTokens"], 15);

    // First client: the hash alone (GET), PersistedQueryNotFound, then the
    // document with its hash (POST). Second client: the hash suffices.
    let apq = report["apq"].as_array().expect("two rounds");
    assert_eq!(
        requests(&apq[0]["requests"]),
        [request("GET", false), request("POST", true)],
        "{report}"
    );
    assert_eq!(requests(&apq[1]["requests"]), [request("GET", false)], "{report}");
    for round in apq {
        assert_eq!(round["data"]["plans"][0]["key"], "free", "{report}");
        assert_eq!(round["errors"], json!([]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn urql_reads_a_refused_field_as_null_by_persisted_query_and_subscribes_over_graphql_ws() {
    let turn = node::turn("tests/node").await;
    let world = world().await;
    let run = node::run_script(&turn, "urql.mjs", &env(&world), LIMIT).await;
    assert!(run.success, "{}", explain(&run));
    let report = run.report();

    assert_gated(&report, &world);
    // Sent by hash first, then with the document (urql keeps to GET for
    // both); both answered 200 in the type urql prefers.
    assert_eq!(
        requests(&report["requests"]),
        [request("GET", false), request("GET", true)],
        "{report}"
    );
    for sent in report["requests"].as_array().into_iter().flatten() {
        let content_type = sent["contentType"].as_str().unwrap_or_default();
        assert!(
            content_type.starts_with("application/graphql-response+json"),
            "{report}"
        );
    }

    assert_eq!(
        report["mutation"]["data"]["recordUsage"]["event"]["model"], "gpt-4o-mini",
        "{report}"
    );
    let event = &report["subscription"]["data"]["usageUpdated"]["event"];
    assert_eq!(event["model"], "gpt-4o-mini", "{report}");
    assert_eq!(event["totalTokens"], 22);
}
