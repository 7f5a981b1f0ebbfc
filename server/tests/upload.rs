//! Uploads over real HTTP to a real server on 127.0.0.1, with real photos from ../shared/datasets.

mod common;
use common::{TestServer, datasets, hello_as, is_transient, photos, sha};
use app::protocol::{PhotoState, RoomEvent, ServerMessage};
use futures_util::{SinkExt, StreamExt};
use server::upload::Uploaded;
use std::path::Path;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

fn photo(datasets: &Path, set: &str, index: usize) -> Vec<u8> {
    std::fs::read(&photos(datasets, set)[index]).expect("photo")
}

impl TestServer {
    async fn put(&self, room: &str, id: &str, body: Vec<u8>) -> (u16, serde_json::Value) {
        // Bad room ids never reach token handling; don't create rooms for them.
        let url = if room.chars().all(|c| c.is_ascii_lowercase()) {
            self.room_url(room, &format!("/photos/{id}")).await
        } else {
            format!("http://{}/api/rooms/{room}/photos/{id}", self.addr)
        };
        let response = reqwest::Client::new()
            .put(url)
            .header("x-photo-name", "IMG_0001.jpg")
            .body(body)
            .send()
            .await
            .expect("send");
        let status = response.status().as_u16();
        (status, response.json().await.expect("json body"))
    }
}

/// The first `count` stream messages (welcome, snapshot, events) a new member gets.
async fn first_messages(server: &TestServer, room: &str, count: usize) -> Vec<ServerMessage> {
    let (mut socket, _) = tokio_tungstenite::connect_async(server.ws_url(room).await).await.expect("ws");
    socket.send(Message::text(hello_as("Ana", None).to_json())).await.expect("hello");
    let mut got = Vec::new();
    while got.len() < count {
        let frame = tokio::time::timeout(Duration::from_secs(5), socket.next()).await.expect("in time");
        if let Some(Ok(Message::Text(text))) = frame {
            let message: ServerMessage = serde_json::from_str(&text).expect("json");
            if !is_transient(&message) {
                got.push(message);
            }
        }
    }
    got
}

#[tokio::test]
async fn a_real_photo_is_stored_durably_announced_once_and_kept_across_restarts() {
    let Some(datasets) = datasets() else { return };
    let data = tempfile::tempdir().expect("tempdir");
    let bytes = photo(&datasets, "fountain-P11-half", 0);
    let id = sha(&bytes);

    let server = TestServer::start_in(data.path()).await;
    let (status, body) = server.put("auditorio", &id, bytes.clone()).await;
    assert_eq!(status, 201, "{body}");
    let uploaded: Uploaded = serde_json::from_value(body).expect("shape");
    assert_eq!(uploaded, Uploaded { photo: id.clone(), position: Some(1), seq: Some(1), duplicate: false });
    let stored = data.path().join("rooms/auditorio/photos").join(&id);
    assert_eq!(std::fs::read(&stored).expect("on disk"), bytes);

    // A retried upload is acknowledged without a second copy or a second event.
    let (status, body) = server.put("auditorio", &id, bytes.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["duplicate"], true);
    let second = photo(&datasets, "fountain-P11-half", 1);
    let (status, body) = server.put("auditorio", &sha(&second), second).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["position"], 2);
    server.stop().await;

    let server = TestServer::start_in(data.path()).await;
    let messages = first_messages(&server, "auditorio", 2).await;
    match &messages[1] {
        ServerMessage::Snapshot { room, .. } => {
            assert_eq!(room.photos.len(), 2, "each photo once");
            assert_eq!(room.photos[0].id, id);
            assert_eq!(room.photos[0].name, "IMG_0001.jpg");
            assert_eq!(room.photos[0].by, server::upload::ANONYMOUS_UPLOADER, "no room connection named the uploader");
            assert_ne!(room.photos[0].status, PhotoState::Failed);
        }
        other => panic!("expected a snapshot, got {other:?}"),
    }
    server.stop().await;
}

#[tokio::test]
async fn members_see_the_photo_queued_event_live() {
    let Some(datasets) = datasets() else { return };
    let data = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start_in(data.path()).await;
    let (mut socket, _) = tokio_tungstenite::connect_async(server.ws_url("auditorio").await).await.expect("ws");
    socket.send(Message::text(hello_as("Ana", None).to_json())).await.expect("hello");
    let bytes = photo(&datasets, "Herz-Jesus-P8-half", 0);
    let id = sha(&bytes);
    let (status, _) = server.put("auditorio", &id, bytes.clone()).await;
    assert_eq!(status, 201);
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), socket.next()).await.expect("in time");
        let Some(Ok(Message::Text(text))) = frame else { continue };
        if let Ok(ServerMessage::Event { seq, event, .. }) = serde_json::from_str(&text) {
            assert_eq!(seq, 1);
            assert_eq!(event, RoomEvent::PhotoQueued {
                photo: id,
                name: "IMG_0001.jpg".into(),
                by: server::upload::ANONYMOUS_UPLOADER.into(),
                uploader: None,
                bytes: bytes.len() as u64,
                position: 1,
            });
            break;
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn bad_uploads_get_clear_errors_and_nothing_is_kept() {
    let Some(datasets) = datasets() else { return };
    let data = tempfile::tempdir().expect("tempdir");
    let mut config = common::test_config(data.path());
    config.max_upload_bytes = 2 * 1024 * 1024;
    let server = TestServer::start_with(config).await;
    let real = photo(&datasets, "entry-P10-half", 0);

    let text = b"this is a text file renamed to photo.jpg\n".to_vec();
    let truncated = real[..real.len() / 2].to_vec();
    let huge = vec![0xffu8; 3 * 1024 * 1024];
    let cases: Vec<(&str, String, Vec<u8>, u16, &str)> = vec![
        ("auditorio", sha(&text), text.clone(), 415, "unsupported_image"),
        ("auditorio", sha(&truncated), truncated.clone(), 422, "undecodable_image"),
        ("auditorio", sha(&real), b"not these bytes".to_vec(), 400, "hash_mismatch"),
        ("auditorio", "not-a-hash".into(), real.clone(), 400, "bad_photo_id"),
        ("Bad..Room", sha(&real), real.clone(), 400, "bad_room_id"),
        ("auditorio", sha(&huge), huge, 413, "too_large"),
        ("auditorio", sha(&[]), Vec::new(), 415, "unsupported_image"),
    ];
    for (room, id, body, status, code) in cases {
        let (got, json) = server.put(room, &id, body).await;
        assert_eq!(got, status, "{code}: {json}");
        assert_eq!(json["error"], code);
        assert!(json["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // Nothing was recorded, and the room still takes a good photo as its first.
    let (status, body) = server.put("auditorio", &sha(&real), real).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["position"], 1);
    server.stop().await;
}

#[tokio::test]
async fn metrics_count_uploads_and_events_in_prometheus_text() {
    let Some(datasets) = datasets() else { return };
    let data = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start_in(data.path()).await;
    let real = photo(&datasets, "fountain-P11-half", 2);
    assert_eq!(server.put("auditorio", &sha(&real), real.clone()).await.0, 201);
    assert_eq!(server.put("auditorio", &sha(&real), real.clone()).await.0, 200);
    assert_eq!(server.put("auditorio", "bad", real.clone()).await.0, 400);
    let response = reqwest::get(format!("http://{}/metrics", server.addr)).await.expect("get");
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().expect("ascii").starts_with("text/plain; version=0.0.4"));
    let text = response.text().await.expect("body");
    let events: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("vestige_events_total "))
        .and_then(|v| v.parse().ok())
        .expect("events counter");
    assert!(events >= 1.0, "at least the photo_queued event");
    for line in [
        "# TYPE vestige_events_total counter".to_owned(),

        "vestige_uploads_accepted_total 1".to_owned(),
        format!("vestige_upload_bytes_total {}", real.len()),
        "vestige_uploads_rejected_total 1".to_owned(),
        "vestige_rooms_loaded 1".to_owned(),
        "vestige_open_connections 0".to_owned(),
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in:\n{text}");
    }
    server.stop().await;
}
