//! The real `vestige` binary killed with SIGKILL mid-stream: whatever it acknowledged is there
//! after a restart.

mod common;
use common::{Member, create_room, datasets, hello_as, photos, sha};
use app::protocol::{ClientMessage, PhotoState, RoomEvent, RoomSnapshot, ServerMessage, SettingValue, StreamPosition};
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

/// The room as a newcomer sees it.
async fn snapshot(addr: &str, token: &str) -> RoomSnapshot {
    let url = format!("ws://{addr}/ws/rooms/auditorio?token={token}");
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.expect("ws");
    socket.send(Message::text(hello_as("Ana", None).to_json())).await.expect("hello");
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), socket.next()).await.expect("in time");
        let Some(Ok(Message::Text(text))) = frame else { continue };
        if let Ok(ServerMessage::Snapshot { room, .. }) = serde_json::from_str(&text) {
            return room;
        }
    }
}

fn ids(room: &RoomSnapshot) -> Vec<String> {
    room.photos.iter().map(|p| p.id.clone()).collect()
}

#[tokio::test]
async fn kill_9_loses_nothing_that_was_acknowledged() {
    let Some(datasets) = datasets() else { return };
    let data = tempfile::tempdir().expect("tempdir");
    let photos = photos(&datasets, "fountain-P11-half");

    let (mut child, addr) = spawn(data.path());
    let token = create_room(&addr, "auditorio").await.join_token;
    let client = reqwest::Client::new();
    let mut acknowledged = Vec::new();
    for path in photos.iter().take(4) {
        let bytes = std::fs::read(path).expect("photo");
        let id = sha(&bytes);
        let response = client
            .put(format!("http://{addr}/api/rooms/auditorio/photos/{id}?token={token}"))
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
        let url = format!("http://{addr}/api/rooms/auditorio/photos/{last_id}?token={token}");
        async move { client.put(url).body(last).send().await.map(|r| r.status().as_u16()) }
    });
    tokio::time::sleep(Duration::from_millis(5)).await;
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    let in_flight = in_flight.await.expect("task");

    let (mut child, addr) = spawn(data.path());
    let room = snapshot(&addr, &token).await;
    let photo_count = room.photos.len();
    let landed = usize::from(photo_count == 5);
    assert_eq!(photo_count, 4 + landed, "the four acknowledged photos, plus the fifth only if it landed");
    assert_eq!(ids(&room)[..4], acknowledged[..], "each acknowledged photo once, in order");
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
        .put(format!("http://{addr}/api/rooms/auditorio/photos/{last_id}?token={token}"))
        .body(std::fs::read(&photos[4]).expect("photo"))
        .send()
        .await
        .expect("retry");
    assert!(matches!(retry.status().as_u16(), 200 | 201));
    // Photos acknowledged before the kill are processed after the restart: all five end up
    // registered (they are consecutive views of one facade).
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let room = snapshot(&addr, &token).await;
        assert_eq!(ids(&room).len(), 5);
        if room.photos.iter().all(|p| p.status == PhotoState::Registered) {
            assert_eq!(room.cameras.len(), 5);
            assert!(room.manifest.points() > 1000, "the model has points: {}", room.manifest.points());
            break;
        }
        assert!(room.photos.iter().all(|p| p.status != PhotoState::Failed), "{:?}", room.photos);
        assert!(std::time::Instant::now() < deadline, "processing after restart did not finish: {:?}", room.photos);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    child.kill().expect("stop");
    child.wait().expect("reaped");
}

/// Room events reach members before they are fsynced (only photos and pipeline outcomes wait
/// for the disk; see `server/src/storage.rs`). A killed process must still keep every event a
/// member saw, under the same epoch, so the member resumes with nothing missing or repeated.
#[tokio::test]
async fn kill_9_keeps_every_event_a_member_saw() {
    let data = tempfile::tempdir().expect("tempdir");
    let (mut child, addr) = spawn(data.path());
    let token = create_room(&addr, "auditorio").await.join_token;
    let mut ana = Member::join(&format!("ws://{addr}/ws/rooms/auditorio?token={token}"), "Ana").await;
    for i in 0..10 {
        ana.send(&ClientMessage::Note { text: format!("note {i}") }).await;
    }
    let mut seen = None;
    ana.read_until(|message| match message {
        ServerMessage::Event { epoch, seq, event: RoomEvent::Note { text, .. } } if text == "note 9" => {
            seen = Some(StreamPosition { epoch: epoch.clone(), seq: *seq });
            true
        }
        _ => false,
    })
    .await;
    let seen = seen.expect("the last note came back");
    // At once: well inside the one-second window before the periodic fsync.
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");

    let (mut child, addr) = spawn(data.path());
    let url = format!("ws://{addr}/ws/rooms/auditorio?token={token}");
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.expect("ws");
    socket.send(Message::text(hello_as("Ana", Some(seen.clone())).to_json())).await.expect("hello");
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), socket.next()).await.expect("in time");
        let Some(Ok(Message::Text(text))) = frame else { continue };
        match serde_json::from_str::<ServerMessage>(&text).expect("server JSON") {
            ServerMessage::Welcome { head, .. } => {
                assert_eq!(head, seen, "the head the member saw, under the same epoch");
                break;
            }
            ServerMessage::Snapshot { .. } | ServerMessage::Event { .. } => panic!("nothing to resend, got {text}"),
            _ => {}
        }
    }
    let room = snapshot(&addr, &token).await;
    assert!(room.notes.last().is_some_and(|n| n.ends_with("note 9")), "{:?}", room.notes);
    child.kill().expect("stop");
    child.wait().expect("reaped");
}

/// A refinement cut short by SIGKILL is closed in the stream when the server starts again, so
/// no client waits for its end, and it then runs again in full.
#[tokio::test]
async fn a_refinement_killed_midway_is_closed_by_refinement_interrupted() {
    let Some(datasets) = datasets() else { return };
    let data = tempfile::tempdir().expect("tempdir");
    let photos = photos(&datasets, "fountain-P11-half");
    let (mut child, addr) = spawn(data.path());
    let token = create_room(&addr, "auditorio").await.join_token;
    let url = format!("ws://{addr}/ws/rooms/auditorio?token={token}");
    let mut ana = Member::join(&url, "Ana").await;
    ana.send(&ClientMessage::UpdateSetting { setting: SettingValue::RefineEvery(4), base_revision: 0 }).await;
    ana.read_until(|m| matches!(m, ServerMessage::Event { event: RoomEvent::SettingChanged { .. }, .. })).await;
    let client = reqwest::Client::new();
    for path in photos.iter().take(4) {
        let bytes = std::fs::read(path).expect("photo");
        let id = sha(&bytes);
        let url = format!("http://{addr}/api/rooms/auditorio/photos/{id}?token={token}");
        assert_eq!(client.put(url).body(bytes).send().await.expect("upload").status(), 201);
    }
    let mut seen = None;
    ana.read_until(|message| match message {
        ServerMessage::Event { epoch, seq, event: RoomEvent::RefinementStarted { .. } } => {
            seen = Some(StreamPosition { epoch: epoch.clone(), seq: *seq });
            true
        }
        _ => false,
    })
    .await;
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");

    let (mut child, addr) = spawn(data.path());
    let url = format!("ws://{addr}/ws/rooms/auditorio?token={token}");
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.expect("ws");
    socket.send(Message::text(hello_as("Ana", seen.clone()).to_json())).await.expect("hello");
    let mut after = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !after.iter().any(|e| matches!(e, RoomEvent::RefinementDone { .. })) {
        assert!(std::time::Instant::now() < deadline, "no refinement after the restart: {after:?}");
        let frame = tokio::time::timeout(Duration::from_secs(60), socket.next()).await.expect("in time");
        let Some(Ok(Message::Text(text))) = frame else { continue };
        if let Ok(ServerMessage::Event { event, .. }) = serde_json::from_str::<ServerMessage>(&text) {
            after.push(event);
        }
    }
    let kinds: Vec<&str> = after.iter().map(kind).collect();
    assert_eq!(kinds[0], "refinement_interrupted", "the open refinement is closed first: {kinds:?}");
    assert_eq!(
        kinds[1..],
        ["photo_started", "refinement_started", "photo_registered", "refinement_done"],
        "then the triggering photo runs again, refinement included: {kinds:?}"
    );
    let room = snapshot(&addr, &token).await;
    assert_eq!(room.refining, None);
    assert_eq!(room.cameras.len(), 4);
    child.kill().expect("stop");
    child.wait().expect("reaped");
}

fn kind(event: &RoomEvent) -> &'static str {
    match event {
        RoomEvent::RefinementInterrupted { .. } => "refinement_interrupted",
        RoomEvent::RefinementStarted { .. } => "refinement_started",
        RoomEvent::RefinementDone { .. } => "refinement_done",
        RoomEvent::PhotoStarted { .. } => "photo_started",
        RoomEvent::PhotoRegistered { .. } => "photo_registered",
        _ => "other",
    }
}
