//! The live reconstruction through the real server: real photos in, identical event streams,
//! shards and downloads out.

mod common;
use app::protocol::{ClientMessage, ErrorCode, PhotoState, RoomEvent, RoomSnapshot, ServerMessage, SettingValue};
use common::{Member, TestServer, datasets, photos, sha};
use std::collections::BTreeMap;

impl TestServer {
    async fn upload(&self, room: &str, bytes: Vec<u8>) -> u16 {
        let url = self.room_url(room, &format!("/photos/{}", sha(&bytes))).await;
        reqwest::Client::new().put(url).body(bytes).send().await.expect("put").status().as_u16()
    }

    /// An upload as the member whose `welcome` gave `upload_key`, as the browser sends it.
    async fn upload_as(&self, room: &str, bytes: Vec<u8>, upload_key: &str) -> u16 {
        let url = self.room_url(room, &format!("/photos/{}", sha(&bytes))).await;
        let request = reqwest::Client::new().put(url).header("x-vestige-session", upload_key).body(bytes);
        request.send().await.expect("put").status().as_u16()
    }
}

/// Joins and reads up to the `welcome`: its upload key, uploader id and owner flag.
async fn join_as(url: &str, name: &str) -> (Member, String, Option<String>, bool) {
    let mut member = Member::join(url, name).await;
    match member.next().await {
        ServerMessage::Welcome { upload_key, uploader, owner, .. } => (member, upload_key.expect("an upload key"), uploader, owner),
        other => panic!("expected welcome, got {other:?}"),
    }
}

/// Stream events (seq, event) among `messages`.
fn events(messages: &[ServerMessage]) -> Vec<(u64, RoomEvent)> {
    messages
        .iter()
        .filter_map(|m| match m {
            ServerMessage::Event { seq, event, .. } => Some((*seq, event.clone())),
            _ => None,
        })
        .collect()
}

/// Folds what a member received into the room state, as the browser does.
fn fold(messages: &[ServerMessage]) -> RoomSnapshot {
    let mut state = RoomSnapshot::default();
    for message in messages {
        match message {
            ServerMessage::Snapshot { room, .. } => state = room.clone(),
            ServerMessage::Event { seq, event, .. } => state.apply(*seq, event),
            _ => {}
        }
    }
    state
}

fn settled(state: &RoomSnapshot, photos: usize) -> bool {
    state.photos.len() == photos && state.photos.iter().all(|p| !p.status.awaits_processing())
}

#[tokio::test]
async fn two_members_watch_the_model_grow_identically() {
    let Some(datasets) = datasets() else { return };
    let server = TestServer::start().await;
    let url = server.ws_url("auditorio").await;
    let mut ana = Member::join(&url, "Ana").await;
    let mut ben = Member::join(&url, "Ben").await;
    // A refinement after the fourth photo, to see a full refetch within five photos.
    ana.send(&ClientMessage::UpdateSetting { setting: SettingValue::RefineEvery(4), base_revision: 0 }).await;
    let mut ana_got = ana.read_until(|m| matches!(m, ServerMessage::Event { event: RoomEvent::SettingChanged { .. }, .. })).await;

    let set = photos(&datasets, "fountain-P11-half");
    for path in &set[..5] {
        assert_eq!(server.upload("auditorio", std::fs::read(path).expect("photo")).await, 201);
    }
    let mut ana_state = fold(&ana_got);
    ana_got.extend(ana.read_until(|m| {
        if let ServerMessage::Event { seq, event, .. } = m {
            ana_state.apply(*seq, event);
        }
        settled(&ana_state, 5) && ana_state.last_refinement.is_some()
    }).await);
    let mut ben_state = RoomSnapshot::default();
    let ben_got = ben.read_until(|m| {
        match m {
            ServerMessage::Snapshot { room, .. } => ben_state = room.clone(),
            ServerMessage::Event { seq, event, .. } => ben_state.apply(*seq, event),
            _ => {}
        }
        settled(&ben_state, 5) && ben_state.last_refinement.is_some()
    }).await;

    // Identical, gap-free, ordered streams.
    let (a, b) = (events(&ana_got), events(&ben_got));
    assert_eq!(a, b);
    assert_eq!(a.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(), (1..=a.len() as u64).collect::<Vec<_>>());
    let state = fold(&ana_got);
    assert_eq!(state, fold(&ben_got));
    assert_eq!(state.counts().registered, 5, "{:?}", state.photos);
    assert_eq!(state.cameras.len(), 5);
    assert_eq!(state.settings.refine_every.value, 4);
    // Every step was visible: started, progress with an ETA, registered with a shard, and a
    // refinement whose manifest replaced the incremental one.
    let kinds: Vec<&str> = a.iter().map(|(_, e)| kind(e)).collect();
    for wanted in ["photo_queued", "photo_started", "photo_registered", "refinement_started", "refinement_done"] {
        assert!(kinds.contains(&wanted), "no {wanted} in {kinds:?}");
    }
    let progress: Vec<(String, Option<u64>)> = ana_got
        .iter()
        .filter_map(|m| match m {
            ServerMessage::Progress { stage, eta_ms, .. } => Some((stage.clone(), *eta_ms)),
            _ => None,
        })
        .collect();
    assert!(progress.iter().any(|(stage, _)| stage == "features"), "{progress:?}");
    assert!(progress.iter().all(|(_, eta)| eta.is_some()));
    let generation_after = state.manifest.generation;
    assert_eq!(generation_after, 1, "one refinement in five photos at refine_every = 4");
    let refined_at = a.iter().position(|(_, e)| kind(e) == "refinement_done").expect("refinement");
    assert!(
        a[refined_at..].iter().any(|(_, e)| matches!(e, RoomEvent::PhotoRegistered { shard: Some(_), .. })),
        "the fifth photo adds a shard to the refined manifest"
    );

    // Shards: content-addressed, immutable, 9 bytes a point.
    let client = reqwest::Client::new();
    let mut points = 0u64;
    let mut bytes = 0u64;
    let mut wire = 0u64;
    for shard in &state.manifest.shards {
        let url = server.room_url("auditorio", &format!("/shards/{}", shard.hash)).await;
        let response = client.get(&url).send().await.expect("get shard");
        assert_eq!(response.status(), 200);
        let etag = response.headers()["etag"].to_str().expect("ascii").to_owned();
        assert_eq!(etag, format!("\"{}\"", shard.hash));
        assert!(response.headers()["cache-control"].to_str().expect("ascii").contains("immutable"));
        let body = response.bytes().await.expect("body");
        assert_eq!(sha(&body), shard.hash);
        let decoded = app::shard::decode(&body).expect("a valid shard");
        assert_eq!(decoded.len() as u32, shard.points);
        points += u64::from(shard.points);
        bytes += body.len() as u64;
        let again = client.get(&url).header("if-none-match", &etag).send().await.expect("revalidate");
        assert_eq!(again.status(), 304);
        // What a browser receives: gzip.
        let gzipped = client.get(&url).header("accept-encoding", "gzip").send().await.expect("gzip");
        assert_eq!(gzipped.headers()["content-encoding"], "gzip");
        wire += gzipped.bytes().await.expect("body").len() as u64;
    }
    assert!(points > 2000, "the model has points: {points}");
    assert_eq!(bytes, 32 * state.manifest.shards.len() as u64 + 9 * points, "9 bytes a point plus a header a shard");
    println!("shards: {points} points, {bytes} bytes raw, {wire} bytes gzip ({:.2} B/point)", wire as f64 / points as f64);
    assert!(wire <= 9 * points, "{wire} bytes on the wire for {points} points");

    // Downloads.
    let ply = client.get(server.room_url("auditorio", "/model.ply").await).send().await.expect("ply");
    assert_eq!(ply.status(), 200);
    let ply = ply.bytes().await.expect("body");
    let cloud = recon::export::read_ply(&ply).expect("valid PLY");
    assert!(cloud.len() > 2000);
    let cameras: Vec<serde_json::Value> =
        client.get(server.room_url("auditorio", "/cameras.json").await).send().await.expect("cameras").json().await.expect("json");
    assert_eq!(cameras.len(), 5);
    assert!(cameras.iter().all(|c| c["registered"] == true));
    // The keys of the datasets' ground truth, the photo's id and its file name.
    for (camera, photo) in cameras.iter().zip(&state.photos) {
        assert_eq!(camera["photo"], photo.id.as_str());
        assert_eq!(camera["image"], photo.name.as_str());
        assert!(camera["K"].is_array() && camera["R_world_to_camera"].is_array() && camera["center"].is_array(), "{camera}");
    }
    // The page shows the model's count, which is what the download holds.
    assert_eq!(Some(cloud.len() as u64), state.model_points, "model.ply and the stream agree on the points");

    // A newcomer gets the same model in its snapshot.
    let mut cleo = Member::join(&url, "Cleo").await;
    let cleo_got = cleo.read_until(|m| matches!(m, ServerMessage::Snapshot { .. })).await;
    let cleo_state = fold(&cleo_got);
    assert_eq!(cleo_state.manifest, state.manifest);
    assert_eq!(cleo_state.cameras, state.cameras);
    server.stop().await;
}

fn kind(event: &RoomEvent) -> &'static str {
    match event {
        RoomEvent::Note { .. } => "note",
        RoomEvent::PhotoQueued { .. } => "photo_queued",
        RoomEvent::PhotoStarted { .. } => "photo_started",
        RoomEvent::PhotoRegistered { .. } => "photo_registered",
        RoomEvent::PhotoPending { .. } => "photo_pending",
        RoomEvent::PhotoFailed { .. } => "photo_failed",
        RoomEvent::PhotoCancelled { .. } => "photo_cancelled",
        RoomEvent::PhotoRetried { .. } => "photo_retried",
        RoomEvent::PhotoRemoved { .. } => "photo_removed",
        RoomEvent::RefinementStarted { .. } => "refinement_started",
        RoomEvent::RefinementInterrupted { .. } => "refinement_interrupted",
        RoomEvent::RefinementDone { .. } => "refinement_done",
        RoomEvent::SettingChanged { .. } => "setting_changed",
    }
}

#[tokio::test]
async fn photos_can_be_cancelled_retried_and_removed() {
    let Some(datasets) = datasets() else { return };
    let data = tempfile::tempdir().expect("tmp");
    let mut config = common::test_config(data.path());
    // One worker, so the queue is long enough to cancel from.
    config.workers = Some(1);
    let server = TestServer::start_with(config).await;
    let url = server.ws_url("cloitre").await;
    let (mut ana, key, _, _) = join_as(&url, "Ana").await;
    let set = photos(&datasets, "Herz-Jesus-P8-half");
    let ids: Vec<String> = set[..4].iter().map(|p| sha(&std::fs::read(p).expect("photo"))).collect();
    for path in &set[..4] {
        assert_eq!(server.upload_as("cloitre", std::fs::read(path).expect("photo"), &key).await, 201);
    }
    // The last one is still queued behind three others.
    ana.send(&ClientMessage::CancelPhoto { photo: ids[3].clone() }).await;
    let mut state = RoomSnapshot::default();
    let track = |m: &ServerMessage, state: &mut RoomSnapshot| match m {
        ServerMessage::Snapshot { room, .. } => *state = room.clone(),
        ServerMessage::Event { seq, event, .. } => state.apply(*seq, event),
        _ => {}
    };
    ana.read_until(|m| {
        track(m, &mut state);
        matches!(m, ServerMessage::Event { event: RoomEvent::PhotoCancelled { .. }, .. })
    })
    .await;
    assert_eq!(state.photo(&ids[3]).map(|p| p.status), Some(PhotoState::Cancelled));
    // Commands on the wrong photo or state get clear errors.
    ana.send(&ClientMessage::CancelPhoto { photo: "0".repeat(64) }).await;
    let reply = ana.read_until(|m| matches!(m, ServerMessage::Error { .. })).await;
    assert!(matches!(reply.last(), Some(ServerMessage::Error { code: ErrorCode::NotFound, .. })));
    // Retried, it is processed after the others and joins the model.
    ana.send(&ClientMessage::RetryPhoto { photo: ids[3].clone() }).await;
    ana.read_until(|m| {
        track(m, &mut state);
        settled(&state, 4) && state.photo(&ids[3]).is_some_and(|p| p.status != PhotoState::Cancelled)
    })
    .await;
    assert_eq!(state.counts().registered, 4, "{:?}", state.photos);
    ana.send(&ClientMessage::RetryPhoto { photo: ids[0].clone() }).await;
    let reply = ana.read_until(|m| matches!(m, ServerMessage::Error { .. })).await;
    assert!(matches!(reply.last(), Some(ServerMessage::Error { code: ErrorCode::InvalidState, .. })));

    // A photo of another site cannot be registered: validation required, then removed.
    let stranger = std::fs::read(&photos(&datasets, "sceaux-castle-half")[0]).expect("photo");
    let stranger_id = sha(&stranger);
    assert_eq!(server.upload_as("cloitre", stranger.clone(), &key).await, 201);
    ana.read_until(|m| {
        track(m, &mut state);
        matches!(m, ServerMessage::Event { event: RoomEvent::PhotoPending { .. }, .. })
    })
    .await;
    assert!(state.photo(&stranger_id).and_then(|p| p.reason.clone()).is_some_and(|r| !r.is_empty()));
    ana.send(&ClientMessage::RemovePhoto { photo: stranger_id.clone() }).await;
    ana.read_until(|m| {
        track(m, &mut state);
        matches!(m, ServerMessage::Event { event: RoomEvent::PhotoRemoved { .. }, .. })
    })
    .await;
    assert!(state.photo(&stranger_id).is_none());
    assert_eq!(state.counts(), app::protocol::PhotoCounts { total: 4, registered: 4, ..Default::default() });
    // Removed means gone: the same bytes are a new photo again.
    assert_eq!(server.upload("cloitre", stranger).await, 201);
    let statuses: BTreeMap<_, _> = state.photos.iter().map(|p| (p.id.clone(), p.status)).collect();
    assert_eq!(statuses.len(), 4);
    server.stop().await;
}

/// Cancelling and removing belong to the photo's uploader and the room's owner; the server
/// refuses anyone else, whatever their page shows. The uploader is known by the secret key of
/// their browser, so it survives a reconnect; retrying is open to all.
#[tokio::test]
async fn only_the_uploader_or_the_owner_can_cancel_or_remove_a_photo() {
    let Some(datasets) = datasets() else { return };
    let data = tempfile::tempdir().expect("tmp");
    let mut config = common::test_config(data.path());
    config.workers = Some(1);
    let server = TestServer::start_with(config).await;
    let created = common::create_room(&server.addr.to_string(), "portal").await;
    let member_url = format!("ws://{}/ws/rooms/portal?token={}", server.addr, created.join_token);
    let owner_url = format!("ws://{}/ws/rooms/portal?token={}", server.addr, created.owner_token);
    let (ana, ana_key, ana_id, ana_owner) = join_as(&member_url, "Ana").await;
    let (mut ben, _, ben_id, _) = join_as(&member_url, "Ben").await;
    assert!(!ana_owner);
    assert!(ana_id.is_some() && ana_id != ben_id, "each browser has its own uploader id");
    // Four photos of Ana's, queued behind one worker, and one stranger that stays pending.
    let set = photos(&datasets, "Herz-Jesus-P8-half");
    let ids: Vec<String> = set[..3].iter().map(|p| sha(&std::fs::read(p).expect("photo"))).collect();
    for path in &set[..3] {
        let url = format!("http://{}/api/rooms/portal/photos/{}?token={}", server.addr, sha(&std::fs::read(path).expect("photo")), created.join_token);
        let put = reqwest::Client::new().put(url).header("x-vestige-session", &ana_key).body(std::fs::read(path).expect("photo"));
        assert_eq!(put.send().await.expect("put").status(), 201);
    }
    let queued = ben.read_until(|m| matches!(m, ServerMessage::Event { event: RoomEvent::PhotoQueued { photo, .. }, .. } if *photo == ids[2])).await;
    let uploader = queued.iter().find_map(|m| match m {
        ServerMessage::Event { event: RoomEvent::PhotoQueued { uploader, .. }, .. } => uploader.clone(),
        _ => None,
    });
    assert_eq!(uploader, ana_id, "the photo names its uploader's id");
    // Ben may not take Ana's photo away, in any state.
    for command in [ClientMessage::CancelPhoto { photo: ids[2].clone() }, ClientMessage::RemovePhoto { photo: ids[2].clone() }] {
        ben.send(&command).await;
        let reply = ben.read_until(|m| matches!(m, ServerMessage::Error { .. })).await;
        match reply.last() {
            Some(ServerMessage::Error { code: ErrorCode::Forbidden, message }) => assert!(message.contains("uploaded"), "{message}"),
            other => panic!("expected forbidden, got {other:?}"),
        }
    }
    // Ana, on a new connection with the same browser key, may.
    drop(ana);
    let (mut ana_again, _, again_id, _) = join_as(&member_url, "Ana").await;
    assert_eq!(again_id, ana_id, "the same browser is the same uploader after a reconnect");
    ana_again.send(&ClientMessage::CancelPhoto { photo: ids[2].clone() }).await;
    ana_again.read_until(|m| matches!(m, ServerMessage::Event { event: RoomEvent::PhotoCancelled { .. }, .. })).await;
    // Anyone may retry; only the owner or Ana may remove.
    ben.send(&ClientMessage::RetryPhoto { photo: ids[2].clone() }).await;
    ben.read_until(|m| matches!(m, ServerMessage::Event { event: RoomEvent::PhotoRetried { .. }, .. })).await;
    let (mut owner, _, _, is_owner) = join_as(&owner_url, "Olga").await;
    assert!(is_owner, "the owner token makes the connection the owner's");
    owner.send(&ClientMessage::CancelPhoto { photo: ids[2].clone() }).await;
    let got = owner.read_until(|m| matches!(m, ServerMessage::Event { event: RoomEvent::PhotoCancelled { .. }, .. } | ServerMessage::Error { .. })).await;
    match got.last() {
        Some(ServerMessage::Event { .. }) => {}
        // The worker may have taken and finished it first: then it is in the model.
        Some(ServerMessage::Error { code: ErrorCode::InvalidState, .. }) => {}
        other => panic!("the owner may cancel: {other:?}"),
    }
    server.stop().await;
}
