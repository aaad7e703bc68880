//! The fake LLM provider the gateway is tested against, checked on its
//! own: it must speak the OpenAI and Anthropic wire formats as the real
//! services do, or the gateway's tests prove nothing. Last, the official
//! SDKs (tests/node/llm_sdks.mjs) read what it sends.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::harness::{
    llm_fake::{Behaviour, FakeLlm, FakeUsage},
    node,
};

/// Header and body of a finished request.
async fn send(request: reqwest::RequestBuilder) -> (reqwest::StatusCode, reqwest::header::HeaderMap, String) {
    let response = request.send().await.expect("the fake answers");
    let status = response.status();
    let headers = response.headers().clone();
    (status, headers, response.text().await.expect("a whole body"))
}

fn openai(fake: &FakeLlm, path: &str) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .post(format!("{}{path}", fake.openai_base()))
        .bearer_auth("sk-test")
}

fn anthropic(fake: &FakeLlm) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .post(format!("{}/v1/messages", fake.anthropic_base()))
        .header("x-api-key", "sk-ant-test")
        .header("anthropic-version", "2023-06-01")
}

fn chat(stream: bool, include_usage: bool) -> Value {
    let mut body = json!({ "model": "gpt-4o-mini", "messages": [{ "role": "user", "content": "Hi" }] });
    if stream {
        body["stream"] = json!(true);
    }
    if include_usage {
        body["stream_options"] = json!({ "include_usage": true });
    }
    body
}

fn message(stream: bool) -> Value {
    json!({ "model": "claude-sonnet-4-5", "max_tokens": 64, "stream": stream,
            "messages": [{ "role": "user", "content": "Hi" }] })
}

/// One server-sent event: its `event:` name, if any, and its `data:`.
#[derive(Debug)]
struct Event {
    name: Option<String>,
    data: String,
}

fn events(text: &str) -> Vec<Event> {
    text.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let field = |prefix: &str| {
                block
                    .lines()
                    .find_map(|line| line.strip_prefix(prefix).map(str::to_owned))
            };
            Event {
                name: field("event: "),
                data: field("data: ").expect("every event has data"),
            }
        })
        .collect()
}

/// The JSON chunks of an OpenAI stream, and whether it ended with [DONE].
fn openai_chunks(text: &str) -> (Vec<Value>, bool) {
    let events = events(text);
    let done = events.last().is_some_and(|event| event.data == "[DONE]");
    let chunks = events
        .iter()
        .filter(|event| event.data != "[DONE]")
        .map(|event| serde_json::from_str(&event.data).expect("a JSON chunk"))
        .collect();
    (chunks, done)
}

fn streamed_text(chunks: &[Value]) -> String {
    chunks
        .iter()
        .filter_map(|chunk| chunk["choices"][0]["delta"]["content"].as_str())
        .collect()
}

/// Reads a body until it ends or breaks: what arrived, and whether it broke.
async fn read_until_cut(response: reqwest::Response) -> (String, bool) {
    let mut body = response.bytes_stream();
    let mut text = String::new();
    while let Some(piece) = body.next().await {
        match piece {
            Ok(bytes) => text.push_str(std::str::from_utf8(&bytes).expect("UTF-8")),
            Err(_) => return (text, true),
        }
    }
    (text, false)
}

#[tokio::test]
async fn openai_json_echoes_the_model_and_reports_usage_with_its_details() {
    let fake = FakeLlm::start().await;
    let usage = FakeUsage {
        prompt: 100,
        cached: 40,
        completion: 7,
        cache_creation: 0,
    };
    fake.push(Behaviour {
        text: "Hi there".into(),
        usage: Some(usage),
        ..Behaviour::default()
    });
    fake.push(Behaviour {
        usage: None,
        ..Behaviour::default()
    });

    let (status, headers, body) = send(openai(&fake, "/chat/completions").json(&chat(false, false))).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    assert!(headers.contains_key("x-request-id"));
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "gpt-4o-mini");
    assert_eq!(body["choices"][0]["message"]["content"], "Hi there");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    let usage = &body["usage"];
    assert_eq!(
        (
            &usage["prompt_tokens"],
            &usage["completion_tokens"],
            &usage["total_tokens"]
        ),
        (&json!(100), &json!(7), &json!(107))
    );
    assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 40);
    assert_eq!(usage["completion_tokens_details"]["reasoning_tokens"], 0);

    let (_, _, body) = send(openai(&fake, "/chat/completions").json(&chat(false, false))).await;
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "Hello from the fake.");
    assert!(body.get("usage").is_none(), "no usage at all: {body}");

    let recorded = fake.requests();
    assert_eq!(recorded.len(), 2);
    assert_eq!(recorded[0].path, "/v1/chat/completions");
    assert_eq!(recorded[0].body, chat(false, false));
    assert_eq!(recorded[0].header("authorization"), Some("Bearer sk-test"));
    assert_eq!(fake.in_flight(), 0);
}

#[tokio::test]
async fn openai_streams_carry_the_usage_chunk_only_when_asked() {
    let fake = FakeLlm::start().await;

    // Not asked: no usage anywhere, even with usage to report.
    let (status, headers, text) = send(openai(&fake, "/chat/completions").json(&chat(true, false))).await;
    assert_eq!(status, 200);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let (chunks, done) = openai_chunks(&text);
    assert!(done, "{text}");
    assert!(chunks.iter().all(|chunk| chunk.get("usage").is_none()), "{text}");
    assert!(chunks.iter().all(|chunk| chunk["object"] == "chat.completion.chunk"));
    assert!(chunks.iter().all(|chunk| chunk["model"] == "gpt-4o-mini"));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    // Role chunk, four content deltas, the finish chunk.
    assert_eq!(chunks.len(), 6, "{text}");
    assert_eq!(chunks[5]["choices"][0]["finish_reason"], "stop");
    assert_eq!(streamed_text(&chunks), "Hello from the fake.");

    // Asked: a last chunk with no choices and the usage; null before.
    let (_, _, text) = send(openai(&fake, "/chat/completions").json(&chat(true, true))).await;
    let (chunks, done) = openai_chunks(&text);
    assert!(done);
    let (last, others) = chunks.split_last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["prompt_tokens"], 12);
    assert_eq!(last["usage"]["completion_tokens"], 5);
    assert_eq!(last["usage"]["total_tokens"], 17);
    assert!(
        others
            .iter()
            .all(|chunk| chunk["usage"].is_null() && chunk.get("usage").is_some())
    );

    // Some services put the usage on the last chunk with choices.
    fake.push(Behaviour {
        usage_chunk_has_choices: true,
        ..Behaviour::default()
    });
    let (_, _, text) = send(openai(&fake, "/chat/completions").json(&chat(true, true))).await;
    let (chunks, done) = openai_chunks(&text);
    assert!(done);
    assert!(chunks.iter().all(|chunk| chunk["choices"] != json!([])), "{text}");
    let with_usage: Vec<&Value> = chunks.iter().filter(|chunk| !chunk["usage"].is_null()).collect();
    assert_eq!(with_usage.len(), 1, "{text}");
    assert_eq!(with_usage[0]["choices"][0]["finish_reason"], "stop");
    assert_eq!(with_usage[0]["choices"][0]["delta"]["content"], "fake.");
    assert_eq!(with_usage[0]["usage"]["prompt_tokens"], 12);
    assert_eq!(streamed_text(&chunks), "Hello from the fake.");

    // Asked, but the provider has none to give.
    fake.push(Behaviour {
        usage: None,
        ..Behaviour::default()
    });
    let (_, _, text) = send(openai(&fake, "/chat/completions").json(&chat(true, true))).await;
    let (chunks, done) = openai_chunks(&text);
    assert!(done);
    assert!(chunks.iter().all(|chunk| chunk.get("usage").is_none()), "{text}");
    assert_eq!(fake.streams_cancelled(), 0);
}

#[tokio::test]
async fn anthropic_answers_map_the_usage_onto_its_cache_fields() {
    let fake = FakeLlm::start().await;
    let usage = FakeUsage {
        prompt: 100,
        cached: 30,
        completion: 7,
        cache_creation: 20,
    };
    fake.push(Behaviour {
        usage: Some(usage),
        ..Behaviour::default()
    });
    fake.push(Behaviour {
        usage: Some(usage),
        ..Behaviour::default()
    });
    let expected = json!({ "input_tokens": 50, "cache_read_input_tokens": 30,
                           "cache_creation_input_tokens": 20, "output_tokens": 7 });

    let (status, headers, body) = send(anthropic(&fake).json(&message(false))).await;
    assert_eq!(status, 200, "{body}");
    assert!(headers.contains_key("request-id"));
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["type"], "message");
    assert_eq!(body["role"], "assistant");
    assert_eq!(body["model"], "claude-sonnet-4-5");
    assert_eq!(
        body["content"],
        json!([{ "type": "text", "text": "Hello from the fake." }])
    );
    assert_eq!(body["stop_reason"], "end_turn");
    assert_eq!(body["usage"], expected);

    let (_, headers, text) = send(anthropic(&fake).json(&message(true))).await;
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let events = events(&text);
    let names: Vec<&str> = events.iter().map(|event| event.name.as_deref().unwrap()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    let data: Vec<Value> = events
        .iter()
        .map(|event| serde_json::from_str(&event.data).unwrap())
        .collect();
    for (name, value) in names.iter().zip(&data) {
        assert_eq!(value["type"], *name, "the data names its event");
    }
    let start = &data[0]["message"];
    assert_eq!(start["model"], "claude-sonnet-4-5");
    assert_eq!(start["usage"]["input_tokens"], 50);
    assert_eq!(start["usage"]["cache_read_input_tokens"], 30);
    assert_eq!(start["usage"]["cache_creation_input_tokens"], 20);
    let text: String = data
        .iter()
        .filter_map(|value| value["delta"]["text"].as_str())
        .collect();
    assert_eq!(text, "Hello from the fake.");
    assert_eq!(data[8]["delta"]["stop_reason"], "end_turn");
    assert_eq!(
        data[8]["usage"]["output_tokens"], 7,
        "cumulative output in message_delta"
    );

    // No usage: none in the JSON, none in the stream.
    fake.push(Behaviour {
        usage: None,
        ..Behaviour::default()
    });
    fake.push(Behaviour {
        usage: None,
        ..Behaviour::default()
    });
    let (_, _, body) = send(anthropic(&fake).json(&message(false))).await;
    assert!(!body.contains("usage"), "{body}");
    let (_, _, text) = send(anthropic(&fake).json(&message(true))).await;
    assert!(!text.contains("usage"), "{text}");
    assert!(text.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"));
}

#[tokio::test]
async fn cut_streams_break_off_after_their_last_delta() {
    let fake = FakeLlm::start().await;
    fake.push(Behaviour {
        cut_after_chunks: Some(2),
        ..Behaviour::default()
    });
    let response = openai(&fake, "/chat/completions")
        .json(&chat(true, true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (text, broke) = read_until_cut(response).await;
    assert!(broke, "the body did not end properly: {text}");
    assert!(!text.contains("[DONE]"), "{text}");
    let (chunks, _) = openai_chunks(&text);
    assert_eq!(streamed_text(&chunks), "Hello from");
    assert!(chunks.iter().all(|chunk| chunk["usage"].is_null()), "{text}");

    fake.push(Behaviour {
        cut_after_chunks: Some(1),
        ..Behaviour::default()
    });
    let response = anthropic(&fake).json(&message(true)).send().await.unwrap();
    let (text, broke) = read_until_cut(response).await;
    assert!(broke);
    assert!(text.contains("event: message_start"), "{text}");
    assert_eq!(text.matches("event: content_block_delta").count(), 1, "{text}");
    assert!(
        !text.contains("message_delta") && !text.contains("message_stop"),
        "{text}"
    );

    // The fake ended those itself: no client gave up.
    assert_eq!(fake.streams_cancelled(), 0);
    assert_eq!(fake.in_flight(), 0);
}

#[tokio::test]
async fn errors_come_in_each_apis_own_shape() {
    let fake = FakeLlm::start().await;
    fake.push(Behaviour {
        status: 429,
        ..Behaviour::default()
    });
    let (status, _, body) = send(openai(&fake, "/chat/completions").json(&chat(true, true))).await;
    assert_eq!(status, 429);
    let body: Value = serde_json::from_str(&body).expect("a JSON error, not a stream");
    assert_eq!(body["error"]["type"], "requests");
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert!(body["error"]["message"].is_string());
    assert!(body["error"].as_object().unwrap().contains_key("param"));

    fake.push(Behaviour {
        status: 529,
        ..Behaviour::default()
    });
    let (status, _, body) = send(anthropic(&fake).json(&message(true))).await;
    assert_eq!(status, 529);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "overloaded_error");
    assert!(body["error"]["message"].is_string());

    // No credential: 401, recorded, and the queued behaviour still waits.
    fake.push(Behaviour {
        status: 500,
        ..Behaviour::default()
    });
    let client = reqwest::Client::new();
    let (status, _, body) = send(
        client
            .post(format!("{}/chat/completions", fake.openai_base()))
            .json(&chat(false, false)),
    )
    .await;
    assert_eq!(status, 401);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"]["code"], "invalid_api_key");
    let (status, _, body) = send(
        client
            .post(format!("{}/v1/messages", fake.anthropic_base()))
            .json(&message(false)),
    )
    .await;
    assert_eq!(status, 401);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"]["type"], "authentication_error");
    assert_eq!(fake.requests().len(), 4);

    let (status, _, body) = send(openai(&fake, "/embeddings").json(&json!({ "model": "m", "input": "x" }))).await;
    assert_eq!(status, 500);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"]["type"], "server_error");
}

#[tokio::test]
async fn a_slow_start_holds_the_headers_back_while_in_flight() {
    let fake = FakeLlm::start().await;
    fake.push(Behaviour {
        delay_before_headers: Duration::from_millis(300),
        ..Behaviour::default()
    });
    let started = Instant::now();
    let call = tokio::spawn(openai(&fake, "/chat/completions").json(&chat(false, false)).send());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(fake.in_flight(), 1);
    let response = call.await.unwrap().unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(response.status(), 200);
    assert_eq!(fake.in_flight(), 0);
}

#[tokio::test]
async fn streams_arrive_delta_by_delta_and_a_client_that_hangs_up_is_counted() {
    let fake = FakeLlm::start().await;
    let interval = Duration::from_millis(150);
    fake.push(Behaviour {
        chunks: 3,
        chunk_interval: interval,
        ..Behaviour::default()
    });
    let sent = Instant::now();
    let response = anthropic(&fake).json(&message(true)).send().await.unwrap();
    let mut body = response.bytes_stream();
    // When each delta arrived, and how many came in the same read.
    let mut arrivals = Vec::new();
    while let Some(piece) = body.next().await {
        let deltas = std::str::from_utf8(&piece.unwrap())
            .unwrap()
            .matches("event: content_block_delta")
            .count();
        if deltas > 0 {
            arrivals.push((sent.elapsed(), deltas));
        }
    }
    assert_eq!(arrivals.iter().map(|(_, deltas)| deltas).sum::<usize>(), 3);
    // Paced by the interval, and the first one read before the last was
    // even made: really streamed, not buffered.
    assert_eq!(arrivals[0].1, 1, "{arrivals:?}");
    assert!(
        arrivals[0].0 >= interval && arrivals[0].0 < 3 * interval,
        "{arrivals:?}"
    );
    assert!(arrivals.last().unwrap().0 >= 3 * interval, "{arrivals:?}");
    assert_eq!(fake.streams_cancelled(), 0, "a stream read to its end");

    fake.push(Behaviour {
        chunks: 20,
        chunk_interval: Duration::from_millis(50),
        ..Behaviour::default()
    });
    let response = openai(&fake, "/chat/completions")
        .json(&chat(true, true))
        .send()
        .await
        .unwrap();
    let mut body = response.bytes_stream();
    let mut text = String::new();
    while !text.contains("\"content\":\"H") {
        text.push_str(std::str::from_utf8(&body.next().await.unwrap().unwrap()).unwrap());
    }
    assert_eq!(fake.in_flight(), 1);
    drop(body);
    let deadline = Instant::now() + Duration::from_secs(2);
    while fake.streams_cancelled() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(fake.streams_cancelled(), 1);
    assert_eq!(fake.in_flight(), 0);
}

#[tokio::test]
async fn embeddings_answer_each_input_and_models_are_listed() {
    let fake = FakeLlm::start().await;
    let request = json!({ "model": "text-embedding-3-small", "input": ["one", "two"] });
    let (status, _, body) = send(openai(&fake, "/embeddings").json(&request)).await;
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["object"], "list");
    assert_eq!(body["model"], "text-embedding-3-small");
    assert_eq!(body["usage"], json!({ "prompt_tokens": 12, "total_tokens": 12 }));
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[1]["index"], 1);
    assert_eq!(data[1]["object"], "embedding");
    assert_eq!(data[0]["embedding"].as_array().unwrap().len(), 8);

    // base64 of eight little-endian float32s (the SDK test decodes them).
    let request = json!({ "model": "text-embedding-3-small", "input": "one", "encoding_format": "base64" });
    let (_, _, body) = send(openai(&fake, "/embeddings").json(&request)).await;
    let body: Value = serde_json::from_str(&body).unwrap();
    let encoded = body["data"][0]["embedding"].as_str().unwrap();
    assert_eq!(encoded.len(), 44);
    assert!(encoded.ends_with('='));

    let client = reqwest::Client::new();
    let url = format!("{}/models", fake.openai_base());
    let (status, _, body) = send(client.get(&url).bearer_auth("sk-test")).await;
    assert_eq!(status, 200);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["object"], "list");
    assert!(
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == "gpt-4o-mini")
    );
    let (status, _, _) = send(client.get(&url)).await;
    assert_eq!(status, 401);
}

/// The SDK script the gateway's tests run, run against the fake itself:
/// it proves the script and the fake's wire format, not the gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_sdks_read_what_the_fake_sends() {
    let turn = node::turn("tests/node").await;
    let fake = FakeLlm::start().await;
    let usage = FakeUsage {
        prompt: 20,
        cached: 5,
        completion: 9,
        cache_creation: 3,
    };
    // The script's calls, in order; the fake takes any key, so the bad
    // keys are answered 401 on purpose.
    for _ in 0..5 {
        fake.push(Behaviour {
            usage: Some(usage),
            ..Behaviour::default()
        });
    }
    for _ in 0..2 {
        fake.push(Behaviour {
            status: 401,
            ..Behaviour::default()
        });
    }
    let env = [
        ("TOLLGATE_BASE", fake.anthropic_base()),
        ("TOLLGATE_KEY", "tg_live_fake".to_owned()),
        ("OPENAI_MODEL", "gpt-4o-mini".to_owned()),
        ("ANTHROPIC_MODEL", "claude-sonnet-4-5".to_owned()),
    ];
    let run = node::run_script(&turn, "llm_sdks.mjs", &env, Duration::from_secs(120)).await;
    assert!(run.success, "{}\n{}", run.stdout, run.stderr);
    let report = run.report();

    let chat = &report["openaiChat"];
    assert_eq!(chat["text"], "Hello from the fake.", "{report}");
    assert_eq!(chat["usage"]["prompt_tokens_details"]["cached_tokens"], 5);
    assert_eq!(chat["requestId"], Value::Null, "the fake is no gateway");
    let stream = &report["openaiStream"];
    assert_eq!(stream["text"], "Hello from the fake.", "{report}");
    assert_eq!(stream["usage"]["total_tokens"], 29);
    assert_eq!(stream["usageChunkChoices"], 0);
    let embeddings = &report["embeddings"];
    assert_eq!(embeddings["count"], 2, "{report}");
    assert_eq!(embeddings["dimensions"], 8);
    let first = embeddings["first"][0].as_f64().unwrap();
    assert!((first - 0.01).abs() < 1e-6, "base64 decoded: {report}");
    assert_eq!(embeddings["usage"]["prompt_tokens"], 20);
    let message = &report["anthropicMessage"];
    assert_eq!(message["text"], "Hello from the fake.", "{report}");
    assert_eq!(
        message["usage"],
        json!({ "input_tokens": 12, "cache_read_input_tokens": 5, "cache_creation_input_tokens": 3, "output_tokens": 9 })
    );
    let streamed = &report["anthropicStream"];
    assert_eq!(streamed["text"], "Hello from the fake.", "{report}");
    assert_eq!(streamed["usage"]["output_tokens"], 9);
    assert_eq!(streamed["usage"]["input_tokens"], 12);
    assert_eq!(streamed["events"][0], "message_start");
    assert_eq!(streamed["stopReason"], "end_turn");
    for bad in ["openaiBadKey", "anthropicBadKey"] {
        let refused = &report[bad];
        assert_eq!(refused["status"], 401, "{report}");
        assert_eq!(refused["className"], "AuthenticationError", "{report}");
        assert_eq!(refused["is"]["AuthenticationError"], true, "{report}");
    }

    let recorded = fake.requests();
    assert_eq!(
        recorded[3].header("authorization"),
        Some("Bearer tg_live_fake"),
        "the Anthropic SDK 1.x sends its API key as a bearer token"
    );
    assert_eq!(recorded[3].header("x-api-key"), None);
    assert!(recorded[3].header("anthropic-version").is_some());
    assert_eq!(recorded[1].body["stream_options"]["include_usage"], true);
    let paths: Vec<&str> = recorded.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/v1/chat/completions",
            "/v1/chat/completions",
            "/v1/embeddings",
            "/v1/messages",
            "/v1/messages",
            "/v1/chat/completions",
            "/v1/messages"
        ]
    );
}
