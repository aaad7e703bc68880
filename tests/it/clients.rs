//! The clients web apps and tools use, run by Node against a real server
//! (the scripts and their locked packages are in `tests/node`): the
//! GraphQL-over-HTTP audit.

use std::time::Duration;

use serde_json::Value;

use crate::harness::{
    TestApp,
    node::{self, NodeRun},
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
