//! Fetching point shards into the scene.
//!
//! Shards are content-addressed (`GET /api/rooms/{room}/shards/{sha256}`), so a shard the scene
//! already holds is never fetched again, and one that failed is simply asked for again after a
//! short, jittered backoff, for as long as the scene still wants it. A failure never removes
//! anything from the screen. The URL and backoff rules are plain functions tested natively; the
//! fetching itself ([`ShardLoader`]) exists only in the browser.
//!
//! It does not decide which shards matter: [`SceneData::wanted`](super::SceneData::wanted) does.

use crate::protocol::RoomId;
use std::time::Duration;

/// Why a shard could not be loaded. Every variant is retried while the shard is still wanted.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ShardFetchError {
    /// A manifest named something that is not a SHA-256; it is never requested.
    #[error("not a shard hash: {0:?}")]
    BadHash(String),
    #[error("network error: {0}")]
    Network(String),
    #[error("the server answered {0}")]
    Status(u16),
    #[error("unreadable shard: {0}")]
    Decode(#[from] crate::shard::ShardError),
    /// Bytes damaged on the way (a proxy, a broken cache): fetched again, never drawn.
    #[error("the shard's bytes do not match its name (SHA-256 {got})")]
    Corrupt { got: String },
}

/// Lowercase hex SHA-256, the only shape of shard name the server hands out.
pub fn is_shard_hash(hash: &str) -> bool {
    hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The shard's URL on the server that served the page, with `?token=` for private rooms.
pub fn shard_url(room: &RoomId, hash: &str, token: Option<&str>) -> Result<String, ShardFetchError> {
    if !is_shard_hash(hash) {
        return Err(ShardFetchError::BadHash(hash.to_owned()));
    }
    // Room ids and hashes are URL-safe by construction; only the token needs encoding.
    let mut url = format!("/api/rooms/{room}/shards/{hash}");
    if let Some(token) = token.filter(|t| !t.is_empty()) {
        url.push_str("?token=");
        url.push_str(&percent_encode(token));
    }
    Ok(url)
}

fn percent_encode(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Wait before retry `attempt` (0-based) given a uniform sample in `[0, 1)`: full jitter over
/// 0.25 s · 2^attempt, capped at 8 s. Shorter than the socket's backoff: a shard is one small
/// request, and the model on screen stays incomplete while it waits.
pub fn retry_delay(attempt: u32, unit_sample: f64) -> Duration {
    crate::connection::full_jitter(0.25, 8.0, 0.05, attempt, unit_sample)
}

#[cfg(feature = "hydrate")]
pub use browser::ShardLoader;

#[cfg(feature = "hydrate")]
mod browser {
    use super::{ShardFetchError, retry_delay, shard_url};
    use crate::protocol::{Manifest, RoomId};
    use crate::viewer::{SceneData, now_ms};
    use leptos::prelude::*;
    use std::cell::RefCell;
    use std::collections::{HashSet, VecDeque};
    use std::rc::Rc;
    use std::sync::Arc;

    /// Parallel fetches. Browsers allow about six connections per host over HTTP/1.1; leaving
    /// some free keeps the WebSocket's and uploads' requests from queueing behind shards.
    const WORKERS: usize = 3;

    #[derive(Default)]
    struct Queue {
        pending: VecDeque<String>,
        /// Queued or being fetched, so a second `sync` does not fetch the same shard twice.
        known: HashSet<String>,
        workers: usize,
    }

    /// Fetches the shards a [`SceneData`] wants and inserts them as they arrive.
    ///
    /// Cheap to clone (all clones share one queue). Browser-only: it holds `Rc`s, so keep it in
    /// a `StoredValue::new_local` or move it into closures.
    #[derive(Clone)]
    pub struct ShardLoader {
        room: RoomId,
        token: Option<String>,
        scene: RwSignal<SceneData>,
        queue: Rc<RefCell<Queue>>,
    }

    impl ShardLoader {
        /// A loader for `room` (with the room's access token, for private rooms) feeding `scene`.
        pub fn new(room: RoomId, token: Option<String>, scene: RwSignal<SceneData>) -> Self {
            Self { room, token, scene, queue: Rc::default() }
        }

        /// Hands `manifest` to the scene (see [`SceneData::set_manifest`]) and fetches what it
        /// lacks.
        pub fn load(&self, manifest: &Manifest) {
            self.scene.update(|s| s.set_manifest(manifest, None));
            self.sync();
        }

        /// Fetches every shard the scene wants that is not already queued. Call it after
        /// feeding the scene a snapshot or event, or once through [`ShardLoader::watch`].
        pub fn sync(&self) {
            let wanted = self.scene.with_untracked(|s| s.wanted());
            let start = {
                let mut q = self.queue.borrow_mut();
                for shard in wanted {
                    if q.known.insert(shard.hash.clone()) {
                        q.pending.push_back(shard.hash);
                    }
                }
                let start = WORKERS.saturating_sub(q.workers).min(q.pending.len());
                q.workers += start;
                start
            };
            for _ in 0..start {
                let loader = self.clone();
                leptos::task::spawn_local(async move { loader.work().await });
            }
        }

        /// Calls [`ShardLoader::sync`] whenever the scene's data changes, so the page only has
        /// to feed the scene. Must be called inside a component (it creates an effect).
        pub fn watch(&self) {
            let loader = self.clone();
            let scene = self.scene;
            Effect::new(move |_| {
                scene.with(|s| s.revision());
                loader.sync();
            });
        }

        async fn work(self) {
            loop {
                let next = self.queue.borrow_mut().pending.pop_front();
                let Some(hash) = next else { break };
                self.fetch_until_done(&hash).await;
                self.queue.borrow_mut().known.remove(&hash);
            }
            self.queue.borrow_mut().workers -= 1;
        }

        async fn fetch_until_done(&self, hash: &str) {
            let mut attempt = 0u32;
            // After damaged bytes, past the HTTP cache: shards are cached as immutable, so a
            // damaged copy there would otherwise come back on every retry.
            let mut reload = false;
            // `try_with_untracked`: the page (and its signals) may be gone while we wait.
            while self.scene.try_with_untracked(|s| s.is_wanted(hash)).unwrap_or(false) {
                match self.fetch(hash, reload).await {
                    Ok(points) => {
                        let points = Arc::new(points);
                        self.scene.try_update(|s| s.insert_shard(hash, points, now_ms()));
                        return;
                    }
                    Err(ShardFetchError::BadHash(_)) => {
                        leptos::logging::warn!("shard {hash:?} skipped: not a SHA-256");
                        return;
                    }
                    Err(err) => {
                        reload = matches!(err, ShardFetchError::Corrupt { .. });
                        let delay = retry_delay(attempt, js_sys::Math::random());
                        leptos::logging::warn!("shard {hash} failed ({err}); retrying in {delay:?}");
                        attempt = attempt.saturating_add(1);
                        gloo_timers::future::sleep(delay).await;
                    }
                }
            }
        }

        async fn fetch(&self, hash: &str, reload: bool) -> Result<Vec<crate::shard::ShardPoint>, ShardFetchError> {
            let url = shard_url(&self.room, hash, self.token.as_deref())?;
            let cache = if reload { web_sys::RequestCache::Reload } else { web_sys::RequestCache::Default };
            let response = gloo_net::http::Request::get(&url)
                .cache(cache)
                .send()
                .await
                .map_err(|e| ShardFetchError::Network(e.to_string()))?;
            if !response.ok() {
                return Err(ShardFetchError::Status(response.status()));
            }
            let bytes = response.binary().await.map_err(|e| ShardFetchError::Network(e.to_string()))?;
            // Shards are named by their SHA-256: check it, so damaged bytes are never drawn.
            let got = crate::photo_uploads::sha256_hex(&js_sys::Uint8Array::from(bytes.as_slice())).await;
            if got != hash {
                return Err(ShardFetchError::Corrupt { got });
            }
            Ok(crate::shard::decode(&bytes)?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn urls_name_the_room_and_shard_and_encode_the_token() {
        let room = RoomId::parse("castle").expect("room");
        assert_eq!(shard_url(&room, HASH, None), Ok(format!("/api/rooms/castle/shards/{HASH}")));
        assert_eq!(shard_url(&room, HASH, Some("")), Ok(format!("/api/rooms/castle/shards/{HASH}")));
        assert_eq!(
            shard_url(&room, HASH, Some("a b&c=d/é~")),
            Ok(format!("/api/rooms/castle/shards/{HASH}?token=a%20b%26c%3Dd%2F%C3%A9~"))
        );
    }

    #[test]
    fn only_sha256_names_are_requested() {
        let room = RoomId::parse("castle").expect("room");
        for bad in ["", "../../etc/passwd", &HASH[1..], &HASH.to_uppercase(), &format!("{}g", &HASH[1..])] {
            assert!(matches!(shard_url(&room, bad, None), Err(ShardFetchError::BadHash(_))), "{bad}");
        }
    }

    #[test]
    fn retries_back_off_quickly_with_jitter_and_a_cap() {
        assert_eq!(retry_delay(0, 1.0), Duration::from_millis(250));
        assert_eq!(retry_delay(2, 1.0), Duration::from_secs(1));
        assert_eq!(retry_delay(30, 1.0), Duration::from_secs(8));
        assert_eq!(retry_delay(3, 0.0), Duration::from_millis(50));
        assert_eq!(retry_delay(1, f64::NAN), Duration::from_millis(250));
    }
}
