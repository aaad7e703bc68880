//! The LLM gateway end to end, against the fake provider: calls carried
//! with the provider's key and recorded as PROXY events (JSON and streams,
//! OpenAI and Anthropic, embeddings), estimates when a provider reports no
//! usage or the caller hangs up, fallback and the circuit breaker,
//! refusals in each API's own shape, budgets that concurrent calls cannot
//! pass, and reservations in the quota and after a crash.

use std::time::{Duration, Instant};

use axum::{Json, Router, http::HeaderMap, routing::post};
use chrono::TimeDelta;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use futures_util::{StreamExt, future::join_all};
use serde_json::{Value, json};
use tollgate::{
    db::schema::{model_routes, plans, providers},
    gateway::wire::{Api, CallRequest},
    usage::reservations,
};
use tollgate_services::providers::{ProviderKind, ProviderRow, RouteRow};

use crate::{
    harness::{
        TestApp, TestAppOptions,
        llm_fake::{Behaviour, FakeLlm, FakeUsage},
        people::{SignedIn, personal_organization, register_verified},
    },
    usage::{create_key, mid_month, set_free_plan},
};

const OPENAI_SECRET: &str = "sk-proj-provider-secret-openai-0123456789";
const ANTHROPIC_SECRET: &str = "sk-ant-provider-secret-anthropic-0123456789";
const BACKUP_SECRET: &str = "sk-or-provider-secret-backup-0123456789";
const ECHO_SECRET: &str = "sk-echo-provider-secret-0123456789";

const EVENTS: &str = "query ($id: ID!) { organization(id: $id) { usageEvents(first: 100) { nodes {
    model promptTokens cachedTokens completionTokens requestId source estimated provider } } } }";
const QUOTA: &str = "query ($id: ID!) { organization(id: $id) { quota { tokensUsed tokensReserved tokenLimit } } }";

/// An app with the fake behind two providers: `openai` (routes
/// gpt-4o-mini) and `anthropic` (routes claude-sonnet-4); and a person
/// with an LLM key in their personal organization.
struct Gw {
    app: TestApp,
    fake: FakeLlm,
    owner: SignedIn,
    org: String,
    key: String,
}

async fn gateway() -> Gw {
    gateway_with(TestAppOptions::default()).await
}

async fn gateway_with(options: TestAppOptions) -> Gw {
    let app = TestApp::spawn_with(options).await;
    app.clock.set(mid_month());
    set_free_plan(&app, None, None, None).await;
    // Some tests make several keys.
    diesel::update(plans::table.filter(plans::key.eq("free")))
        .set(plans::max_api_keys.eq(None::<i32>))
        .execute(&mut app.db().await)
        .await
        .unwrap();
    let owner = register_verified(&app, "owner@gateway.test").await;
    let org = personal_organization(&app, &owner.access).await;
    let (_, key) = create_key(&app, &owner.access, &org, json!({ "scopes": ["LLM"] })).await;
    let fake = FakeLlm::start().await;
    add_provider(&app, "openai", ProviderKind::OpenAi, &fake.openai_base(), OPENAI_SECRET).await;
    add_provider(
        &app,
        "anthropic",
        ProviderKind::Anthropic,
        &fake.anthropic_base(),
        ANTHROPIC_SECRET,
    )
    .await;
    add_route(&app, "gpt-4o-mini", 0, "openai", "gpt-4o-mini-2024-07-18").await;
    add_route(&app, "claude-sonnet-4", 0, "anthropic", "claude-sonnet-4-20250514").await;
    Gw {
        app,
        fake,
        owner,
        org,
        key,
    }
}

/// A provider row, its key encrypted as upsertProvider stores it.
async fn add_provider(app: &TestApp, key: &str, kind: ProviderKind, base_url: &str, secret: &str) {
    let now = app.state.now();
    let row = ProviderRow {
        key: key.to_owned(),
        name: key.to_owned(),
        kind,
        base_url: base_url.to_owned(),
        api_key_ciphertext: Some(app.state.secrets().encrypt(secret).unwrap()),
        api_key_hint: Some(secret[secret.len() - 4..].to_owned()),
        enabled: true,
        created_at: now,
        updated_at: now,
    };
    diesel::insert_into(providers::table)
        .values(&row)
        .execute(&mut app.db().await)
        .await
        .unwrap();
}

async fn add_route(app: &TestApp, model: &str, position: i32, provider: &str, upstream_model: &str) {
    let row = RouteRow {
        model_id: model.to_owned(),
        position,
        provider_key: provider.to_owned(),
        upstream_model: upstream_model.to_owned(),
    };
    diesel::insert_into(model_routes::table)
        .values(&row)
        .execute(&mut app.db().await)
        .await
        .unwrap();
}

/// A chat body for gpt-4o-mini.
fn chat(stream: bool, include_usage: bool) -> Value {
    let mut body = json!({ "model": "gpt-4o-mini", "messages": [{ "role": "user", "content": "Say hello" }] });
    if stream {
        body["stream"] = json!(true);
    }
    if include_usage {
        body["stream_options"] = json!({ "include_usage": true });
    }
    body
}

/// A Messages body for claude-sonnet-4.
fn message(stream: bool) -> Value {
    json!({ "model": "claude-sonnet-4", "max_tokens": 64, "stream": stream,
            "messages": [{ "role": "user", "content": "Say hello" }] })
}

/// The gateway's prompt estimate of a body.
fn estimate(api: Api, body: &Value) -> i64 {
    CallRequest::parse(api, body.to_string().as_bytes())
        .unwrap()
        .prompt_estimate
}

impl Gw {
    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.app.http().post(self.app.url(path))
    }

    async fn chat(&self, body: &Value) -> reqwest::Response {
        self.post("/v1/chat/completions")
            .bearer_auth(&self.key)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    async fn messages(&self, body: &Value) -> reqwest::Response {
        self.post("/v1/messages")
            .header("x-api-key", &self.key)
            .header("anthropic-version", "2023-06-01")
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// The organization's usage events, newest first.
    async fn events(&self) -> Vec<Value> {
        let response = self
            .app
            .graphql_as(&self.owner.access, EVENTS, json!({ "id": self.org }))
            .await;
        response.data()["organization"]["usageEvents"]["nodes"]
            .as_array()
            .unwrap()
            .clone()
    }

    /// The events once there are `count` of them (streams are settled
    /// after their last byte is sent).
    async fn events_eventually(&self, count: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let events = self.events().await;
            if events.len() >= count || Instant::now() > deadline {
                assert_eq!(events.len(), count, "{events:?}");
                return events;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn quota(&self) -> Value {
        let response = self
            .app
            .graphql_as(&self.owner.access, QUOTA, json!({ "id": self.org }))
            .await;
        response.data()["organization"]["quota"].clone()
    }

    async fn metrics(&self) -> String {
        let response = self.app.http().get(self.app.url("/metrics")).send().await.unwrap();
        response.text().await.unwrap()
    }
}

fn request_id(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("x-tollgate-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("every answer names its request")
        .to_owned()
}

/// The `data:` of each server-sent event.
fn sse_data(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter_map(|block| {
            block
                .lines()
                .find_map(|line| line.strip_prefix("data: ").map(str::to_owned))
        })
        .collect()
}

/// The JSON chunks of an OpenAI stream, and whether it ended with [DONE].
fn openai_chunks(text: &str) -> (Vec<Value>, bool) {
    let data = sse_data(text);
    let done = data.last().is_some_and(|d| d == "[DONE]");
    let chunks = data
        .iter()
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    (chunks, done)
}

fn proxy_event(model: &str, tokens: (i64, i64, i64), request_id: &str, provider: &str, estimated: bool) -> Value {
    json!({ "model": model, "promptTokens": tokens.0, "cachedTokens": tokens.1, "completionTokens": tokens.2,
            "requestId": request_id, "source": "PROXY", "estimated": estimated, "provider": provider })
}

#[tokio::test]
async fn openai_chat_goes_upstream_with_the_providers_key_and_is_recorded_as_a_proxy_event() {
    let gw = gateway().await;
    gw.fake.push(Behaviour {
        text: "Hi there".into(),
        usage: Some(FakeUsage {
            prompt: 21,
            cached: 5,
            completion: 7,
            cache_creation: 0,
        }),
        ..Behaviour::default()
    });
    let mut body = chat(false, false);
    body["max_tokens"] = json!(50);
    let response = gw.chat(&body).await;
    assert_eq!(response.status(), 200);
    let id = request_id(&response);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["choices"][0]["message"]["content"], "Hi there");

    let sent = gw.fake.requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].path, "/v1/chat/completions");
    assert_eq!(sent[0].body["model"], "gpt-4o-mini-2024-07-18");
    assert_eq!(sent[0].body["max_tokens"], 50, "the caller's own limit is kept");
    let bearer = format!("Bearer {OPENAI_SECRET}");
    assert_eq!(sent[0].header("authorization"), Some(bearer.as_str()));
    assert!(
        sent[0]
            .headers
            .values()
            .all(|value| !String::from_utf8_lossy(value.as_bytes()).contains(&gw.key)),
        "the caller's key is never forwarded"
    );
    assert_eq!(
        gw.events().await,
        vec![proxy_event("gpt-4o-mini", (21, 5, 7), &id, "openai", false)]
    );
    assert_eq!(gw.quota().await["tokensReserved"], 0);

    // `x-api-key` carries a key as well as `Authorization: Bearer`.
    let response = gw
        .post("/v1/chat/completions")
        .header("x-api-key", &gw.key)
        .json(&chat(false, false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let page = gw.metrics().await;
    assert!(
        page.contains("tollgate_gateway_requests_total{provider=\"openai\",model=\"gpt-4o-mini\",outcome=\"ok\"} 2"),
        "{page}"
    );
    assert!(page.contains("tollgate_gateway_upstream_latency_seconds_count{provider=\"openai\"} 2"));
}

#[tokio::test]
async fn openai_streams_pass_the_usage_chunk_only_when_asked_and_are_always_metered() {
    let gw = gateway().await;
    let usage = FakeUsage {
        prompt: 30,
        cached: 10,
        completion: 9,
        cache_creation: 0,
    };
    // (the caller asks for usage, the provider puts it on a chunk with choices)
    let cases = [(false, false), (true, false), (false, true), (true, true)];
    let mut ids = Vec::new();
    for (index, (asks, on_choices)) in cases.into_iter().enumerate() {
        gw.fake.push(Behaviour {
            text: "Hello, streamed world".into(),
            usage: Some(usage),
            usage_chunk_has_choices: on_choices,
            ..Behaviour::default()
        });
        let response = gw.chat(&chat(true, asks)).await;
        assert_eq!(response.status(), 200);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        ids.push(request_id(&response));
        let (chunks, done) = openai_chunks(&response.text().await.unwrap());
        assert!(done, "the stream ends with [DONE]");
        let text: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(text, "Hello, streamed world");
        let usage_only = chunks
            .iter()
            .filter(|c| c["choices"].as_array().is_some_and(Vec::is_empty))
            .count();
        let with_counts = chunks.iter().filter(|c| c["usage"]["prompt_tokens"] == 30).count();
        match (asks, on_choices) {
            (false, _) => assert_eq!((usage_only, with_counts), (0, 0), "{chunks:?}"),
            (true, false) => assert_eq!((usage_only, with_counts), (1, 1), "{chunks:?}"),
            // The counts ride on the last chunk with content, as the provider sent them.
            (true, true) => assert_eq!((usage_only, with_counts), (0, 1), "{chunks:?}"),
        }
        let sent = &gw.fake.requests()[index];
        assert_eq!(
            sent.body["stream_options"]["include_usage"], true,
            "the gateway always asks for usage"
        );
    }
    let events = gw.events_eventually(4).await;
    for id in &ids {
        let event = events.iter().find(|e| e["requestId"] == id.as_str()).unwrap();
        assert_eq!(event, &proxy_event("gpt-4o-mini", (30, 10, 9), id, "openai", false));
    }
    assert_eq!(gw.quota().await["tokensReserved"], 0);
    let page = gw.metrics().await;
    assert!(page.contains("tollgate_gateway_time_to_first_token_seconds_count{provider=\"openai\"} 4"));
}

#[tokio::test]
async fn anthropic_messages_count_cache_reads_and_writes_in_the_prompt() {
    let gw = gateway().await;
    // input 10 + cache reads 30 + cache writes 5.
    let usage = |completion| FakeUsage {
        prompt: 45,
        cached: 30,
        completion,
        cache_creation: 5,
    };
    gw.fake.push(Behaviour {
        text: "Bonjour".into(),
        usage: Some(usage(7)),
        ..Behaviour::default()
    });
    let response = gw
        .post("/v1/messages")
        .header("x-api-key", &gw.key)
        .header("anthropic-version", "2023-06-01")
        .header("anthropic-beta", "prompt-caching-2024-07-31")
        .json(&message(false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let json_id = request_id(&response);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["content"][0]["text"], "Bonjour");
    let sent = &gw.fake.requests()[0];
    assert_eq!(sent.path, "/v1/messages");
    assert_eq!(sent.body["model"], "claude-sonnet-4-20250514");
    assert_eq!(sent.header("x-api-key"), Some(ANTHROPIC_SECRET));
    assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(sent.header("anthropic-beta"), Some("prompt-caching-2024-07-31"));
    assert_eq!(sent.header("authorization"), None);

    // Streamed, with the key as a bearer token (Claude Code's
    // ANTHROPIC_AUTH_TOKEN) and no version: the gateway sends its own.
    gw.fake.push(Behaviour {
        text: "Bonjour, streamed".into(),
        usage: Some(usage(9)),
        ..Behaviour::default()
    });
    let response = gw
        .post("/v1/messages")
        .bearer_auth(&gw.key)
        .json(&message(true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let stream_id = request_id(&response);
    let text = response.text().await.unwrap();
    assert!(text.contains("event: message_stop"), "{text}");
    assert_eq!(gw.fake.requests()[1].header("anthropic-version"), Some("2023-06-01"));

    let events = gw.events_eventually(2).await;
    assert_eq!(
        events,
        vec![
            // message_delta's output count is cumulative: the last one counts.
            proxy_event("claude-sonnet-4", (45, 30, 9), &stream_id, "anthropic", false),
            proxy_event("claude-sonnet-4", (45, 30, 7), &json_id, "anthropic", false),
        ]
    );
}

#[tokio::test]
async fn embeddings_are_carried_and_recorded() {
    let gw = gateway().await;
    diesel::sql_query(
        "INSERT INTO models (id, aliases, provider, display_name, input_micro_usd_per_mtok, output_micro_usd_per_mtok,
                             enabled, sort_order)
         VALUES ('text-embedding-3-small', '{}', 'openai', 'Embedding 3 small', 20000, 0, true, 100)",
    )
    .execute(&mut gw.app.db().await)
    .await
    .unwrap();
    add_route(&gw.app, "text-embedding-3-small", 0, "openai", "text-embedding-3-small").await;
    gw.fake.push(Behaviour {
        usage: Some(FakeUsage {
            prompt: 8,
            ..FakeUsage::default()
        }),
        ..Behaviour::default()
    });
    let response = gw
        .post("/v1/embeddings")
        .bearer_auth(&gw.key)
        .json(&json!({ "model": "text-embedding-3-small", "input": ["one", "two"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let id = request_id(&response);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["data"].as_array().unwrap().len(), 2);
    assert_eq!(gw.fake.requests()[0].path, "/v1/embeddings");
    assert_eq!(
        gw.events().await,
        vec![proxy_event("text-embedding-3-small", (8, 0, 0), &id, "openai", false)]
    );
}

#[tokio::test]
async fn answers_without_usage_are_recorded_as_estimated() {
    let gw = gateway().await;
    let text = "An answer of a good many words, none of them counted by the provider.";
    let body = chat(false, false);
    let prompt = estimate(Api::Chat, &body);
    gw.fake.push(Behaviour {
        text: text.into(),
        usage: None,
        ..Behaviour::default()
    });
    let response = gw.chat(&body).await;
    assert_eq!(response.status(), 200);
    let json_id = request_id(&response);
    gw.fake.push(Behaviour {
        text: text.into(),
        usage: None,
        ..Behaviour::default()
    });
    let response = gw.chat(&chat(true, true)).await;
    let stream_id = request_id(&response);
    let (_, done) = openai_chunks(&response.text().await.unwrap());
    assert!(done);

    gw.fake.push(Behaviour {
        text: text.into(),
        usage: None,
        ..Behaviour::default()
    });
    let response = gw.messages(&message(false)).await;
    assert_eq!(response.status(), 200);
    let messages_id = request_id(&response);
    let messages_prompt = estimate(Api::Messages, &message(false));

    let events = gw.events_eventually(3).await;
    for (id, prompt) in [
        (&json_id, prompt),
        (&stream_id, prompt),
        (&messages_id, messages_prompt),
    ] {
        let event = events.iter().find(|e| e["requestId"] == id.as_str()).unwrap();
        assert_eq!(event["estimated"], true, "{event}");
        assert_eq!(event["promptTokens"], prompt, "{event}");
        let completion = event["completionTokens"].as_i64().unwrap();
        assert!((5..=40).contains(&completion), "{event}");
    }
}

#[tokio::test]
async fn a_caller_who_hangs_up_mid_stream_stops_the_call_and_is_billed_for_what_was_generated() {
    let gw = gateway().await;
    gw.fake.push(Behaviour {
        text: "word ".repeat(200),
        chunks: 40,
        chunk_interval: Duration::from_millis(50),
        ..Behaviour::default()
    });
    let response = gw.chat(&chat(true, true)).await;
    assert_eq!(response.status(), 200);
    let id = request_id(&response);
    let mut body = response.bytes_stream();
    let mut seen = String::new();
    while seen.matches("word").count() < 20 {
        seen.push_str(std::str::from_utf8(&body.next().await.unwrap().unwrap()).unwrap());
    }
    drop(body);

    let deadline = Instant::now() + Duration::from_secs(5);
    while gw.fake.streams_cancelled() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(gw.fake.streams_cancelled(), 1, "the upstream call was stopped");
    assert_eq!(gw.fake.in_flight(), 0);
    let events = gw.events_eventually(1).await;
    let event = &events[0];
    assert_eq!(event["requestId"], id.as_str());
    assert_eq!(event["estimated"], true);
    assert_eq!(event["provider"], "openai");
    assert!(event["promptTokens"].as_i64().unwrap() > 0, "{event}");
    assert!(event["completionTokens"].as_i64().unwrap() > 0, "{event}");
    assert_eq!(gw.quota().await["tokensReserved"], 0);
}

/// A port nothing listens on.
async fn closed_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn failures_before_the_first_byte_move_on_to_the_next_route() {
    let gw = gateway_with(TestAppOptions {
        vars: vec![("LLM_FIRST_BYTE_TIMEOUT_SECS".into(), "1".into())],
        ..TestAppOptions::default()
    })
    .await;
    let backup = FakeLlm::start().await;
    add_provider(
        &gw.app,
        "backup",
        ProviderKind::OpenAiCompatible,
        &backup.openai_base(),
        BACKUP_SECRET,
    )
    .await;
    add_route(&gw.app, "gpt-4o-mini", 1, "backup", "openai/gpt-4o-mini").await;
    let cases = [
        (
            "a 500",
            Behaviour {
                status: 500,
                ..Behaviour::default()
            },
        ),
        (
            "a 429",
            Behaviour {
                status: 429,
                ..Behaviour::default()
            },
        ),
        (
            "a slow start",
            Behaviour {
                delay_before_headers: Duration::from_secs(3),
                ..Behaviour::default()
            },
        ),
    ];
    let mut ids = Vec::new();
    for (case, behaviour) in cases {
        gw.fake.push(behaviour);
        let started = Instant::now();
        let response = gw.chat(&chat(false, false)).await;
        assert_eq!(response.status(), 200, "{case}");
        assert!(started.elapsed() < Duration::from_secs(3), "{case}");
        ids.push(request_id(&response));
    }
    assert_eq!(gw.fake.requests().len(), 3);
    let sent = backup.requests();
    assert_eq!(sent.len(), 3);
    let bearer = format!("Bearer {BACKUP_SECRET}");
    for request in &sent {
        assert_eq!(request.body["model"], "openai/gpt-4o-mini");
        assert_eq!(request.header("authorization"), Some(bearer.as_str()));
    }
    let events = gw.events().await;
    assert_eq!(events.len(), 3);
    assert!(events.iter().all(|e| e["provider"] == "backup"), "{events:?}");

    // A provider that cannot be reached at all.
    let dead = format!("http://127.0.0.1:{}/v1", closed_port().await);
    add_provider(&gw.app, "dead", ProviderKind::OpenAi, &dead, OPENAI_SECRET).await;
    add_route(&gw.app, "gpt-4o", 0, "dead", "gpt-4o").await;
    add_route(&gw.app, "gpt-4o", 1, "backup", "openai/gpt-4o").await;
    let mut body = chat(false, false);
    body["model"] = json!("gpt-4o");
    let response = gw.chat(&body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(backup.requests().len(), 4);

    // Every route failing: the last provider's error as it sent it, and
    // nothing recorded or held.
    gw.fake.push(Behaviour {
        status: 503,
        ..Behaviour::default()
    });
    backup.push(Behaviour {
        status: 502,
        ..Behaviour::default()
    });
    let response = gw.chat(&chat(false, false)).await;
    assert_eq!(response.status(), 502);
    let error: Value = response.json().await.unwrap();
    assert_eq!(
        error["error"]["type"], "server_error",
        "the provider's own body: {error}"
    );
    assert_eq!(gw.events().await.len(), 4);
    assert_eq!(gw.quota().await["tokensReserved"], 0);

    let page = gw.metrics().await;
    assert!(
        page.contains("tollgate_gateway_fallbacks_total{provider=\"openai\"} 4"),
        "{page}"
    );
    assert!(
        page.contains("tollgate_gateway_fallbacks_total{provider=\"dead\"} 1"),
        "{page}"
    );
}

#[tokio::test]
async fn a_provider_that_keeps_failing_is_skipped_for_a_while_then_tried_again() {
    let gw = gateway().await;
    let backup = FakeLlm::start().await;
    add_provider(
        &gw.app,
        "backup",
        ProviderKind::OpenAiCompatible,
        &backup.openai_base(),
        BACKUP_SECRET,
    )
    .await;
    add_route(&gw.app, "gpt-4o-mini", 1, "backup", "gpt-4o-mini").await;
    add_route(&gw.app, "gpt-4o", 0, "openai", "gpt-4o").await;
    let mut only_openai = chat(false, false);
    only_openai["model"] = json!("gpt-4o");

    for _ in 0..5 {
        gw.fake.push(Behaviour {
            status: 500,
            ..Behaviour::default()
        });
        assert_eq!(gw.chat(&chat(false, false)).await.status(), 200);
    }
    assert_eq!((gw.fake.requests().len(), backup.requests().len()), (5, 5));
    // Open: the failing provider is not even asked.
    assert_eq!(gw.chat(&chat(false, false)).await.status(), 200);
    assert_eq!((gw.fake.requests().len(), backup.requests().len()), (5, 6));
    let response = gw.chat(&only_openai).await;
    assert_eq!(response.status(), 503, "no route is left");
    assert!(response.headers().contains_key("retry-after"));
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["type"], "api_error");
    assert_eq!(gw.fake.requests().len(), 5);
    assert_eq!(gw.quota().await["tokensReserved"], 0);

    // Half-open after a while: tried again, and back for good once it answers.
    gw.app.clock.advance(TimeDelta::seconds(31));
    assert_eq!(gw.chat(&chat(false, false)).await.status(), 200);
    assert_eq!((gw.fake.requests().len(), backup.requests().len()), (6, 6));
    assert_eq!(gw.chat(&only_openai).await.status(), 200);
    assert_eq!(gw.fake.requests().len(), 7);
    let events = gw.events().await;
    assert_eq!(events[0]["provider"], "openai");
    assert_eq!(events[1]["provider"], "openai");
}

/// The error of an OpenAI-shaped answer: (status, type, code).
async fn openai_error(response: reqwest::Response) -> (u16, String, Option<String>) {
    let status = response.status().as_u16();
    assert!(response.headers().contains_key("x-tollgate-request-id"));
    let body: Value = response.json().await.unwrap();
    let error = &body["error"];
    assert!(error["message"].is_string(), "{body}");
    (
        status,
        error["type"].as_str().unwrap().to_owned(),
        error["code"].as_str().map(str::to_owned),
    )
}

/// The error of an Anthropic-shaped answer: (status, type, code).
async fn anthropic_error(response: reqwest::Response) -> (u16, String, Option<String>) {
    let status = response.status().as_u16();
    assert!(response.headers().contains_key("x-tollgate-request-id"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "error", "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    (
        status,
        body["error"]["type"].as_str().unwrap().to_owned(),
        body["error"]["code"].as_str().map(str::to_owned),
    )
}

fn shape(status: u16, kind: &str, code: Option<&str>) -> (u16, String, Option<String>) {
    (status, kind.to_owned(), code.map(str::to_owned))
}

#[tokio::test]
async fn refusals_come_in_each_apis_own_shape_and_never_reach_a_provider() {
    let gw = gateway().await;
    let openai = |key: Option<&str>, body: &Value| {
        let request = gw.post("/v1/chat/completions").json(body);
        match key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
    };
    let anthropic = |key: Option<&str>, body: &Value| {
        let request = gw
            .post("/v1/messages")
            .header("anthropic-version", "2023-06-01")
            .json(body);
        match key {
            Some(key) => request.header("x-api-key", key),
            None => request,
        }
    };
    let send = |request: reqwest::RequestBuilder| async move { request.send().await.unwrap() };

    // 401: no key, an access token, an unknown key, a revoked key.
    let (revoked_id, revoked) = create_key(&gw.app, &gw.owner.access, &gw.org, json!({ "scopes": ["LLM"] })).await;
    let revoke = gw
        .app
        .graphql_as(
            &gw.owner.access,
            "mutation ($id: ID!) { revokeApiKey(id: $id) { id } }",
            json!({ "id": revoked_id }),
        )
        .await;
    revoke.data();
    let unknown = "tg_live_00000000000000000000000000000000";
    for key in [
        None,
        Some(gw.owner.access.as_str()),
        Some(unknown),
        Some(revoked.as_str()),
    ] {
        let unauthenticated = shape(401, "authentication_error", Some("invalid_api_key"));
        assert_eq!(
            openai_error(send(openai(key, &chat(false, false))).await).await,
            unauthenticated
        );
        assert_eq!(
            anthropic_error(send(anthropic(key, &message(false))).await).await,
            unauthenticated
        );
    }

    // 403: a key without the LLM scope, or used from an address it does not allow.
    let (_, usage_only) = create_key(&gw.app, &gw.owner.access, &gw.org, json!({ "scopes": ["USAGE_WRITE"] })).await;
    let (_, elsewhere) = create_key(
        &gw.app,
        &gw.owner.access,
        &gw.org,
        json!({ "scopes": ["LLM"], "allowedIps": ["10.0.0.0/8"] }),
    )
    .await;
    for key in [&usage_only, &elsewhere] {
        let (status, kind, _) = openai_error(send(openai(Some(key), &chat(false, false))).await).await;
        assert_eq!((status, kind.as_str()), (403, "permission_error"));
        let (status, kind, _) = anthropic_error(send(anthropic(Some(key), &message(false))).await).await;
        assert_eq!((status, kind.as_str()), (403, "permission_error"));
    }
    // 403: a model the key's allow-list leaves out, or that the catalog disabled.
    let (_, listed) = create_key(
        &gw.app,
        &gw.owner.access,
        &gw.org,
        json!({ "scopes": ["LLM"], "allowedModels": ["gpt-4o"] }),
    )
    .await;
    let not_allowed = shape(403, "permission_error", Some("model_not_allowed"));
    assert_eq!(
        openai_error(send(openai(Some(&listed), &chat(false, false))).await).await,
        not_allowed
    );
    assert_eq!(
        anthropic_error(send(anthropic(Some(&listed), &message(false))).await).await,
        not_allowed
    );

    // 404: a model the catalog does not know, or that no provider serves.
    let key = Some(gw.key.as_str());
    for model in ["no-such-model", "gpt-4o"] {
        let mut body = chat(false, false);
        body["model"] = json!(model);
        assert_eq!(
            openai_error(send(openai(key, &body)).await).await,
            shape(404, "not_found_error", Some("model_not_found"))
        );
        let mut body = message(false);
        body["model"] = json!(model);
        assert_eq!(
            anthropic_error(send(anthropic(key, &body)).await).await,
            shape(404, "not_found_error", Some("model_not_found"))
        );
    }

    // 400: a body that is not JSON, a model whose providers speak the other API.
    let (status, kind, _) =
        openai_error(send(gw.post("/v1/chat/completions").bearer_auth(&gw.key).body("{")).await).await;
    assert_eq!((status, kind.as_str()), (400, "invalid_request_error"));
    let mut claude_on_openai = chat(false, false);
    claude_on_openai["model"] = json!("claude-sonnet-4");
    let (status, kind, _) = openai_error(send(openai(key, &claude_on_openai)).await).await;
    assert_eq!((status, kind.as_str()), (400, "invalid_request_error"));
    let mut gpt_on_anthropic = message(false);
    gpt_on_anthropic["model"] = json!("gpt-4o-mini");
    let (status, kind, _) = anthropic_error(send(anthropic(key, &gpt_on_anthropic)).await).await;
    assert_eq!((status, kind.as_str()), (400, "invalid_request_error"));

    // 403 again once the catalog disables the model.
    diesel::sql_query("UPDATE models SET enabled = false WHERE id = 'gpt-4o-mini'")
        .execute(&mut gw.app.db().await)
        .await
        .unwrap();
    assert_eq!(
        openai_error(send(openai(key, &chat(false, false))).await).await,
        not_allowed
    );

    assert!(gw.fake.requests().is_empty(), "no refusal reached the provider");
    assert!(gw.events().await.is_empty());
    assert_eq!(gw.quota().await["tokensReserved"], 0);
}

/// Fifty calls at once against a budget that fits ten: ten go through,
/// the others are refused, and the spend is the budget, never more.
async fn fifty_concurrent_calls_against_a_budget_for_ten(use_redis: bool) {
    let gw = gateway_with(TestAppOptions {
        without_redis: !use_redis,
        ..TestAppOptions::default()
    })
    .await;
    let mut body = chat(false, false);
    body["max_tokens"] = json!(100);
    let prompt = estimate(Api::Chat, &body);
    let per_call = prompt + 100;
    set_free_plan(&gw.app, Some(10 * per_call), None, None).await;
    for _ in 0..50 {
        gw.fake.push(Behaviour {
            delay_before_headers: Duration::from_millis(300),
            usage: Some(FakeUsage {
                prompt,
                cached: 0,
                completion: 100,
                cache_creation: 0,
            }),
            ..Behaviour::default()
        });
    }
    let responses = join_all((0..50).map(|_| gw.chat(&body))).await;
    let mut through = 0;
    for response in responses {
        match response.status().as_u16() {
            200 => through += 1,
            429 => {
                assert_eq!(
                    response.headers()["retry-after"],
                    "2",
                    "calls in flight stand in the way"
                );
                assert!(!response.headers().contains_key("x-should-retry"));
                let (_, kind, code) = openai_error(response).await;
                assert_eq!(
                    (kind.as_str(), code.as_deref()),
                    ("rate_limit_error", Some("ORGANIZATION_BUDGET"))
                );
            }
            status => panic!("unexpected status {status}"),
        }
    }
    assert_eq!(through, 10, "exactly the ten that fit went through");
    assert_eq!(gw.fake.requests().len(), 10);
    let quota = gw.quota().await;
    assert_eq!(quota["tokensUsed"], 10 * per_call, "{quota}");
    assert_eq!(quota["tokensReserved"], 0, "{quota}");

    // Spent: refused without a retry.
    let response = gw.chat(&body).await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["x-should-retry"], "false");
    let retry_after: i64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry_after > 3600, "until the period ends: {retry_after}");
    let page = gw.metrics().await;
    assert!(page.contains("tollgate_gateway_reservations_refused_total{reason=\"ORGANIZATION_BUDGET\"} 41"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_calls_against_a_budget_for_ten_let_ten_through_with_redis() {
    fifty_concurrent_calls_against_a_budget_for_ten(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_calls_against_a_budget_for_ten_let_ten_through_without_redis() {
    fifty_concurrent_calls_against_a_budget_for_ten(false).await;
}

#[tokio::test]
async fn a_call_without_a_limit_is_sent_the_limit_its_budget_allows() {
    let gw = gateway().await;
    set_free_plan(&gw.app, Some(1000), None, None).await;
    let body = chat(false, false);
    let prompt = estimate(Api::Chat, &body);
    assert_eq!(gw.chat(&body).await.status(), 200);
    let sent = &gw.fake.requests()[0];
    assert_eq!(sent.body["max_completion_tokens"], 1000 - prompt, "{}", sent.body);
    assert!(sent.body.get("max_tokens").is_none());
}

#[tokio::test]
async fn tokens_of_calls_in_flight_show_in_the_quota_until_they_are_settled() {
    let gw = gateway().await;
    gw.fake.push(Behaviour {
        delay_before_headers: Duration::from_millis(1500),
        ..Behaviour::default()
    });
    let mut body = chat(false, false);
    body["max_tokens"] = json!(100);
    let prompt = estimate(Api::Chat, &body);
    let call = tokio::spawn(gw.post("/v1/chat/completions").bearer_auth(&gw.key).json(&body).send());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let reserved = gw.quota().await["tokensReserved"].as_i64().unwrap();
        if reserved > 0 {
            assert_eq!(reserved, prompt + 100);
            break;
        }
        assert!(Instant::now() < deadline, "the call was never seen in flight");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(call.await.unwrap().unwrap().status(), 200);
    let quota = gw.quota().await;
    assert_eq!(
        (quota["tokensReserved"].as_i64(), quota["tokensUsed"].as_i64()),
        (Some(0), Some(17))
    );
}

#[tokio::test]
async fn a_reservation_whose_call_never_ends_is_settled_by_the_expiry_job_as_its_prompt() {
    let gw = gateway().await;
    gw.fake.push(Behaviour {
        delay_before_headers: Duration::from_secs(3),
        ..Behaviour::default()
    });
    let body = chat(false, false);
    let prompt = estimate(Api::Chat, &body);
    let call = tokio::spawn(gw.post("/v1/chat/completions").bearer_auth(&gw.key).json(&body).send());
    let deadline = Instant::now() + Duration::from_secs(5);
    while gw.quota().await["tokensReserved"] == 0 {
        assert!(Instant::now() < deadline, "the call was never seen in flight");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // As if the instance had died: past LLM_TIMEOUT_SECS and the margin.
    gw.app.clock.advance(TimeDelta::seconds(600 + 61));
    reservations::settle_expired_once(&gw.app.state).await.unwrap();
    let events = gw.events().await;
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(
        (event["estimated"].as_bool(), event["provider"].as_str()),
        (Some(true), Some("openai"))
    );
    assert_eq!(
        (event["promptTokens"].as_i64(), event["completionTokens"].as_i64()),
        (Some(prompt), Some(0))
    );
    assert_eq!(gw.quota().await["tokensReserved"], 0);

    // The call still ends well; it is not recorded a second time.
    let response = call.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(event["requestId"], request_id(&response).as_str());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(gw.events().await.len(), 1);
}

/// A provider that quotes the credentials it was sent back in its errors
/// (as OpenAI's "Incorrect API key provided: sk-..." does), answering
/// the status its upstream model names (`echo-400`, `echo-401`, `echo-500`).
async fn echoing_provider() -> String {
    let router = Router::new().route(
        "/v1/chat/completions",
        post(|headers: HeaderMap, Json(body): Json<Value>| async move {
            let credentials = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let status = body["model"]
                .as_str()
                .and_then(|m| m.strip_prefix("echo-"))
                .and_then(|s| s.parse::<u16>().ok())
                .unwrap_or(400);
            let message = format!("Incorrect API key provided: {credentials}");
            (
                axum::http::StatusCode::from_u16(status).unwrap(),
                Json(json!({ "error": { "message": message, "type": "invalid_request_error" } })),
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}/v1")
}

#[tokio::test]
async fn a_providers_key_never_reaches_the_caller() {
    let gw = gateway().await;
    let base = echoing_provider().await;
    add_provider(&gw.app, "echo", ProviderKind::OpenAi, &base, ECHO_SECRET).await;
    for (model, status) in [("gpt-4o", 400), ("gpt-4.1", 401), ("gpt-4.1-mini", 500)] {
        add_route(&gw.app, model, 0, "echo", &format!("echo-{status}")).await;
        let mut body = chat(false, false);
        body["model"] = json!(model);
        let response = gw.chat(&body).await;
        let answered = response.status().as_u16();
        let text = response.text().await.unwrap();
        assert!(!text.contains(ECHO_SECRET), "{model}: {text}");
        match status {
            // The provider's own error, its key removed.
            400 | 500 => {
                assert_eq!(answered, status);
                assert!(text.contains("[redacted]"), "{text}");
            }
            // The gateway's credentials refused: the gateway's fault, said so.
            _ => {
                assert_eq!(answered, 502);
                assert!(text.contains("administrator"), "{text}");
            }
        }
    }
    assert!(gw.events().await.is_empty());
    assert_eq!(gw.quota().await["tokensReserved"], 0);
}

#[tokio::test]
async fn the_model_list_shows_the_callable_models_the_key_may_use() {
    let gw = gateway().await;
    let list = |key: String| {
        let request = gw.app.http().get(gw.app.url("/v1/models")).bearer_auth(key);
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200);
            assert!(response.headers().contains_key("x-tollgate-request-id"));
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["object"], "list");
            let mut ids: Vec<String> = body["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| {
                    assert_eq!(m["object"], "model");
                    assert!(m["created"].is_i64() && m["owned_by"].is_string(), "{m}");
                    m["id"].as_str().unwrap().to_owned()
                })
                .collect();
            ids.sort();
            ids
        }
    };
    assert_eq!(list(gw.key.clone()).await, ["claude-sonnet-4", "gpt-4o-mini"]);
    let (_, listed) = create_key(
        &gw.app,
        &gw.owner.access,
        &gw.org,
        json!({ "scopes": ["LLM"], "allowedModels": ["gpt-4o-mini"] }),
    )
    .await;
    assert_eq!(list(listed).await, ["gpt-4o-mini"]);
    diesel::update(providers::table.filter(providers::key.eq("anthropic")))
        .set(providers::enabled.eq(false))
        .execute(&mut gw.app.db().await)
        .await
        .unwrap();
    assert_eq!(list(gw.key.clone()).await, ["gpt-4o-mini"]);
    let response = gw.app.http().get(gw.app.url("/v1/models")).send().await.unwrap();
    assert_eq!(response.status(), 401);
}
