//! Rooms as resources and as gatherings: tokens, REST, presence, heartbeats, settings,
//! limits and archiving, through a real server on 127.0.0.1.

mod common;
use app::protocol::{ClientMessage, ErrorCode, Member as Present, ServerMessage, SettingValue};
use base64::Engine;
use common::{Member, TestServer, create_room, datasets, photos, sha};
use server::room::{RoomListing, RoomStatus};
use std::time::Duration;

async fn ws_status(url: &str) -> u16 {
    match tokio_tungstenite::connect_async(url).await {
        Ok(_) => 101,
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn rooms_are_private_by_default_and_tokens_are_checked() {
    let server = TestServer::start().await;
    let addr = server.addr.to_string();
    let created = create_room(&addr, "Auditorio de León").await;
    assert_eq!(created.id.as_str(), "auditorio-de-le-n");
    assert!(!created.public);
    assert_eq!(created.join_link, format!("/rooms/{}?token={}", created.id, created.join_token));
    // The same name again is a different room.
    assert_eq!(create_room(&addr, "Auditorio de León").await.id.as_str(), "auditorio-de-le-n-2");

    let ws = format!("ws://{addr}/ws/rooms/{}", created.id);
    // Without a valid token a private room answers as if it did not exist.
    assert_eq!(ws_status(&ws).await, 404, "no token");
    assert_eq!(ws_status(&format!("{ws}?token=guess")).await, 404, "wrong token");
    assert_eq!(ws_status(&format!("{ws}?token={}", created.join_token)).await, 101);
    assert_eq!(ws_status(&format!("ws://{addr}/ws/rooms/nobody-here?token=x")).await, 404);

    let client = reqwest::Client::new();
    let api = format!("http://{addr}/api/rooms/{}", created.id);
    assert_eq!(client.get(&api).send().await.expect("get").status(), 404);
    assert_eq!(client.get(format!("{api}/model.ply")).send().await.expect("get").status(), 404);
    assert_eq!(client.put(format!("{api}/photos/{}", "a".repeat(64))).body("x").send().await.expect("put").status(), 404);
    let status: RoomStatus = client
        .get(&api)
        .bearer_auth(&created.join_token)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("status");
    assert_eq!(status.photos.total, 0);
    assert_eq!(status.head.seq, 0);

    // Only public rooms are listed.
    let public: serde_json::Value = client
        .post(format!("http://{addr}/api/rooms"))
        .json(&serde_json::json!({ "name": "Plaza", "public": true }))
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    let listed: Vec<RoomListing> = client.get(format!("http://{addr}/api/rooms")).send().await.expect("list").json().await.expect("json");
    assert_eq!(listed.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), vec!["plaza"]);
    assert_eq!(ws_status(&format!("ws://{addr}/ws/rooms/plaza")).await, 101, "public rooms need no token");
    assert!(public["owner_token"].as_str().is_some());

    // Bad bodies are refused clearly.
    for body in ["{", r#"{"name":""}"#, r#"{"nom":"x"}"#] {
        let response = client
            .post(format!("http://{addr}/api/rooms"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("post");
        assert!(response.status().is_client_error(), "{body}");
        let json: serde_json::Value = response.json().await.expect("json error");
        assert!(json["message"].as_str().is_some_and(|m| !m.is_empty()));
    }

    // Only the owner deletes; members of a deleted room are told so.
    let mut member = Member::join(&format!("{ws}?token={}", created.join_token), "Ana").await;
    member.read_until(|m| matches!(m, ServerMessage::Presence { .. })).await;
    assert_eq!(client.delete(&api).bearer_auth(&created.join_token).send().await.expect("delete").status(), 403);
    assert_eq!(client.delete(&api).bearer_auth(&created.owner_token).send().await.expect("delete").status(), 204);
    // Members of the deleted room are disconnected (a presence flush may come first).
    loop {
        match member.next_within(Duration::from_secs(5)).await {
            None => break,
            Some(m) if common::is_transient(&m) => continue,
            Some(other) => panic!("expected the connection to close, got {other:?}"),
        }
    }
    assert_eq!(ws_status(&format!("{ws}?token={}", created.join_token)).await, 404);
    server.stop().await;
}

fn presence_change(message: &ServerMessage) -> Option<(Vec<Present>, Vec<String>, Vec<Present>)> {
    match message {
        ServerMessage::PresenceDiff { joined, left, changed, .. } => Some((joined.clone(), left.clone(), changed.clone())),
        _ => None,
    }
}

#[tokio::test]
async fn presence_has_one_entry_per_user_and_a_grace_period() {
    let data = tempfile::tempdir().expect("tmp");
    let mut config = common::test_config(data.path());
    config.presence_grace_seconds = 1.0;
    let server = TestServer::start_with(config).await;
    let url = server.ws_url("auditorio").await;
    let mut ben = Member::join(&url, "Ben").await;
    // Ben is announced to the room (himself included) at the next flush.
    let got = ben.read_until(|m| presence_change(m).is_some()).await;
    assert_eq!(got.last().and_then(presence_change).expect("diff").0[0].name, "Ben");
    let about_ana = |m: &ServerMessage| {
        presence_change(m).is_some_and(|(j, l, c)| j.iter().chain(&c).any(|m| m.name == "Ana") || !l.is_empty())
    };
    let tab1 = Member::join(&url, "Ana").await;
    let got = ben.read_until(about_ana).await;
    let (joined, _, _) = got.last().and_then(presence_change).expect("diff");
    assert_eq!(joined.iter().map(|m| (m.name.as_str(), m.tabs)).collect::<Vec<_>>(), vec![("Ana", 1)]);
    let mut tab2 = Member::join(&url, "Ana").await;
    let got = ben.read_until(about_ana).await;
    let (joined, _, changed) = got.last().and_then(presence_change).expect("diff");
    assert!(joined.is_empty(), "a second tab is not a second person");
    assert_eq!(changed[0].tabs, 2);
    tab2.send(&ClientMessage::Uploading { files: 3 }).await;
    let got = ben.read_until(about_ana).await;
    assert_eq!(got.last().and_then(presence_change).expect("diff").2[0].uploading, 3);

    // Both tabs close and one comes back quickly: nobody sees Ana leave.
    drop(tab1);
    drop(tab2);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let back = Member::join(&url, "Ana").await;
    let quiet = ben.next_within(Duration::from_millis(1500)).await;
    assert!(
        !matches!(quiet.as_ref().and_then(presence_change), Some((_, ref left, _)) if !left.is_empty()),
        "a quick reconnect does not flicker: {quiet:?}"
    );
    // Gone for longer than the grace period: left.
    drop(back);
    let got = ben.read_until(|m| presence_change(m).is_some_and(|(_, left, _)| !left.is_empty())).await;
    assert_eq!(got.last().and_then(presence_change).expect("diff").1, vec!["user-ana".to_owned()]);
    server.stop().await;
}

#[tokio::test]
async fn silent_connections_are_dropped_by_the_heartbeat() {
    let data = tempfile::tempdir().expect("tmp");
    let mut config = common::test_config(data.path());
    config.heartbeat_seconds = 0.2;
    let server = TestServer::start_with(config).await;
    let url = server.ws_url("auditorio").await;
    let mut alive = Member::join(&url, "Ana").await;
    // A client that says hello and then never reads again: it never answers pings.
    let dead = Member::join(&url, "Ben").await;
    let health = || async {
        let h: serde_json::Value = reqwest::get(format!("http://{}/health", server.addr)).await.expect("get").json().await.expect("json");
        h["open_connections"].as_u64().expect("count")
    };
    // The live one keeps answering pings (the client library does it while we read).
    let mut open = 2;
    for _ in 0..40 {
        let _ = alive.next_within(Duration::from_millis(100)).await;
        open = health().await;
        if open == 1 {
            break;
        }
    }
    assert_eq!(open, 1, "the silent connection was dropped, the live one kept");
    drop(dead);
    alive.send(&ClientMessage::Ping { nonce: 5 }).await;
    alive.read_until(|m| matches!(m, ServerMessage::Pong { nonce: 5 })).await;
    server.stop().await;
}

#[tokio::test]
async fn concurrent_setting_edits_conflict_instead_of_overwriting() {
    let server = TestServer::start().await;
    let url = server.ws_url("auditorio").await;
    let mut ana = Member::join(&url, "Ana").await;
    let mut ben = Member::join(&url, "Ben").await;
    ana.send(&ClientMessage::UpdateSetting { setting: SettingValue::MaxImageSide(2400), base_revision: 0 }).await;
    ana.read_until(|m| matches!(m, ServerMessage::Event { .. })).await;
    // Ben edited from revision 0 too.
    ben.send(&ClientMessage::UpdateSetting { setting: SettingValue::MaxImageSide(1200), base_revision: 0 }).await;
    let got = ben.read_until(|m| matches!(m, ServerMessage::SettingConflict { .. })).await;
    assert_eq!(
        got.last(),
        Some(&ServerMessage::SettingConflict {
            yours: SettingValue::MaxImageSide(1200),
            theirs: SettingValue::MaxImageSide(2400),
            theirs_by: Some("Ana".into()),
            revision: 1,
        })
    );
    ben.send(&ClientMessage::UpdateSetting { setting: SettingValue::MaxImageSide(100_000), base_revision: 1 }).await;
    let got = ben.read_until(|m| matches!(m, ServerMessage::Error { .. })).await;
    assert!(matches!(got.last(), Some(ServerMessage::Error { code: ErrorCode::InvalidSetting, .. })));
    // Keep mine, on the revision Ben now knows: applied, and Ana sees who did it.
    ben.send(&ClientMessage::UpdateSetting { setting: SettingValue::MaxImageSide(1200), base_revision: 1 }).await;
    let got = ana.read_until(|m| matches!(m, ServerMessage::Event { event: app::protocol::RoomEvent::SettingChanged { revision: 2, .. }, .. })).await;
    match got.last() {
        Some(ServerMessage::Event { event: app::protocol::RoomEvent::SettingChanged { setting, by, .. }, .. }) => {
            assert_eq!((setting, by.as_str()), (&SettingValue::MaxImageSide(1200), "Ben"));
        }
        other => panic!("{other:?}"),
    }
    server.stop().await;
}

#[tokio::test]
async fn upload_image_over_websocket_takes_the_same_path() {
    let Some(datasets) = datasets() else { return };
    let server = TestServer::start().await;
    let mut ana = Member::join(&server.ws_url("auditorio").await, "Ana").await;
    let bytes = std::fs::read(&photos(&datasets, "entry-P10-half")[0]).expect("photo");
    let data = base64::engine::general_purpose::STANDARD.encode(&bytes);
    let upload = |data: String, photo: Option<String>| ClientMessage::UploadImage { name: "door.jpg".into(), data, photo };
    ana.send(&upload(data.clone(), Some(sha(&bytes)))).await;
    let got = ana.read_until(|m| matches!(m, ServerMessage::Uploaded { .. } | ServerMessage::Error { .. })).await;
    assert_eq!(got.last(), Some(&ServerMessage::Uploaded { photo: sha(&bytes), duplicate: false }));
    ana.send(&upload(data, None)).await;
    let got = ana.read_until(|m| matches!(m, ServerMessage::Uploaded { .. } | ServerMessage::Error { .. })).await;
    assert_eq!(got.last(), Some(&ServerMessage::Uploaded { photo: sha(&bytes), duplicate: true }));
    let text = base64::engine::general_purpose::STANDARD.encode(b"just text, named .jpg");
    for bad in [upload("%%%not base64".into(), None), upload(text, None)] {
        ana.send(&bad).await;
        let got = ana.read_until(|m| matches!(m, ServerMessage::Uploaded { .. } | ServerMessage::Error { .. })).await;
        assert!(matches!(got.last(), Some(ServerMessage::Error { code: ErrorCode::UploadRejected, .. })), "{got:?}");
    }
    let stored = server.data_dir.join("rooms/auditorio/photos").join(sha(&bytes));
    assert_eq!(std::fs::read(stored).expect("stored"), bytes);
    server.stop().await;
}

#[tokio::test]
async fn limits_answer_clearly() {
    let Some(datasets) = datasets() else { return };
    let data = tempfile::tempdir().expect("tmp");
    let mut config = common::test_config(data.path());
    config.max_photos_per_room = 1;
    config.max_clients_per_room = 1;
    config.uploads_per_second = 0.2; // burst of 2
    config.messages_per_second = 0.5; // burst of 5
    config.max_rooms = 2;
    let server = TestServer::start_with(config).await;
    let set = photos(&datasets, "fountain-P11-half");
    let (a, b) = (std::fs::read(&set[0]).expect("photo"), std::fs::read(&set[1]).expect("photo"));
    let client = reqwest::Client::new();
    let server = &server;
    let put = |bytes: Vec<u8>| {
        let client = client.clone();
        async move {
            let url = server.room_url("auditorio", &format!("/photos/{}", sha(&bytes))).await;
            let response = client.put(url).body(bytes).send().await.expect("put");
            let status = response.status().as_u16();
            let json: serde_json::Value = response.json().await.expect("json");
            (status, json["error"].as_str().unwrap_or_default().to_owned())
        }
    };
    assert_eq!(put(a.clone()).await.0, 201);
    assert_eq!(put(b.clone()).await, (409, "photo_limit".to_owned()));
    assert_eq!(put(a.clone()).await, (429, "rate_limited".to_owned()));

    let url = server.ws_url("auditorio").await;
    let mut ana = Member::join(&url, "Ana").await;
    ana.read_until(|m| matches!(m, ServerMessage::Presence { .. })).await;
    assert_eq!(ws_status(&url).await, 409, "the room is full");
    let mut limited = false;
    for i in 0..8 {
        ana.send(&ClientMessage::Note { text: format!("n{i}") }).await;
    }
    for _ in 0..8 {
        if let ServerMessage::Error { code: ErrorCode::RateLimited, .. } =
            ana.read_until(|m| matches!(m, ServerMessage::Event { .. } | ServerMessage::Error { .. })).await.pop().expect("reply")
        {
            limited = true;
            break;
        }
    }
    assert!(limited, "the sixth message in a burst is refused");
    let addr = server.addr.to_string();
    create_room(&addr, "second").await;
    let third = client.post(format!("http://{addr}/api/rooms")).json(&serde_json::json!({"name": "third"})).send().await.expect("post");
    assert_eq!(third.status(), 409);
}

#[tokio::test]
async fn idle_rooms_are_archived_and_come_back_when_opened() {
    let data = tempfile::tempdir().expect("tmp");
    let mut config = common::test_config(data.path());
    config.archive_after_days = 1.0 / 86_400.0; // one second
    let server = TestServer::start_with(config).await;
    let client = reqwest::Client::new();
    let addr = server.addr;
    client.post(format!("http://{addr}/api/rooms")).json(&serde_json::json!({"name": "plaza", "public": true})).send().await.expect("post");
    let listed = || async {
        let rooms: Vec<RoomListing> = client.get(format!("http://{addr}/api/rooms")).send().await.expect("get").json().await.expect("json");
        rooms.into_iter().find(|r| r.id == "plaza").expect("listed")
    };
    let mut archived = false;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if listed().await.archived {
            archived = true;
            break;
        }
    }
    assert!(archived, "an idle room is archived (and still listed)");
    let mut back = Member::join(&format!("ws://{addr}/ws/rooms/plaza"), "Ana").await;
    back.read_until(|m| matches!(m, ServerMessage::Snapshot { .. })).await;
    assert!(!listed().await.archived, "opening it restores it");
    server.stop().await;
}
