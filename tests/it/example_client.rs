//! The TypeScript example client in `examples/`, run with Node against a
//! real server: its device login is approved from here, as a person would
//! on the verification page, the person's email is verified when it asks
//! for that, then it reports usage and watches it live.

use std::{path::PathBuf, process::Stdio, time::Duration};

use serde_json::json;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, BufReader},
    process::Command,
};

use crate::harness::{TestApp, TestAppOptions, llm_fake::FakeLlm, node, people};

const APPROVE: &str = "mutation ($code: String!) { approveDeviceLogin(userCode: $code) }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_client_signs_in_by_device_reports_usage_and_sees_it_live() {
    let turn = node::turn("examples").await;
    let examples = build_examples(&turn).await;
    // The server runs the gateway (one provider, the fake), so the client
    // finds clientConfig.llmBaseUrl and calls through it.
    let fake = FakeLlm::start().await;
    let app = TestApp::spawn_with(TestAppOptions {
        vars: vec![
            ("OPENAI_API_KEY".into(), "sk-provider-example-0123".into()),
            ("OPENAI_BASE_URL".into(), fake.openai_base()),
        ],
        ..Default::default()
    })
    .await;
    let ada = people::register(&app, "extension@example.test").await;

    let mut client = Command::new("node")
        .arg("dist/extension-client.js")
        .current_dir(&examples)
        .env("TOLLGATE_URL", app.url(""))
        .env("TOLLGATE_CLIENT_NAME", "Example client under test")
        // Plenty of calls for the subscription to start on a busy machine.
        .env("TOLLGATE_CALLS", "30")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("running node");
    let mut stderr = client.stderr.take().expect("the client's stderr");
    let errors = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });
    let mut lines = BufReader::new(client.stdout.take().expect("the client's stdout")).lines();

    let mut output = Vec::new();
    let run = tokio::time::timeout(Duration::from_secs(180), async {
        while let Some(line) = lines.next_line().await.expect("reading the client's output") {
            // The person follows the link of their verification email.
            if line.starts_with("Please verify your email first") {
                people::verify_email(&app, ada.user_id, "extension@example.test").await;
            }
            if let Some(code) = line.split("user code: ").nth(1) {
                let approved = app
                    .graphql_as(&ada.access, APPROVE, json!({ "code": code.trim() }))
                    .await;
                assert_eq!(approved.data()["approveDeviceLogin"], true, "{:?}", approved.body);
            }
            output.push(line);
        }
        client.wait().await.expect("waiting for the client")
    })
    .await;
    let errors = errors.await.unwrap_or_default();
    let output = output.join("\n");
    let status = run.unwrap_or_else(|_| panic!("the client did not finish in 180 s:\n{output}\n{errors}"));
    assert!(status.success(), "the client failed ({status}):\n{output}\n{errors}");

    assert!(output.contains("signed in"), "{output}");
    assert!(output.contains("email verified"), "{output}");
    let live = output
        .lines()
        .find(|line| line.starts_with("live: gpt-4o-mini") && line.ends_with("(this client)"));
    assert!(live.is_some(), "a live update of the client's own call:\n{output}");
    assert!(
        output
            .lines()
            .any(|line| line.starts_with("gateway ") && line.ends_with("Hello from the fake.")),
        "a call through the gateway:\n{output}"
    );
    assert!(!fake.requests().is_empty(), "the provider was called");

    // What it reported is what the organization's quota shows.
    let done: i64 = output
        .lines()
        .find_map(|line| line.strip_prefix("done: "))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("a closing line:\n{output}"));
    let quota = app
        .graphql_as(
            &ada.access,
            "{ me { memberships { organization { personal quota { tokensUsed } } } } }",
            json!({}),
        )
        .await;
    let used = quota.data()["me"]["memberships"][0]["organization"]["quota"]["tokensUsed"].as_i64();
    assert!(done > 0, "{output}");
    assert!(used >= Some(done), "the server counted {used:?}; the client saw {done}");
}

/// Compiles the examples' TypeScript (their packages are installed by
/// the turn).
async fn build_examples(_turn: &node::NodeTurn) -> PathBuf {
    let examples = node::root().join("examples");
    let built = Command::new("npm")
        .args(["run", "--silent", "build"])
        .current_dir(&examples)
        .output()
        .await
        .expect("running npm");
    assert!(
        built.status.success(),
        "npm run build in examples/ failed:\n{}{}",
        String::from_utf8_lossy(&built.stdout),
        String::from_utf8_lossy(&built.stderr)
    );
    examples
}
