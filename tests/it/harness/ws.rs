//! A real websocket client for the GraphQL websocket protocols.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream,
    tungstenite::{Message, client::IntoClientRequest, protocol::frame::coding::CloseCode},
};

use super::TestApp;

/// A client websocket.
pub type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a websocket offering `protocol`.
pub async fn connect(app: &TestApp, protocol: &str) -> Socket {
    let mut request = app.ws_url().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", protocol.parse().unwrap());
    let (socket, response) = tokio_tungstenite::connect_async(request)
        .await
        .expect("websocket handshake");
    assert_eq!(response.headers()["sec-websocket-protocol"], protocol);
    socket
}

/// Sends one JSON message.
pub async fn send(socket: &mut Socket, message: Value) {
    socket.send(Message::text(message.to_string())).await.unwrap();
}

/// The next JSON message, skipping keep-alives.
pub async fn receive(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("a message within 5 s")
            .expect("the socket is open")
            .expect("a websocket message");
        match message {
            Message::Text(text) => {
                let value: Value = serde_json::from_str(&text).unwrap();
                // Keep-alives may arrive at any time on a slow machine.
                if value["type"] != "ka" && value != json!({ "type": "ping" }) {
                    return value;
                }
            }
            Message::Close(frame) => panic!("closed: {frame:?}"),
            _ => {}
        }
    }
}

/// The close code the server ends the connection with.
pub async fn close_code(socket: &mut Socket) -> u16 {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("a close within 5 s");
        match message {
            Some(Ok(Message::Close(Some(frame)))) => return u16::from(frame.code),
            Some(Ok(Message::Close(None))) | None => return u16::from(CloseCode::Status),
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("socket error instead of a close frame: {e}"),
        }
    }
}

/// Opens a websocket and completes connection_init with `token`.
pub async fn connect_as(app: &TestApp, protocol: &str, token: &str) -> Socket {
    let mut socket = connect(app, protocol).await;
    send(
        &mut socket,
        json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } }),
    )
    .await;
    assert_eq!(receive(&mut socket).await["type"], "connection_ack");
    socket
}

/// The next JSON message if one arrives within `window` (keep-alives
/// skipped); None otherwise.
pub async fn receive_within(socket: &mut Socket, window: Duration) -> Option<Value> {
    tokio::time::timeout(window, receive(socket)).await.ok()
}
