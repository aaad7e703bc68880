//! The websocket driver, spoken to by a real websocket client.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};
use tollgate::auth::users::Role;

use crate::harness::{
    TestApp, create_user,
    ws::{close_code, connect, receive, send},
};

#[tokio::test]
async fn graphql_transport_ws_acknowledges_answers_pings_and_refuses_bad_operations_with_error() {
    let app = TestApp::spawn().await;
    let user = create_user(&app, "ws@example.com", Role::User).await;
    let mut socket = connect(&app, "graphql-transport-ws").await;
    send(
        &mut socket,
        json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {}", app.token_for(user).await) } }),
    )
    .await;
    assert_eq!(receive(&mut socket).await, json!({ "type": "connection_ack" }));

    send(&mut socket, json!({ "type": "ping" })).await;
    assert_eq!(receive(&mut socket).await["type"], "pong");

    send(
        &mut socket,
        json!({ "type": "subscribe", "id": "1", "payload": { "query": "subscription { nothing }" } }),
    )
    .await;
    let error = receive(&mut socket).await;
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["id"], "1");
    assert!(error["payload"][0]["extensions"]["code"].is_string(), "{error}");

    // The connection stays open after a refused operation.
    send(&mut socket, json!({ "type": "ping", "payload": { "n": 2 } })).await;
    assert_eq!(
        receive(&mut socket).await,
        json!({ "type": "pong", "payload": { "n": 2 } })
    );
}

#[tokio::test]
async fn bad_credentials_in_connection_init_close_with_4403() {
    let app = TestApp::spawn().await;
    for protocol in ["graphql-transport-ws", "graphql-ws"] {
        let mut socket = connect(&app, protocol).await;
        send(
            &mut socket,
            json!({ "type": "connection_init", "payload": { "authorization": "Bearer forged" } }),
        )
        .await;
        if protocol == "graphql-ws" {
            let error = receive(&mut socket).await;
            assert_eq!(error["type"], "connection_error");
            assert_eq!(error["payload"]["extensions"]["code"], "UNAUTHENTICATED");
        }
        assert_eq!(close_code(&mut socket).await, 4403, "{protocol}");
    }
}

#[tokio::test]
async fn protocol_violations_close_with_the_protocol_codes() {
    let app = TestApp::spawn().await;

    let mut early = connect(&app, "graphql-transport-ws").await;
    send(
        &mut early,
        json!({ "type": "subscribe", "id": "1", "payload": { "query": "{ plans { key } }" } }),
    )
    .await;
    assert_eq!(close_code(&mut early).await, 4401);

    let mut twice = connect(&app, "graphql-transport-ws").await;
    send(&mut twice, json!({ "type": "connection_init" })).await;
    assert_eq!(receive(&mut twice).await["type"], "connection_ack");
    send(&mut twice, json!({ "type": "connection_init" })).await;
    assert_eq!(close_code(&mut twice).await, 4429);

    let mut garbage = connect(&app, "graphql-transport-ws").await;
    garbage.send(Message::text("not json")).await.unwrap();
    assert_eq!(close_code(&mut garbage).await, 4400);
}

#[tokio::test]
async fn the_legacy_protocol_acknowledges_with_keep_alive_and_terminates() {
    let app = TestApp::spawn().await;
    let mut socket = connect(&app, "graphql-ws").await;
    send(&mut socket, json!({ "type": "connection_init", "payload": {} })).await;
    let ack = tokio::time::timeout(Duration::from_secs(5), socket.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(ack.to_text().unwrap()).unwrap()["type"],
        "connection_ack"
    );
    let ka = tokio::time::timeout(Duration::from_secs(5), socket.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(ka.to_text().unwrap()).unwrap()["type"],
        "ka"
    );

    send(
        &mut socket,
        json!({ "type": "start", "id": "7", "payload": { "query": "subscription { nothing }" } }),
    )
    .await;
    let error = receive(&mut socket).await;
    assert_eq!(
        (error["type"].as_str(), error["id"].as_str()),
        (Some("error"), Some("7")),
        "{error}"
    );

    send(&mut socket, json!({ "type": "connection_terminate" })).await;
    assert_eq!(close_code(&mut socket).await, 1000);
}

#[tokio::test]
async fn an_operation_id_is_free_again_once_it_completed() {
    let app = TestApp::spawn().await;
    let mut socket = connect(&app, "graphql-transport-ws").await;
    send(&mut socket, json!({ "type": "connection_init" })).await;
    assert_eq!(receive(&mut socket).await["type"], "connection_ack");
    for _ in 0..2 {
        send(
            &mut socket,
            json!({ "type": "subscribe", "id": "q", "payload": { "query": "{ clientConfig { version } }" } }),
        )
        .await;
        let next = receive(&mut socket).await;
        assert_eq!(next["type"], "next", "{next}");
        assert_eq!(
            next["payload"]["data"]["clientConfig"]["version"],
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(receive(&mut socket).await, json!({ "type": "complete", "id": "q" }));
    }
    let long_id = "x".repeat(300);
    send(
        &mut socket,
        json!({ "type": "subscribe", "id": long_id, "payload": { "query": "subscription { nothing }" } }),
    )
    .await;
    assert_eq!(receive(&mut socket).await["type"], "error");
    send(&mut socket, json!({ "type": "complete", "id": "never-started" })).await;
    send(&mut socket, json!({ "type": "no-such-type" })).await;
    assert_eq!(close_code(&mut socket).await, 4400);
}

#[tokio::test]
async fn an_unknown_subprotocol_is_refused() {
    let app = TestApp::spawn().await;
    let mut request = app.ws_url().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "chat".parse().unwrap());
    assert!(tokio_tungstenite::connect_async(request).await.is_err());
}

#[tokio::test]
async fn shutdown_closes_open_sockets_with_going_away() {
    let app = TestApp::spawn().await;
    let mut socket = connect(&app, "graphql-transport-ws").await;
    send(&mut socket, json!({ "type": "connection_init" })).await;
    assert_eq!(receive(&mut socket).await["type"], "connection_ack");
    let shutdown = tokio::spawn(app.shutdown());
    assert_eq!(close_code(&mut socket).await, 1001);
    tokio::time::timeout(Duration::from_secs(10), shutdown)
        .await
        .expect("shutdown drains in time")
        .unwrap();
}
