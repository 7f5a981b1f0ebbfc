//! Photos in: a drop zone and pickers (several files; the camera on phones), the SHA-256 id
//! computed in the browser, uploads with progress, and one card per photo of the room that
//! follows it through the queue, each processing step (with ETA) and its outcome, with cancel,
//! retry and remove.
//!
//! The server decides what a photo is (checked, stored, queued); this module only shows it:
//! cards come from the room's state, plus this tab's uploads that the room has not seen yet.

use crate::protocol::{ClientMessage, PhotoState, RoomId};
use crate::room_state::{PhotoProgress, RoomStore};
use leptos::prelude::*;

/// Uploads running at once. One: a single stream already fills a phone's uplink, photos then
/// finish one by one instead of all at the end, and they reach the room in the order chosen, so
/// the same photos always build the same model.
pub const PARALLEL_UPLOADS: usize = 1;

/// This tab's upload of one file, before the room knows the photo.
#[derive(Clone, Debug, PartialEq)]
pub enum LocalState {
    Waiting,
    Hashing,
    /// Fraction of the bytes sent.
    Uploading(f32),
    /// Stored by the server; from now on the room's state tells the story.
    Stored,
    Failed(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct LocalUpload {
    pub local_id: u64,
    pub name: String,
    /// Object URL of the file, for the thumbnail.
    pub thumbnail: Option<String>,
    pub sha: Option<String>,
    pub state: LocalState,
}

/// Lowercase hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Lowercase hex SHA-256 of `data`: by the browser's WebCrypto (native code, a few times faster
/// than wasm), or in wasm where WebCrypto is missing (plain HTTP to another machine, such as a
/// phone on the site's Wi-Fi, is not a secure context).
#[cfg(feature = "hydrate")]
pub async fn sha256_hex(data: &js_sys::Uint8Array) -> String {
    let web_crypto = async {
        let subtle = web_sys::window()?.crypto().ok()?.subtle();
        let digest = subtle.digest_with_str_and_buffer_source("SHA-256", data).ok()?;
        let digest = wasm_bindgen_futures::JsFuture::from(digest).await.ok()?;
        Some(hex(&js_sys::Uint8Array::new(&digest).to_vec()))
    };
    match web_crypto.await {
        Some(sha) => sha,
        None => {
            use sha2::Digest;
            hex(&sha2::Sha256::digest(data.to_vec()))
        }
    }
}

/// "about 3 s", "about 2 min".
pub fn eta_label(eta_ms: Option<u64>) -> Option<String> {
    let seconds = eta_ms?.div_ceil(1000);
    Some(if seconds < 90 { format!("about {} s", seconds.max(1)) } else { format!("about {} min", seconds.div_ceil(60)) })
}

pub fn stage_label(stage: &str) -> &'static str {
    match stage {
        "decode" => "Reading",
        "features" => "Finding features",
        "matching" => "Matching",
        "registration" => "Placing the camera",
        "triangulation" => "Adding points",
        "local_adjustment" => "Adjusting",
        "refinement" => "Refining the model",
        _ => "Processing",
    }
}

/// The card's `data-status`.
pub fn status_key(state: PhotoState) -> &'static str {
    match state {
        PhotoState::Queued => "queued",
        PhotoState::Processing => "processing",
        PhotoState::Registered => "registered",
        PhotoState::Pending => "pending",
        PhotoState::Failed => "failed",
        PhotoState::Cancelled => "cancelled",
    }
}

fn status_text(state: PhotoState, reason: Option<&str>, progress: Option<&PhotoProgress>, waiting_for_start: bool) -> String {
    match state {
        PhotoState::Pending if waiting_for_start => "Waiting for a second photo of the same place".into(),
        PhotoState::Queued => "Waiting for its turn".into(),
        PhotoState::Processing => match progress {
            Some(p) => match eta_label(p.eta_ms) {
                Some(eta) => format!("{} — {eta}", stage_label(&p.stage)),
                None => stage_label(&p.stage).into(),
            },
            None => "Processing".into(),
        },
        PhotoState::Registered => "In the model".into(),
        PhotoState::Pending => format!("Could not be placed yet: {}", reason.unwrap_or("no overlap")),
        PhotoState::Failed => format!("Failed: {}", reason.unwrap_or("unknown error")),
        PhotoState::Cancelled => "Cancelled".into(),
    }
}

/// Local uploads that still need a card of their own: the room does not list them yet.
pub fn unlisted(local: &[LocalUpload], room_has: impl Fn(&str) -> bool) -> Vec<&LocalUpload> {
    local.iter().filter(|u| !u.sha.as_deref().is_some_and(&room_has)).collect()
}

/// How many of this tab's uploads are in flight (for presence).
pub fn in_flight(local: &[LocalUpload]) -> u32 {
    local.iter().filter(|u| matches!(u.state, LocalState::Waiting | LocalState::Hashing | LocalState::Uploading(_))).count() as u32
}

#[component]
pub fn Uploads(store: RoomStore, room: RoomId, token: Option<String>) -> impl IntoView {
    let local = RwSignal::new(Vec::<LocalUpload>::new());
    #[cfg(feature = "hydrate")]
    let uploader = StoredValue::new_local(browser::Uploader::new(store, room.clone(), token.clone(), local));
    #[cfg(not(feature = "hydrate"))]
    let _ = (&room, &token);
    // Once the room lists an upload, the room's card tells its story: the local one goes for
    // good, so a photo removed later does not come back as "Stored".
    Effect::new(move |_| {
        let listed: Vec<String> = store.model.with(|m| m.room.photos.iter().map(|p| p.id.clone()).collect());
        let done = |u: &LocalUpload| u.state == LocalState::Stored && u.sha.as_ref().is_some_and(|sha| listed.contains(sha));
        if local.with(|l| l.iter().any(done)) {
            local.update(|l| l.retain(|u| !done(u)));
        }
    });
    // Presence shows who is uploading.
    let busy = Memo::new(move |_| local.with(|l| in_flight(l)));
    Effect::new(move |previous: Option<u32>| {
        let now = busy.get();
        if previous.is_some_and(|p| p != now) || (previous.is_none() && now > 0) {
            store.send(ClientMessage::Uploading { files: now });
        }
        now
    });
    let add_files = move |_files: Option<web_files::FileList>| {
        #[cfg(feature = "hydrate")]
        if let Some(files) = _files {
            uploader.with_value(|u| u.add(files));
        }
    };
    let on_pick = move |ev: leptos::ev::Event| {
        #[cfg(feature = "hydrate")]
        {
            use wasm_bindgen::JsCast;
            let input = ev.target().and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok());
            add_files(input.as_ref().and_then(|i| i.files()));
            if let Some(input) = input {
                // Choosing the same file again must fire `change` again.
                input.set_value("");
            }
        }
        #[cfg(not(feature = "hydrate"))]
        {
            let _ = ev;
            add_files(None);
        }
    };
    // Drops are taken anywhere on the page: a photo dropped on the viewer or a card would
    // otherwise be opened by the browser, which leaves the room.
    let dragging = RwSignal::new(false);
    #[cfg(feature = "hydrate")]
    {
        let over = window_event_listener(leptos::ev::dragover, move |ev| {
            ev.prevent_default();
            dragging.set(true);
        });
        let left = window_event_listener(leptos::ev::dragleave, move |ev| {
            // Leaving one element for another is not leaving the page.
            if ev.related_target().is_none() {
                dragging.set(false);
            }
        });
        let dropped = window_event_listener(leptos::ev::drop, move |ev| {
            ev.prevent_default();
            dragging.set(false);
            add_files(ev.data_transfer().and_then(|d| d.files()));
        });
        on_cleanup(move || {
            over.remove();
            left.remove();
            dropped.remove();
        });
    }
    let picker = NodeRef::<leptos::html::Input>::new();
    let open_picker = move |_| {
        if let Some(input) = picker.get() {
            input.click();
        }
    };
    let cards = Memo::new(move |_| {
        store.model.with(|m| {
            let mut ahead = m.room.photos.iter().filter(|p| p.status == PhotoState::Processing).count() as u32;
            m.room
                .photos
                .iter()
                .map(|p| Card {
                    ahead: (p.status == PhotoState::Queued).then(|| {
                        ahead += 1;
                        ahead - 1
                    }),
                    id: p.id.clone(),
                    name: p.name.clone(),
                    by: p.by.clone(),
                    status: p.status,
                    reason: p.reason.clone(),
                    progress: m.progress.get(&p.id).cloned(),
                    mine: m.may_take_away(p),
                    waiting_for_start: m.waiting_for_start(),
                })
                .collect::<Vec<_>>()
        })
    });
    let thumbnails = Thumbnails { room: room.clone(), token: token.clone() };
    let pending_local = Memo::new(move |_| {
        let listed = store.model.with(|m| m.room.photos.iter().map(|p| p.id.clone()).collect::<Vec<_>>());
        local.with(|l| unlisted(l, |sha| listed.iter().any(|id| id == sha)).into_iter().cloned().collect::<Vec<_>>())
    });
    let thumbnail_of = move |sha: &str| local.with(|l| l.iter().find(|u| u.sha.as_deref() == Some(sha)).and_then(|u| u.thumbnail.clone()));
    view! {
        <section class="panel uploads" aria-labelledby="uploads-title">
            <h2 id="uploads-title">"Photos"</h2>
            <div class="drop-overlay" class:shown=move || dragging.get() aria-hidden="true">
                <p>"Drop the photos anywhere to add them to the room"</p>
            </div>
            <div class="dropzone" data-testid="dropzone" class:dragging=move || dragging.get()>
                <p>"Drop photos anywhere on the page, or"</p>
                <button type="button" on:click=open_picker>"Choose photos"</button>
                <input
                    node_ref=picker
                    class="visually-hidden"
                    type="file"
                    multiple
                    accept="image/jpeg,image/png"
                    aria-label="Choose photos to upload"
                    // The "Choose photos" button opens it: one tab stop, not two.
                    tabindex="-1"
                    on:change=on_pick
                />
                <label class="camera-button">
                    "Take a photo"
                    <input class="visually-hidden" type="file" accept="image/jpeg,image/png" capture="environment" on:change=on_pick/>
                </label>
            </div>
            <ul class="cards" aria-label="Photos of this room">
                // The room's photos in upload order, then this tab's uploads the room does not list
                // yet: those are the newest, so a card never jumps when the room takes it over.
                <For each=move || cards.get() key=Card::key let:card>
                    <PhotoCard thumbnail=thumbnail_of(&card.id).unwrap_or_else(|| thumbnails.url(&card.id)) card store/>
                </For>
                <For each=move || pending_local.get() key=|u| (u.local_id, format!("{:?}", u.state)) let:upload>
                    <LocalCard upload local/>
                </For>
            </ul>
        </section>
    }
}

/// Brings the 3D view on screen (on a phone it is above the cards).
fn scroll_to_viewer() {
    #[cfg(feature = "hydrate")]
    if let Some(canvas) = web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.query_selector("[data-testid=viewer]").ok().flatten())
    {
        canvas.scroll_into_view();
    }
}

/// A stand-in so the component's closures name one type in both builds.
mod web_files {
    #[cfg(feature = "hydrate")]
    pub use web_sys::FileList;
    #[cfg(not(feature = "hydrate"))]
    pub struct FileList;
}

#[component]
fn LocalCard(upload: LocalUpload, local: RwSignal<Vec<LocalUpload>>) -> impl IntoView {
    let id = upload.local_id;
    let (status, text, fraction) = match &upload.state {
        LocalState::Waiting => ("uploading", "Waiting to upload".to_owned(), 0.0),
        LocalState::Hashing => ("uploading", "Preparing".to_owned(), 0.0),
        LocalState::Uploading(f) => ("uploading", format!("Uploading {:.0} %", f * 100.0), *f),
        LocalState::Stored => ("queued", "Stored".to_owned(), 1.0),
        LocalState::Failed(message) => ("upload-failed", format!("Upload failed: {message}"), 0.0),
    };
    let failed = matches!(upload.state, LocalState::Failed(_));
    let dismiss = move |_| local.update(|l| l.retain(|u| u.local_id != id));
    view! {
        <li class="card" data-testid="photo-card" data-status=status data-photo=format!("local-{id}")>
            {upload.thumbnail.clone().map(|src| view! { <img class="thumb" src=src alt=""/> })}
            <div class="card-body">
                <p class="card-name">{upload.name.clone()}</p>
                <p class="card-status">{text}</p>
                <Show when=move || !failed>
                    <div class="bar" role="progressbar" aria-label="Upload progress" aria-valuemin="0" aria-valuemax="100" aria-valuenow=(fraction * 100.0).round() as u32>
                        <span style=format!("width: {:.0}%", fraction * 100.0)></span>
                    </div>
                </Show>
            </div>
            <Show when=move || failed>
                <button type="button" on:click=dismiss aria-label="Dismiss this failed upload">"Dismiss"</button>
            </Show>
        </li>
    }
}

/// What one card shows of a room photo.
#[derive(Clone, Debug, PartialEq)]
struct Card {
    id: String,
    name: String,
    by: String,
    status: PhotoState,
    reason: Option<String>,
    progress: Option<PhotoProgress>,
    /// This page may cancel or remove it (its uploader, or the room's owner).
    mine: bool,
    /// For a queued photo: how many photos the worker takes before it.
    ahead: Option<u32>,
    waiting_for_start: bool,
}

/// What a card is rebuilt on: id, state, progress (stage, whole percent, ETA), permissions,
/// the first photo's wait, and the place in the queue.
type CardKey = (String, PhotoState, Option<(String, u32, Option<u64>)>, bool, bool, Option<u32>);

impl Card {
    /// Cards are rebuilt when anything they show changes; progress in whole percent.
    fn key(&self) -> CardKey {
        let progress = self.progress.as_ref().map(|p| (p.stage.clone(), (p.fraction * 100.0) as u32, p.eta_ms));
        (self.id.clone(), self.status, progress, self.mine, self.waiting_for_start, self.ahead)
    }
}

/// The server's small copy of each photo, made once and content-addressed like shards.
#[derive(Clone)]
struct Thumbnails {
    room: RoomId,
    token: Option<String>,
}

impl Thumbnails {
    fn url(&self, photo: &str) -> String {
        let query = self.token.as_deref().map(|t| format!("?token={t}")).unwrap_or_default();
        format!("/api/rooms/{}/photos/{photo}/thumbnail{query}", self.room)
    }
}

#[component]
fn PhotoCard(card: Card, thumbnail: String, store: RoomStore) -> impl IntoView {
    let Card { id, name, by, status, reason, progress, mine, waiting_for_start, ahead } = card;
    let text = match ahead {
        Some(0) => "Next in line".to_owned(),
        Some(n) => format!("Waiting: {n} photo{} before it", if n == 1 { "" } else { "s" }),
        None => status_text(status, reason.as_deref(), progress.as_ref(), waiting_for_start),
    };
    let fraction = progress.as_ref().map(|p| p.fraction).unwrap_or(0.0);
    let send = move |message: ClientMessage| store.send(message);
    let (cancel_id, retry_id, remove_id) = (id.clone(), id.clone(), id.clone());
    let can_cancel = mine && status.awaits_processing();
    let can_retry = matches!(status, PhotoState::Failed | PhotoState::Cancelled | PhotoState::Pending);
    let can_remove = mine && can_retry;
    // Removing deletes the photo for everyone: it takes a second, deliberate click.
    let confirming = RwSignal::new(false);
    let status_class = if status == PhotoState::Pending && waiting_for_start { "waiting" } else { status_key(status) };
    let view_request = use_context::<crate::viewer::ViewRequest>();
    let view_id = id.clone();
    view! {
        <li class="card" data-testid="photo-card" data-status=status_key(status) data-photo=id.clone() data-look=status_class>
            <img class="thumb" src=thumbnail alt="" loading="lazy" width="48" height="48"/>
            <div class="card-body">
                <p class="card-name">{name.clone()}</p>
                <p class="card-by">{format!("by {by}")}</p>
                <p class="card-status">{text}</p>
                {(status == PhotoState::Processing).then(|| view! {
                    <div class="bar" role="progressbar" aria-label="Processing progress" aria-valuemin="0" aria-valuemax="100" aria-valuenow=(fraction * 100.0).round() as u32>
                        <span style=format!("width: {:.0}%", fraction * 100.0)></span>
                    </div>
                })}
            </div>
            <div class="card-actions">
                {view_request.filter(|_| status == PhotoState::Registered).map(|request| view! {
                    <button type="button" class="quiet" aria-label=format!("View the model from {name}") on:click=move |_| {
                        request.view_from(&view_id);
                        scroll_to_viewer();
                    }>"View"</button>
                })}
                {can_cancel.then(|| view! {
                    <button type="button" class="quiet" aria-label=format!("Cancel {name}") on:click=move |_| send(ClientMessage::CancelPhoto { photo: cancel_id.clone() })>"Cancel"</button>
                })}
                {(can_retry && !(status == PhotoState::Pending && waiting_for_start)).then(|| view! {
                    <button type="button" class="quiet" aria-label=format!("Retry {name}") on:click=move |_| send(ClientMessage::RetryPhoto { photo: retry_id.clone() })>"Retry"</button>
                })}
                {can_remove.then(|| {
                    let (label, confirm_label) = (format!("Remove {name}"), format!("Yes, remove {name} for everyone"));
                    view! {
                        <Show
                            when=move || confirming.get()
                            fallback=move || view! {
                                <button type="button" class="quiet" aria-label=label.clone() on:click=move |_| confirming.set(true)>"Remove"</button>
                            }
                        >
                            <span class="confirm" role="group" aria-label="Confirm removal">
                                <button type="button" class="danger" aria-label=confirm_label.clone() on:click={
                                    let remove_id = remove_id.clone();
                                    move |_| send(ClientMessage::RemovePhoto { photo: remove_id.clone() })
                                }>"Remove for everyone"</button>
                                <button type="button" class="quiet" on:click=move |_| confirming.set(false)>"Keep"</button>
                            </span>
                        </Show>
                    }
                })}
            </div>
        </li>
    }
}

#[cfg(feature = "hydrate")]
mod browser {
    use super::{LocalState, LocalUpload, PARALLEL_UPLOADS, sha256_hex};
    use crate::protocol::RoomId;
    use crate::room_state::{RoomStore, ToastKind};
    use leptos::prelude::*;
    use std::cell::RefCell;
    use std::collections::VecDeque;
    use std::rc::Rc;
    use wasm_bindgen::JsCast;
    use wasm_bindgen::prelude::Closure;
    use wasm_bindgen_futures::JsFuture;

    /// Why one upload did not go through; the message is shown on the card and in a toast.
    #[derive(Debug)]
    enum UploadError {
        Read,
        Network,
        Refused(String),
    }

    impl UploadError {
        fn message(&self) -> String {
            match self {
                Self::Read => "the file could not be read".into(),
                Self::Network => "the server could not be reached; try again".into(),
                Self::Refused(message) => message.clone(),
            }
        }
    }

    /// Files waiting, uploads running, the last local id given.
    type Queue = (VecDeque<(u64, web_sys::File)>, usize, u64);

    #[derive(Clone)]
    pub struct Uploader {
        store: RoomStore,
        room: RoomId,
        token: Option<String>,
        local: RwSignal<Vec<LocalUpload>>,
        queue: Rc<RefCell<Queue>>,
    }

    impl Uploader {
        pub fn new(store: RoomStore, room: RoomId, token: Option<String>, local: RwSignal<Vec<LocalUpload>>) -> Self {
            Self { store, room, token, local, queue: Rc::default() }
        }

        pub fn add(&self, files: web_sys::FileList) {
            let start = {
                let mut q = self.queue.borrow_mut();
                for i in 0..files.length() {
                    let Some(file) = files.get(i) else { continue };
                    q.2 += 1;
                    let local_id = q.2;
                    let thumbnail = web_sys::Url::create_object_url_with_blob(&file).ok();
                    self.local.update(|l| {
                        l.push(LocalUpload { local_id, name: file.name(), thumbnail, sha: None, state: LocalState::Waiting })
                    });
                    q.0.push_back((local_id, file));
                }
                let start = PARALLEL_UPLOADS.saturating_sub(q.1).min(q.0.len());
                q.1 += start;
                start
            };
            for _ in 0..start {
                let me = self.clone();
                leptos::task::spawn_local(async move { me.work().await });
            }
        }

        async fn work(self) {
            loop {
                let next = self.queue.borrow_mut().0.pop_front();
                let Some((local_id, file)) = next else { break };
                let set = |state: LocalState| {
                    self.local.try_update(|l| {
                        if let Some(u) = l.iter_mut().find(|u| u.local_id == local_id) {
                            u.state = state;
                        }
                    });
                };
                match self.upload(local_id, &file).await {
                    Ok(()) => set(LocalState::Stored),
                    Err(err) => {
                        let message = err.message();
                        self.store.toast(ToastKind::Error, format!("{}: {message}", file.name()), None);
                        set(LocalState::Failed(message));
                    }
                }
            }
            self.queue.borrow_mut().1 -= 1;
        }

        async fn upload(&self, local_id: u64, file: &web_sys::File) -> Result<(), UploadError> {
            let local = self.local;
            let set = move |state: LocalState, sha: Option<String>| {
                local.try_update(|l| {
                    if let Some(u) = l.iter_mut().find(|u| u.local_id == local_id) {
                        u.state = state;
                        if sha.is_some() {
                            u.sha = sha;
                        }
                    }
                });
            };
            set(LocalState::Hashing, None);
            let buffer = JsFuture::from(file.array_buffer()).await.map_err(|_| UploadError::Read)?;
            let sha = sha256_hex(&js_sys::Uint8Array::new(&buffer)).await;
            set(LocalState::Uploading(0.0), Some(sha.clone()));
            let query = self.token.as_deref().map(|t| format!("?token={t}")).unwrap_or_default();
            let url = format!("/api/rooms/{}/photos/{sha}{query}", self.room);
            let key = self.store.model.with_untracked(|m| m.upload_key.clone());
            let (status, body) = put(&url, file, key.as_deref(), move |f| set(LocalState::Uploading(f), None)).await?;
            match status {
                200 | 201 => Ok(()),
                _ => {
                    let message = serde_json::from_str::<serde_json::Value>(&body)
                        .ok()
                        .and_then(|v| v["message"].as_str().map(str::to_owned))
                        .unwrap_or_else(|| format!("the server answered {status}"));
                    Err(UploadError::Refused(message))
                }
            }
        }
    }

    /// PUTs the file with XMLHttpRequest, the one browser API that reports upload progress.
    async fn put(url: &str, file: &web_sys::File, upload_key: Option<&str>, progress: impl Fn(f32) + 'static) -> Result<(u16, String), UploadError> {
        let xhr = web_sys::XmlHttpRequest::new().map_err(|_| UploadError::Network)?;
        xhr.open_with_async("PUT", url, true).map_err(|_| UploadError::Network)?;
        // Header values are bytes, not text: RFC 8187 carries any file name intact.
        let name = String::from(js_sys::encode_uri_component(&file.name()));
        let _ = xhr.set_request_header("x-photo-name", &format!("UTF-8''{name}"));
        if let Some(key) = upload_key {
            let _ = xhr.set_request_header("x-vestige-session", key);
        }
        let on_progress = Closure::<dyn Fn(web_sys::ProgressEvent)>::new(move |ev: web_sys::ProgressEvent| {
            if ev.length_computable() && ev.total() > 0.0 {
                progress((ev.loaded() / ev.total()) as f32);
            }
        });
        if let Ok(upload) = xhr.upload() {
            upload.set_onprogress(Some(on_progress.as_ref().unchecked_ref()));
        }
        let (done, finished) = futures::channel::oneshot::channel::<bool>();
        let done = Rc::new(RefCell::new(Some(done)));
        let finish = |ok: bool| {
            let done = done.clone();
            Closure::<dyn Fn()>::new(move || {
                if let Some(done) = done.borrow_mut().take() {
                    let _ = done.send(ok);
                }
            })
        };
        let (on_load, on_error) = (finish(true), finish(false));
        xhr.set_onload(Some(on_load.as_ref().unchecked_ref()));
        xhr.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        xhr.set_onabort(Some(on_error.as_ref().unchecked_ref()));
        xhr.send_with_opt_blob(Some(file)).map_err(|_| UploadError::Network)?;
        let loaded = finished.await.unwrap_or(false);
        // The closures must live until the request is over.
        drop((on_progress, on_load, on_error));
        if !loaded {
            return Err(UploadError::Network);
        }
        let status = xhr.status().map_err(|_| UploadError::Network)?;
        Ok((status, xhr.response_text().ok().flatten().unwrap_or_default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upload(id: u64, sha: Option<&str>, state: LocalState) -> LocalUpload {
        LocalUpload { local_id: id, name: format!("{id}.jpg"), thumbnail: None, sha: sha.map(str::to_owned), state }
    }

    #[test]
    fn labels_read_well() {
        assert_eq!(hex(&[0, 15, 255]), "000fff");
        assert_eq!(eta_label(Some(2_100)).as_deref(), Some("about 3 s"));
        assert_eq!(eta_label(Some(10)).as_deref(), Some("about 1 s"));
        assert_eq!(eta_label(Some(200_000)).as_deref(), Some("about 4 min"));
        assert_eq!(eta_label(None), None);
        assert_eq!(stage_label("features"), "Finding features");
        let p = PhotoProgress { stage: "matching".into(), fraction: 0.5, eta_ms: Some(1500) };
        assert_eq!(status_text(PhotoState::Processing, None, Some(&p), false), "Matching — about 2 s");
        assert_eq!(status_text(PhotoState::Pending, Some("no overlap with the model"), None, false), "Could not be placed yet: no overlap with the model");
        assert_eq!(status_text(PhotoState::Pending, Some("waiting"), None, true), "Waiting for a second photo of the same place");
    }

    #[test]
    fn local_cards_give_way_to_the_room_and_count_in_flight() {
        let local = vec![
            upload(1, Some("aa"), LocalState::Stored),
            upload(2, Some("bb"), LocalState::Uploading(0.5)),
            upload(3, None, LocalState::Hashing),
            upload(4, Some("cc"), LocalState::Failed("no".into())),
        ];
        let shown: Vec<u64> = unlisted(&local, |sha| sha == "aa").iter().map(|u| u.local_id).collect();
        assert_eq!(shown, vec![2, 3, 4]);
        assert_eq!(in_flight(&local), 2);
    }
}
