//! The real `vestige` binary killed with SIGKILL mid-stream: whatever it acknowledged is there
//! after a restart.

mod common;
use common::{datasets, photos, sha};
use app::protocol::{ClientMessage, PROTOCOL_VERSION, ServerMessage};
use futures_util::{SinkExt, StreamExt};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// Starts the binary on a free port and returns it with its address, read from its log line.
fn spawn(data: &Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vestige"))
        .args(["--bind", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn vestige");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines.next().expect("server printed its address").expect("line");
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break rest.split_whitespace().next().expect("addr").to_owned();
        }
    };
    // Keep draining the log so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

async fn head_and_photos(addr: &str) -> (u64, usize) {
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws/rooms/auditorio")).await.expect("ws");
    let hello = ClientMessage::Hello { version: PROTOCOL_VERSION, name: None, resume: None };
    socket.send(Message::text(hello.to_json())).await.expect("hello");
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), socket.next()).await.expect("in time");
        let Some(Ok(Message::Text(text))) = frame else { continue };
        if let Ok(ServerMessage::Snapshot { position, room, .. }) = serde_json::from_str(&text) {
            return (position.seq, room.photos.len());
        }
    }
}

#[tokio::test]
async fn kill_9_loses_nothing_that_was_acknowledged() {
    let Some(datasets) = datasets() else { return };
    let data = tempfile::tempdir().expect("tempdir");
    let photos = photos(&datasets, "fountain-P11-half");

    let (mut child, addr) = spawn(data.path());
    let client = reqwest::Client::new();
    let mut acknowledged = Vec::new();
    for path in photos.iter().take(4) {
        let bytes = std::fs::read(path).expect("photo");
        let id = sha(&bytes);
        let response = client
            .put(format!("http://{addr}/api/rooms/auditorio/photos/{id}"))
            .body(bytes)
            .send()
            .await
            .expect("upload");
        assert_eq!(response.status(), 201);
        acknowledged.push(id);
    }
    // One more upload in flight when the process dies: it may or may not land, but it must
    // never land half-way.
    let last = std::fs::read(&photos[4]).expect("photo");
    let last_id = sha(&last);
    let in_flight = tokio::spawn({
        let client = client.clone();
        let url = format!("http://{addr}/api/rooms/auditorio/photos/{last_id}");
        async move { client.put(url).body(last).send().await.map(|r| r.status().as_u16()) }
    });
    tokio::time::sleep(Duration::from_millis(5)).await;
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    let in_flight = in_flight.await.expect("task");

    let (mut child, addr) = spawn(data.path());
    let (seq, photo_count) = head_and_photos(&addr).await;
    let landed = usize::from(photo_count == 5);
    assert_eq!(photo_count, 4 + landed, "the four acknowledged photos, plus the fifth only if it landed");
    assert_eq!(seq as usize, photo_count, "one event per stored photo, no more, no fewer");
    if matches!(in_flight, Ok(201)) {
        assert_eq!(landed, 1, "an acknowledged upload must survive");
    }
    for id in &acknowledged {
        let stored = data.path().join("rooms/auditorio/photos").join(id);
        let bytes = std::fs::read(&stored).expect("acknowledged photo on disk");
        assert_eq!(&sha(&bytes), id, "stored bytes are whole");
    }
    // The restarted server keeps serving: the in-flight photo can be sent again, idempotently.
    let retry = client
        .put(format!("http://{addr}/api/rooms/auditorio/photos/{last_id}"))
        .body(std::fs::read(&photos[4]).expect("photo"))
        .send()
        .await
        .expect("retry");
    assert!(matches!(retry.status().as_u16(), 200 | 201));
    assert_eq!(head_and_photos(&addr).await, (5, 5));
    child.kill().expect("stop");
    child.wait().expect("reaped");
}
