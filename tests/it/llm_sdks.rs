//! The official OpenAI and Anthropic SDKs (npm `openai`, `@anthropic-ai/sdk`)
//! against a real server whose gateway carries their calls to the fake
//! provider: what the SDKs read is what the provider said, the gateway's
//! refusals are the SDKs' usual exceptions, and every call is metered.

use std::time::Duration;

use serde_json::{Value, json};

use crate::{
    harness::{
        TestApp, TestAppOptions,
        llm_fake::{Behaviour, FakeLlm, FakeUsage},
        node,
    },
    usage::{admin_token, create_key, team},
};

/// The provider's own keys: the callers never see them.
const OPENAI_PROVIDER_KEY: &str = "sk-provider-openai-0123456789";
const ANTHROPIC_PROVIDER_KEY: &str = "sk-ant-provider-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_sdks_call_through_the_gateway_and_every_call_is_metered() {
    let turn = node::turn("tests/node").await;
    let fake = FakeLlm::start().await;
    // One environment variable per provider makes the gateway work.
    let app = TestApp::spawn_with(TestAppOptions {
        vars: vec![
            ("OPENAI_API_KEY".into(), OPENAI_PROVIDER_KEY.into()),
            ("OPENAI_BASE_URL".into(), fake.openai_base()),
            ("ANTHROPIC_API_KEY".into(), ANTHROPIC_PROVIDER_KEY.into()),
            ("ANTHROPIC_BASE_URL".into(), fake.anthropic_base()),
        ],
        ..Default::default()
    })
    .await;
    let admin = admin_token(&app).await;
    let embedding = app
        .graphql_as(
            &admin,
            r#"mutation { upsertModel(input: { id: "text-embedding-3-small", provider: "openai",
                displayName: "Embedding 3 small", inputUsdPerMillionTokens: 0.02, outputUsdPerMillionTokens: 0,
                routes: [{ providerKey: "openai", upstreamModel: "text-embedding-3-small" }] }) { callable } }"#,
            json!({}),
        )
        .await;
    assert_eq!(embedding.data()["upsertModel"]["callable"], true);
    let team = team(&app, "sdks.test", &[]).await;
    let (_, key) = create_key(&app, &team.owner.access, &team.id, json!({ "scopes": ["LLM"] })).await;

    let usage = FakeUsage {
        prompt: 20,
        cached: 5,
        completion: 9,
        cache_creation: 3,
    };
    for _ in 0..5 {
        fake.push(Behaviour {
            usage: Some(usage),
            ..Behaviour::default()
        });
    }
    let env = [
        ("TOLLGATE_BASE", app.url("").trim_end_matches('/').to_owned()),
        ("TOLLGATE_KEY", key.clone()),
        ("OPENAI_MODEL", "gpt-4o-mini".to_owned()),
        ("ANTHROPIC_MODEL", "claude-sonnet-4-5".to_owned()),
    ];
    let run = node::run_script(&turn, "llm_sdks.mjs", &env, Duration::from_secs(120)).await;
    assert!(run.success, "{}\n{}", run.stdout, run.stderr);
    let report = run.report();

    let chat = &report["openaiChat"];
    assert_eq!(chat["text"], "Hello from the fake.", "{report}");
    assert_eq!(chat["usage"]["prompt_tokens_details"]["cached_tokens"], 5);
    let chat_request_id = chat["requestId"].as_str().expect("x-tollgate-request-id").to_owned();
    let stream = &report["openaiStream"];
    assert_eq!(stream["text"], "Hello from the fake.", "{report}");
    assert_eq!(
        stream["usage"]["total_tokens"], 29,
        "the caller asked for the usage chunk: {report}"
    );
    let embeddings = &report["embeddings"];
    assert_eq!(embeddings["count"], 2, "{report}");
    assert_eq!(embeddings["dimensions"], 8, "base64 passed through untouched: {report}");
    let message = &report["anthropicMessage"];
    assert_eq!(message["text"], "Hello from the fake.", "{report}");
    assert_eq!(
        message["usage"],
        json!({ "input_tokens": 12, "cache_read_input_tokens": 5, "cache_creation_input_tokens": 3, "output_tokens": 9 })
    );
    let streamed = &report["anthropicStream"];
    assert_eq!(streamed["text"], "Hello from the fake.", "{report}");
    assert_eq!(streamed["usage"]["output_tokens"], 9);
    assert_eq!(streamed["stopReason"], "end_turn");
    for bad in ["openaiBadKey", "anthropicBadKey"] {
        let refused = &report[bad];
        assert_eq!(refused["status"], 401, "{report}");
        assert_eq!(refused["className"], "AuthenticationError", "{report}");
    }

    // The provider saw its own key, never the caller's, and the bad keys
    // never reached it.
    let upstream = fake.requests();
    assert_eq!(upstream.len(), 5, "refused calls never reach the provider");
    for request in &upstream {
        let credentials = format!("{:?}", request.headers);
        assert!(
            !credentials.contains(&key),
            "the caller's key was forwarded: {credentials}"
        );
        match request.path.as_str() {
            "/v1/messages" => assert_eq!(request.header("x-api-key"), Some(ANTHROPIC_PROVIDER_KEY)),
            _ => assert_eq!(
                request.header("authorization"),
                Some(format!("Bearer {OPENAI_PROVIDER_KEY}").as_str())
            ),
        }
    }

    // Five PROXY events with the provider's own counts.
    let events = app
        .graphql_as(
            &team.owner.access,
            "query ($id: ID!) { organization(id: $id) { quota { tokensUsed tokensReserved }
               usageEvents(first: 10) { nodes { model promptTokens cachedTokens completionTokens source estimated provider requestId } } } }",
            json!({ "id": team.id }),
        )
        .await;
    let organization = &events.data()["organization"];
    let nodes = organization["usageEvents"]["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 5, "{organization}");
    assert!(
        nodes.iter().all(|e| e["source"] == "PROXY" && e["estimated"] == false),
        "{organization}"
    );
    let by_model = |model: &str| nodes.iter().filter(|e| e["model"] == model).count();
    assert_eq!(
        (
            by_model("gpt-4o-mini"),
            by_model("claude-sonnet-4-5"),
            by_model("text-embedding-3-small")
        ),
        (2, 2, 1)
    );
    let chat_event = nodes
        .iter()
        .find(|e| e["requestId"] == chat_request_id.as_str())
        .expect("the chat call's event carries its request id");
    assert_eq!(
        (
            &chat_event["provider"],
            &chat_event["promptTokens"],
            &chat_event["cachedTokens"],
            &chat_event["completionTokens"]
        ),
        (&json!("openai"), &json!(20), &json!(5), &json!(9))
    );
    let claude: Vec<&Value> = nodes.iter().filter(|e| e["model"] == "claude-sonnet-4-5").collect();
    for event in claude {
        // Anthropic: prompt = input + cache reads + cache writes.
        assert_eq!(
            (&event["provider"], &event["promptTokens"], &event["cachedTokens"]),
            (&json!("anthropic"), &json!(20), &json!(5))
        );
    }
    assert_eq!(organization["quota"]["tokensReserved"], 0);
}
