//! The server on a real socket on 127.0.0.1, spoken to by real WebSocket and HTTP clients.

mod common;
use common::{TestServer, hello_as, is_transient};
use app::protocol::{ClientMessage, ErrorCode, PROTOCOL_VERSION, RoomEvent, ServerMessage, StreamPosition, close_code};
use futures_util::{SinkExt, StreamExt};
use server::health::Health;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

impl TestServer {
    /// The room's stream head, read by a fresh client.
    async fn status(&self, room: &str) -> (String, u64) {
        let mut socket = self.connect(room).await;
        let head = hello_resuming(&mut socket, None).await;
        (head.epoch, head.seq)
    }

    async fn connect(&self, room: &str) -> Socket {
        let (socket, _) = tokio_tungstenite::connect_async(self.ws_url(room).await).await.expect("connect");
        socket
    }

    async fn health(&self) -> Health {
        reqwest::get(format!("http://{}/health", self.addr)).await.expect("get").json().await.expect("json")
    }
}

async fn send(socket: &mut Socket, message: &ClientMessage) {
    socket.send(Message::text(message.to_json())).await.expect("send");
}

/// The next server message, skipping transport pings and transient messages.
async fn next(socket: &mut Socket) -> Result<ServerMessage, Option<(CloseCode, String)>> {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), socket.next()).await.expect("reply within 5 s");
        match frame {
            Some(Ok(Message::Text(text))) => {
                let message = serde_json::from_str(&text).expect("valid server JSON");
                if is_transient(&message) {
                    continue;
                }
                return Ok(message);
            }
            Some(Ok(Message::Close(frame))) => return Err(frame.map(|f| (f.code, f.reason.to_string()))),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return Err(None),
        }
    }
}

/// Says hello as a new client: returns the welcome, after checking the snapshot that follows it.
async fn hello(socket: &mut Socket) -> ServerMessage {
    send(socket, &hello_as("Ana", None)).await;
    let welcome = next(socket).await.expect("welcome");
    assert!(matches!(next(socket).await, Ok(ServerMessage::Snapshot { reset: false, .. })));
    welcome
}

#[tokio::test]
async fn hello_gets_welcome_and_ping_gets_pong() {
    let server = TestServer::start().await;
    let mut socket = server.connect("auditorio").await;
    match hello(&mut socket).await {
        ServerMessage::Welcome { version, room, server_version, .. } => {
            assert_eq!(version, PROTOCOL_VERSION);
            assert_eq!(room.as_str(), "auditorio");
            assert_eq!(server_version, env!("CARGO_PKG_VERSION"));
        }
        other => panic!("expected welcome, got {other:?}"),
    }
    send(&mut socket, &ClientMessage::Ping { nonce: 42 }).await;
    assert_eq!(next(&mut socket).await, Ok(ServerMessage::Pong { nonce: 42 }));
}

#[tokio::test]
async fn health_counts_open_connections() {
    let server = TestServer::start().await;
    let before = server.health().await;
    assert_eq!(before.status, "ok");
    assert_eq!(before.open_connections, 0);
    let mut a = server.connect("room-a").await;
    let mut b = server.connect("room-b").await;
    hello(&mut a).await;
    hello(&mut b).await;
    assert_eq!(server.health().await.open_connections, 2);
    a.close(None).await.expect("close");
    drop(a);
    // The server notices the close asynchronously.
    let mut open = usize::MAX;
    for _ in 0..50 {
        open = server.health().await.open_connections;
        if open == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(open, 1);
}

#[tokio::test]
async fn bad_frames_get_errors_and_the_session_survives() {
    let server = TestServer::start().await;
    let mut socket = server.connect("auditorio").await;
    hello(&mut socket).await;

    let bad_inputs = [
        Message::text("{not json"),
        Message::text(r#"{"type":"launch_missiles"}"#),
        Message::text(r#"{"type":"ping","nonce":"seven"}"#),
        Message::binary(vec![0u8, 159, 146, 150, 255]),
        Message::text(hello_as("Ana", None).to_json()),
    ];
    let expected = [
        ErrorCode::BadMessage,
        ErrorCode::BadMessage,
        ErrorCode::BadMessage,
        ErrorCode::UnexpectedBinary,
        ErrorCode::OutOfOrder,
    ];
    for (input, code) in bad_inputs.into_iter().zip(expected) {
        socket.send(input).await.expect("send");
        match next(&mut socket).await {
            Ok(ServerMessage::Error { code: got, message }) => {
                assert_eq!(got, code);
                assert!(!message.is_empty());
            }
            other => panic!("expected an error, got {other:?}"),
        }
    }
    send(&mut socket, &ClientMessage::Ping { nonce: 1 }).await;
    assert_eq!(next(&mut socket).await, Ok(ServerMessage::Pong { nonce: 1 }));
}

#[tokio::test]
async fn oversized_frames_close_only_that_connection() {
    let data = tempfile::tempdir().expect("tempdir");
    let mut config = common::test_config(data.path());
    // The transport admits an upload_image of the largest photo (base64), so a small photo
    // limit keeps this test's frames small.
    config.max_upload_bytes = 256 * 1024;
    let server = TestServer::start_with(config).await;
    let mut big = server.connect("auditorio").await;
    let mut bystander = server.connect("auditorio").await;
    hello(&mut big).await;
    hello(&mut bystander).await;
    // A large upload_image within the transport's limit is read; a bad one gets an error and
    // the session lives.
    let upload = format!(r#"{{"type":"upload_image","name":"x.jpg","data":"{}"}}"#, "A".repeat(100 * 1024));
    big.send(Message::text(upload)).await.expect("send");
    loop {
        match next(&mut big).await {
            Ok(ServerMessage::Error { code: ErrorCode::UploadRejected, .. }) => break,
            Ok(ServerMessage::Event { .. }) => continue,
            other => panic!("expected an upload error, got {other:?}"),
        }
    }
    // Any other message over 64 KiB is refused from its header: that connection closes with
    // 1009 and says why.
    let large = format!(r#"{{"type":"ping","nonce":1,"pad":"{}"}}"#, "x".repeat(100 * 1024));
    // The server may drop the connection while we are still writing.
    let _ = big.send(Message::text(large)).await;
    loop {
        match next(&mut big).await {
            Err(Some((code, reason))) => {
                assert_eq!(code, CloseCode::Size);
                assert!(reason.contains("limited to"), "{reason}");
                break;
            }
            Err(None) => panic!("closed without saying why"),
            Ok(ServerMessage::Event { .. }) => continue,
            Ok(other) => panic!("expected the oversized connection to close, got {other:?}"),
        }
    }
    send(&mut bystander, &ClientMessage::Ping { nonce: 9 }).await;
    assert_eq!(next(&mut bystander).await, Ok(ServerMessage::Pong { nonce: 9 }));
}

#[tokio::test]
async fn wrong_version_or_missing_hello_is_refused_with_a_close_code() {
    let server = TestServer::start().await;
    let mut old = server.connect("auditorio").await;
    send(&mut old, &ClientMessage::Hello { version: PROTOCOL_VERSION + 1, name: None, resume: None, user: None, colour: None, key: None }).await;
    let closed = next(&mut old).await.expect_err("closed");
    assert_eq!(closed.map(|(code, _)| u16::from(code)), Some(close_code::PROTOCOL_MISMATCH));

    let mut rude = server.connect("auditorio").await;
    send(&mut rude, &ClientMessage::Ping { nonce: 1 }).await;
    let closed = next(&mut rude).await.expect_err("closed");
    let (code, reason) = closed.expect("close frame");
    assert_eq!(u16::from(code), close_code::PROTOCOL_MISMATCH);
    assert!(reason.contains("hello"), "reason says what was expected: {reason}");
}

#[tokio::test]
async fn bad_room_ids_are_rejected_before_upgrading() {
    let server = TestServer::start().await;
    for bad in ["Upper", "a..b", "a%2Fb", "-x", "%00"] {
        let err = tokio_tungstenite::connect_async(format!("ws://{}/ws/rooms/{bad}?token=x", server.addr))
            .await
            .expect_err("refused");
        match err {
            tokio_tungstenite::tungstenite::Error::Http(response) => {
                assert_eq!(response.status(), 400, "room {bad:?}");
            }
            other => panic!("expected an HTTP refusal for {bad:?}, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn shutdown_closes_sessions_with_going_away() {
    let mut server = TestServer::start().await;
    let mut socket = server.connect("auditorio").await;
    hello(&mut socket).await;
    server.signal_stop();
    let closed = next(&mut socket).await.expect_err("closed");
    assert_eq!(closed.map(|(code, _)| u16::from(code)), Some(close_code::GOING_AWAY));
    server.stopped().await;
}

#[tokio::test]
async fn pages_are_server_rendered() {
    let server = TestServer::start().await;
    let room = reqwest::get(format!("http://{}/rooms/auditorio", server.addr)).await.expect("get");
    assert_eq!(room.status(), 200);
    let html = room.text().await.expect("body");
    assert!(html.contains("auditorio"), "room name rendered");
    assert!(html.contains(r#"data-state="connecting""#), "connection state rendered before hydration");
    assert!(html.contains("/pkg/vestige.js"), "hydration script linked");

    let lobby = reqwest::get(format!("http://{}/", server.addr)).await.expect("get");
    assert_eq!(lobby.status(), 200);
    assert!(lobby.text().await.expect("body").contains("Join"));

    let missing = reqwest::get(format!("http://{}/no/such/page", server.addr)).await.expect("get");
    assert_eq!(missing.status(), 404);
}

async fn hello_resuming(socket: &mut Socket, resume: Option<StreamPosition>) -> StreamPosition {
    send(socket, &hello_as("Ana", resume)).await;
    match next(socket).await {
        Ok(ServerMessage::Welcome { head, .. }) => head,
        other => panic!("expected welcome, got {other:?}"),
    }
}

/// Reads messages until `count` events arrived; returns their (seq, text) in arrival order.
async fn events(socket: &mut Socket, count: usize) -> Vec<(u64, String)> {
    let mut got = Vec::new();
    while got.len() < count {
        match next(socket).await {
            Ok(ServerMessage::Event { seq, event: RoomEvent::Note { text, .. }, .. }) => got.push((seq, text)),
            Ok(ServerMessage::Snapshot { .. }) => {}
            other => panic!("expected an event, got {other:?}"),
        }
    }
    got
}

#[tokio::test]
async fn two_clients_receive_identical_ordered_streams() {
    let server = TestServer::start().await;
    let mut a = server.connect("auditorio").await;
    let mut b = server.connect("auditorio").await;
    hello_resuming(&mut a, None).await;
    hello_resuming(&mut b, None).await;
    for i in 0..20 {
        let (writer, text) = if i % 2 == 0 { (&mut a, format!("a{i}")) } else { (&mut b, format!("b{i}")) };
        send(writer, &ClientMessage::Note { text }).await;
    }
    let from_a = events(&mut a, 20).await;
    let from_b = events(&mut b, 20).await;
    assert_eq!(from_a, from_b);
    assert_eq!(from_a.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(), (1..=20).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_reconnecting_client_resumes_with_no_gap_and_no_duplicate() {
    let server = TestServer::start().await;
    let mut writer = server.connect("auditorio").await;
    let mut reader = server.connect("auditorio").await;
    hello_resuming(&mut writer, None).await;
    hello_resuming(&mut reader, None).await;
    for i in 1..=5 {
        send(&mut writer, &ClientMessage::Note { text: format!("n{i}") }).await;
    }
    let seen = events(&mut reader, 5).await;
    let epoch = match server.status("auditorio").await {
        (epoch, 5) => epoch,
        other => panic!("unexpected head {other:?}"),
    };
    drop(reader);
    for i in 6..=12 {
        send(&mut writer, &ClientMessage::Note { text: format!("n{i}") }).await;
    }
    events(&mut writer, 12).await;
    let mut back = server.connect("auditorio").await;
    let head = hello_resuming(&mut back, Some(StreamPosition { epoch: epoch.clone(), seq: seen[4].0 })).await;
    assert_eq!(head, StreamPosition { epoch, seq: 12 });
    let missed = events(&mut back, 7).await;
    assert_eq!(missed, (6..=12).map(|i| (i, format!("n{i}"))).collect::<Vec<_>>());
    // Nothing else was queued: the next thing is a live event.
    send(&mut writer, &ClientMessage::Note { text: "live".into() }).await;
    assert_eq!(events(&mut back, 1).await, vec![(13, "live".to_owned())]);
}

#[tokio::test]
async fn a_stale_epoch_gets_a_reset_snapshot() {
    let server = TestServer::start().await;
    let mut socket = server.connect("auditorio").await;
    send(&mut socket, &hello_as("Ana", Some(StreamPosition { epoch: "long-gone".into(), seq: 40 }))).await;
    assert!(matches!(next(&mut socket).await, Ok(ServerMessage::Welcome { .. })));
    assert!(matches!(next(&mut socket).await, Ok(ServerMessage::Snapshot { reset: true, .. })));
}

#[tokio::test]
async fn events_survive_a_server_restart_on_the_same_data_directory() {
    let data = tempfile::tempdir().expect("temp dir");
    let first = TestServer::start_in(data.path()).await;
    let mut socket = first.connect("auditorio").await;
    let head = hello_resuming(&mut socket, None).await;
    for i in 1..=3 {
        send(&mut socket, &ClientMessage::Note { text: format!("kept {i}") }).await;
    }
    events(&mut socket, 3).await;
    first.stop().await;

    let second = TestServer::start_in(data.path()).await;
    let mut socket = second.connect("auditorio").await;
    let resumed_head = hello_resuming(&mut socket, Some(StreamPosition { epoch: head.epoch.clone(), seq: 1 })).await;
    assert_eq!(resumed_head, StreamPosition { epoch: head.epoch, seq: 3 });
    assert_eq!(events(&mut socket, 2).await, vec![(2, "kept 2".to_owned()), (3, "kept 3".to_owned())]);
}
