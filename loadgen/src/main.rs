//! Load generator for a running Vestige server. It measures what the rooms issue asks for:
//! fan-out latency of small events to N clients in one room, server memory per idle
//! connection, and bytes on the wire per added point. It prints its figures.
//!
//! It is a client only: start the server yourself (scripts/bench-load.sh does) and pass its
//! address, and its pid for the memory figure.

use app::protocol::{ClientMessage, PROTOCOL_VERSION, RoomSnapshot, ServerMessage};
use clap::{Parser, Subcommand};
use futures_util::{SinkExt, StreamExt};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser)]
#[command(about = "Load generator for a running Vestige server")]
struct Args {
    /// The server's address, host:port.
    #[arg(long, default_value = "127.0.0.1:3000")]
    addr: String,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// N clients in one room; one of them sends small events; latency from send to receipt at
    /// every client.
    Fanout {
        #[arg(long, default_value_t = 1000)]
        clients: usize,
        #[arg(long, default_value_t = 100)]
        messages: usize,
        /// Events per second sent.
        #[arg(long, default_value_t = 10.0)]
        rate: f64,
    },
    /// N connections that join a room and stay silent; server RSS growth per connection.
    Idle {
        #[arg(long, default_value_t = 5000)]
        clients: usize,
        /// The server's pid, to read its resident memory from /proc.
        #[arg(long)]
        server_pid: u32,
    },
    /// Uploads photos and counts every byte a member receives (WebSocket frames and shards,
    /// gzip as a browser asks) per point of the final model.
    Points {
        /// A folder of photos.
        #[arg(long)]
        photos: PathBuf,
        #[arg(long, default_value_t = 10)]
        count: usize,
    },
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = Args::parse();
    match args.mode {
        Mode::Fanout { clients, messages, rate } => fanout(&args.addr, clients, messages, rate).await,
        Mode::Idle { clients, server_pid } => idle(&args.addr, clients, server_pid).await,
        Mode::Points { photos, count } => points(&args.addr, &photos, count).await,
    }
}

async fn create_room(addr: &str, name: &str) -> Result<(String, String), String> {
    let response = reqwest::Client::new()
        .post(format!("http://{addr}/api/rooms"))
        .json(&serde_json::json!({ "name": name }))
        .send()
        .await
        .map_err(|e| format!("cannot reach the server at {addr}: {e}"))?;
    let body: serde_json::Value = response.json().await.map_err(|e| e.to_string())?;
    let id = body["id"].as_str().ok_or(format!("room not created: {body}"))?.to_owned();
    let token = body["join_token"].as_str().ok_or("no token")?.to_owned();
    Ok((id, token))
}

/// Connects and says hello; returns once the welcome arrived.
async fn join(addr: &str, room: &str, token: &str, name: &str) -> Result<Socket, String> {
    let url = format!("ws://{addr}/ws/rooms/{room}?token={token}");
    let (mut socket, _) = tokio_tungstenite::connect_async(&url).await.map_err(|e| format!("connect: {e}"))?;
    let hello = ClientMessage::Hello {
        version: PROTOCOL_VERSION,
        name: Some(name.to_owned()),
        resume: None,
        user: Some(name.to_owned()),
        colour: None,
        key: None,
    };
    socket.send(Message::text(hello.to_json())).await.map_err(|e| e.to_string())?;
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) if text.contains("\"welcome\"") => return Ok(socket),
            Some(Ok(_)) => continue,
            other => return Err(format!("no welcome: {other:?}")),
        }
    }
}

/// Opens `n` members `concurrency` at a time.
async fn join_many(addr: &str, room: &str, token: &str, n: usize) -> Result<Vec<Socket>, String> {
    let mut sockets = Vec::with_capacity(n);
    let mut pending = futures_util::stream::iter((0..n).map(|i| {
        let (addr, room, token) = (addr.to_owned(), room.to_owned(), token.to_owned());
        async move { join(&addr, &room, &token, &format!("load-{i}")).await }
    }))
    .buffer_unordered(100);
    while let Some(socket) = pending.next().await {
        sockets.push(socket?);
    }
    Ok(sockets)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

async fn fanout(addr: &str, clients: usize, messages: usize, rate: f64) -> Result<(), String> {
    let (room, token) = create_room(addr, "fanout").await?;
    let joined = Instant::now();
    let sockets = join_many(addr, &room, &token, clients).await?;
    println!("fanout: {clients} clients joined in {:.1} s", joined.elapsed().as_secs_f64());
    let start = Arc::new(Instant::now());
    // Each receiver records, for every note, receipt time minus the send time carried inside.
    let mut receivers = Vec::new();
    for mut socket in sockets {
        let start = start.clone();
        receivers.push(tokio::spawn(async move {
            let mut latencies: Vec<(usize, f64)> = Vec::with_capacity(messages);
            while latencies.len() < messages {
                let Ok(Some(Ok(frame))) = tokio::time::timeout(Duration::from_secs(30), socket.next()).await else { break };
                let Message::Text(text) = frame else { continue };
                // A substring scan, not a JSON parse: the generator shares the server's two
                // cores, and its own work should not show up as fan-out latency.
                let received = start.elapsed().as_secs_f64() * 1000.0;
                if let Some((index, sent)) = text
                    .split_once("\"text\":\"n=")
                    .and_then(|(_, rest)| rest.split('"').next())
                    .and_then(|v| v.split_once(" t="))
                    .and_then(|(n, t)| Some((n.parse::<usize>().ok()?, t.parse::<f64>().ok()?)))
                {
                    latencies.push((index, received - sent));
                }
            }
            // The socket goes back too: closing a thousand connections while the last event is
            // still being delivered to others would be measured as that event's latency.
            (latencies, socket)
        }));
    }
    let mut sender = join(addr, &room, &token, "sender").await?;
    let gap = Duration::from_secs_f64(1.0 / rate.max(0.1));
    for index in 0..messages {
        let sent = start.elapsed().as_secs_f64() * 1000.0;
        let note = ClientMessage::Note { text: format!("n={index} t={sent:.3}") };
        sender.send(Message::text(note.to_json())).await.map_err(|e| e.to_string())?;
        tokio::time::sleep(gap).await;
    }
    let mut all = Vec::new();
    let mut short = 0;
    // The slowest delivery of each event: a tail from a few slow events (a stall on the server)
    // looks different from a tail spread over all of them (fan-out too slow).
    let mut worst_of_event = vec![0.0f64; messages];
    let mut open = Vec::with_capacity(receivers.len());
    for receiver in receivers {
        let (got, socket) = receiver.await.map_err(|e| e.to_string())?;
        open.push(socket);
        if got.len() < messages {
            short += 1;
        }
        for (index, latency) in got {
            if let Some(worst) = worst_of_event.get_mut(index) {
                *worst = worst.max(latency);
            }
            all.push(latency);
        }
    }
    all.sort_by(f64::total_cmp);
    println!(
        "fanout: {} deliveries ({clients} clients x {messages} events at {rate}/s), {short} clients missed some",
        all.len()
    );
    println!(
        "fanout latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
        percentile(&all, 50.0),
        percentile(&all, 90.0),
        percentile(&all, 99.0),
        all.last().copied().unwrap_or(f64::NAN)
    );
    let mut slowest: Vec<(usize, f64)> = worst_of_event.into_iter().enumerate().collect();
    slowest.sort_by(|a, b| b.1.total_cmp(&a.1));
    let listed: Vec<String> = slowest.iter().take(5).map(|(i, ms)| format!("#{i} {ms:.0} ms")).collect();
    println!("fanout: slowest events (last delivery): {}", listed.join(", "));
    Ok(())
}

fn rss_kib(pid: u32) -> Result<u64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| format!("no process {pid}: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or("no VmRSS".into())
}

async fn idle(addr: &str, clients: usize, pid: u32) -> Result<(), String> {
    let (room, token) = create_room(addr, "idle").await?;
    // One member first, so the room's stream is loaded and not counted per connection.
    let first = join(addr, &room, &token, "first").await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(pid)?;
    let started = Instant::now();
    let sockets = join_many(addr, &room, &token, clients).await?;
    // Idle like an open tab: it sends nothing but reads what the room sends (presence, status).
    let readers: Vec<_> = sockets
        .into_iter()
        .map(|mut socket| tokio::spawn(async move { while let Some(Ok(_)) = socket.next().await {} }))
        .collect();
    // Let the server settle (presence diffs delivered, buffers drained).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = rss_kib(pid)?;
    println!("idle: {clients} connections opened in {:.1} s", started.elapsed().as_secs_f64());
    println!(
        "idle: server RSS {before} KiB -> {after} KiB, {:.1} KiB per idle connection",
        (after.saturating_sub(before)) as f64 / clients as f64
    );
    for reader in readers {
        reader.abort();
    }
    drop(first);
    Ok(())
}

async fn points(addr: &str, folder: &std::path::Path, count: usize) -> Result<(), String> {
    let (room, token) = create_room(addr, "points").await?;
    let mut member = join(addr, &room, &token, "watcher").await?;
    let mut paths: Vec<PathBuf> = std::fs::read_dir(folder)
        .map_err(|e| format!("{}: {e}", folder.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    paths.sort();
    paths.truncate(count);
    let client = reqwest::Client::new();
    for path in &paths {
        let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
        let id: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
        let url = format!("http://{addr}/api/rooms/{room}/photos/{id}?token={token}");
        let status = client.put(url).body(bytes).send().await.map_err(|e| e.to_string())?.status();
        if !status.is_success() {
            return Err(format!("upload of {} refused: {status}", path.display()));
        }
    }
    // Everything a member receives while the photos are processed.
    let mut ws_bytes = 0u64;
    let mut state = RoomSnapshot::default();
    let mut fetched = std::collections::HashSet::new();
    let mut shard_bytes = 0u64;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(60), member.next()).await.map_err(|_| "no progress for 60 s")?;
        let Some(Ok(Message::Text(text))) = frame else { continue };
        ws_bytes += text.len() as u64;
        match serde_json::from_str::<ServerMessage>(&text) {
            Ok(ServerMessage::Snapshot { room, .. }) => state = room,
            Ok(ServerMessage::Event { seq, event, .. }) => state.apply(seq, &event),
            _ => {}
        }
        // A browser fetches every shard of the manifest it does not hold yet.
        for shard in &state.manifest.shards {
            if fetched.insert(shard.hash.clone()) {
                let url = format!("http://{addr}/api/rooms/{room}/shards/{}?token={token}", shard.hash);
                let response =
                    client.get(url).header("accept-encoding", "gzip").send().await.map_err(|e| e.to_string())?;
                shard_bytes += response.bytes().await.map_err(|e| e.to_string())?.len() as u64;
            }
        }
        let settled = state.photos.len() == paths.len() && state.photos.iter().all(|p| !p.status.awaits_processing());
        if settled || Instant::now() > deadline {
            break;
        }
    }
    let points = state.manifest.points().max(1);
    let counts = state.counts();
    println!(
        "points: {} photos, {} registered, {} points in the final manifest (generation {})",
        counts.total, counts.registered, points, state.manifest.generation
    );
    println!(
        "points: shards {shard_bytes} B ({:.2} B/point), WebSocket {ws_bytes} B, total {:.2} B/point on the wire",
        shard_bytes as f64 / points as f64,
        (shard_bytes + ws_bytes) as f64 / points as f64
    );
    Ok(())
}
