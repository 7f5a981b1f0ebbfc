//! The two pages: the lobby, where a user picks a room, and the room itself, which puts the
//! viewer, uploads, presence, status, settings and toasts around one `RoomStore`.

use crate::avatars::Avatars;
use crate::connection::ConnectionState;
use crate::protocol::{RoomEvent, RoomId};
use crate::room_state::RoomStore;
use crate::settings_panel::SettingsPanel;
use crate::status::{Downloads, RoomStatus};
use crate::toasts::Toasts;
use crate::photo_uploads::Uploads;
use crate::viewer::{SceneData, Viewer};
use leptos::prelude::*;
use leptos_router::hooks::{use_navigate, use_params_map, use_query_map};

#[component]
pub fn Lobby() -> impl IntoView {
    let (name, set_name) = signal(String::new());
    let (link, set_link) = signal(String::new());
    let (error, set_error) = signal(None::<String>);
    let (busy, set_busy) = signal(false);
    let me = RwSignal::new(String::new());
    let colour = RwSignal::new(String::new());
    let recent = RwSignal::new(Vec::<(String, String)>::new());
    // Local storage exists only in the browser: fill the form after hydration.
    Effect::new(move |_| {
        #[cfg(feature = "hydrate")]
        {
            let identity = crate::api::identity();
            me.set(identity.name);
            colour.set(identity.colour);
            recent.set(crate::api::recent_rooms());
        }
    });
    let remember_me = move || {
        #[cfg(feature = "hydrate")]
        crate::api::save_identity(me.get_untracked().trim(), &colour.get_untracked());
    };
    let navigate = use_navigate();
    #[cfg(feature = "hydrate")]
    let navigate_created = navigate.clone();
    let create = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let name = name.get_untracked().trim().to_owned();
        if name.is_empty() {
            set_error.set(Some("Give the room a name, for example the site's.".into()));
            return;
        }
        set_busy.set(true);
        #[cfg(feature = "hydrate")]
        {
            let navigate = navigate_created.clone();
            leptos::task::spawn_local(async move {
                match crate::api::create_room(&name).await {
                    Ok(link) => navigate(&link, Default::default()),
                    Err(message) => set_error.set(Some(message)),
                }
                set_busy.set(false);
            });
        }
    };
    let join = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        match room_link(&link.get_untracked()) {
            Ok(path) => navigate(&path, Default::default()),
            Err(message) => set_error.set(Some(message)),
        }
    };
    view! {
        <section class="lobby">
            <h1>"Vestige"</h1>
            <p class="tagline">"Photograph a heritage site together and watch its 3D model grow."</p>
            <fieldset class="identity">
                <legend>"You"</legend>
                <label for="my-name">"Your name"</label>
                <input
                    id="my-name"
                    autocomplete="nickname"
                    maxlength="40"
                    prop:value=move || me.get()
                    on:change=move |ev| {
                        me.set(event_target_value(&ev));
                        remember_me();
                    }
                />
                <div class="colours" role="radiogroup" aria-label="Your colour">
                    {COLOURS.iter().map(|c| {
                        let c = (*c).to_owned();
                        let value = c.clone();
                        let (style, label) = (format!("background-color: {c}"), format!("colour {c}"));
                        view! {
                            <label class="colour" style=style>
                                <input
                                    type="radio"
                                    name="colour"
                                    value=c.clone()
                                    aria-label=label
                                    prop:checked=move || colour.get() == value
                                    on:change=move |_| {
                                        colour.set(c.clone());
                                        remember_me();
                                    }
                                />
                            </label>
                        }
                    }).collect_view()}
                </div>
            </fieldset>
            <form class="join" on:submit=create>
                <label for="room-name">"Room"</label>
                <input
                    id="room-name"
                    name="room"
                    placeholder="Auditorio"
                    autocomplete="off"
                    prop:value=name
                    on:input=move |ev| {
                        set_error.set(None);
                        set_name.set(event_target_value(&ev));
                    }
                />
                <button type="submit" disabled=busy>"Create room"</button>
            </form>
            <form class="join" on:submit=join>
                <label for="room-link">"Invitation link"</label>
                <input
                    id="room-link"
                    name="link"
                    placeholder="https://…/rooms/auditorio?token=…"
                    autocomplete="off"
                    prop:value=link
                    on:input=move |ev| {
                        set_error.set(None);
                        set_link.set(event_target_value(&ev));
                    }
                />
                <button type="submit">"Join"</button>
            </form>
            <p class="error" role="alert">{move || error.get()}</p>
            <Show when=move || recent.with(|r| !r.is_empty())>
                <nav class="recent" aria-labelledby="recent-title">
                    <h2 id="recent-title">"Your rooms"</h2>
                    <ul>
                        <For each=move || recent.get() key=|(id, _)| id.clone() let:room>
                            <li><a href=room.1.clone()>{room.0.clone()}</a></li>
                        </For>
                    </ul>
                </nav>
            </Show>
        </section>
    }
}

/// Colours offered for avatars; white initials are readable on each.
pub const COLOURS: [&str; 8] = ["#c0392b", "#2e86c1", "#1e8449", "#8e44ad", "#d35400", "#117a65", "#7e5109", "#34495e"];

/// The room page path in an invitation link (full URL or path), checked before navigating.
pub fn room_link(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    let path = raw.find("/rooms/").map(|at| &raw[at..]).ok_or("Paste the whole invitation link: it contains /rooms/.")?;
    let rest = &path["/rooms/".len()..];
    let (room, query) = rest.split_once('?').unwrap_or((rest, ""));
    let room = RoomId::parse(room).map_err(|err| format!("This link's room name is not valid: {err}"))?;
    let token = query.split('&').find_map(|kv| kv.strip_prefix("token=")).filter(|t| !t.is_empty());
    Ok(match token {
        Some(token) if token.bytes().all(|b| b.is_ascii_alphanumeric()) => format!("/rooms/{room}?token={token}"),
        Some(_) => return Err("This link's token is damaged; ask for the link again.".into()),
        None => format!("/rooms/{room}"),
    })
}

/// What the room page needs once the browser has found the room's token (from the link or
/// local storage).
#[derive(Clone)]
struct Entered {
    room: RoomId,
    token: Option<String>,
}

#[component]
pub fn RoomPage() -> impl IntoView {
    let params = use_params_map();
    let query = use_query_map();
    let raw_room = move || params.read().get("room").unwrap_or_default();
    let room = Memo::new(move |_| RoomId::parse(&raw_room()));
    let state = RwSignal::new(ConnectionState::Connecting);
    let store = RoomStore::new();
    // Set in the browser only: the server renders the header and "connecting", the client
    // then fills in the room (the token may live in local storage, which the server cannot see).
    let entered = RwSignal::new(None::<Entered>);

    // Nothing tracked is read inside, so this runs exactly once per page.
    Effect::new(move |_| {
        let token = query.with_untracked(|q| q.get("token"));
        match room.get_untracked() {
            #[cfg(feature = "hydrate")]
            Ok(room) => {
                let token = crate::api::remember_token(&room, token);
                crate::api::remember_room(&room, token.as_deref());
                let mut identity = crate::api::identity();
                if identity.name.is_empty() {
                    identity.name = format!("Guest {}", &identity.user[identity.user.len().saturating_sub(4)..]);
                }
                entered.set(Some(Entered { room: room.clone(), token: token.clone() }));
                // The owner token also admits, and lets this browser take anyone's photo away.
                let socket_token = crate::api::owner_token(&room).or(token);
                crate::connection::connect(room, socket_token, identity, state, store);
            }
            #[cfg(not(feature = "hydrate"))]
            Ok(_) => {
                let _ = (token, entered);
            }
            Err(err) => state.set(ConnectionState::Offline { reason: err.to_string() }),
        }
    });

    let refused = move || state.with(|s| matches!(s, ConnectionState::Refused { .. }));
    let title = move || {
        store.model.with(|m| m.room_name.clone()).unwrap_or_else(|| match room.get() {
            Ok(room) => room.to_string(),
            Err(_) => "Invalid room".to_owned(),
        })
    };
    view! {
        <section class="room">
            <header class="room-header">
                <a class="home" href="/">"Vestige"</a>
                <h1 data-testid="room-title" title=title>{title}</h1>
                <Show when=move || !refused()>
                    <Avatars store/>
                    {move || entered.get().map(|entered| view! { <Invite entered state=state.read_only()/> })}
                </Show>
                <ConnectionIndicator state=state.read_only()/>
            </header>
            <Show
                when=refused
                fallback=move || entered.get().map(|entered| view! { <RoomBody entered store/> })
            >
                <NotInvited state=state.read_only()/>
            </Show>
        </section>
    }
}

/// The link that lets someone else in, shown and copied from the room page itself.
#[component]
fn Invite(entered: Entered, state: ReadSignal<ConnectionState>) -> impl IntoView {
    let open = RwSignal::new(false);
    let copied = RwSignal::new(false);
    let Entered { room, token } = entered;
    let link = Memo::new(move |_| {
        let origin = {
            #[cfg(feature = "hydrate")]
            {
                web_sys::window().and_then(|w| w.location().origin().ok()).unwrap_or_default()
            }
            #[cfg(not(feature = "hydrate"))]
            {
                String::new()
            }
        };
        invitation_link(&origin, &room, token.as_deref())
    });
    let copy = move |_| {
        #[cfg(feature = "hydrate")]
        if let Some(window) = web_sys::window() {
            let navigator = window.navigator();
            // Outside a secure context (plain HTTP to another machine) there is no clipboard
            // API: the link is then selected for copying by hand.
            let has_clipboard =
                js_sys::Reflect::get(&navigator, &"clipboard".into()).is_ok_and(|c| !c.is_undefined() && !c.is_null());
            if has_clipboard {
                let _ = navigator.clipboard().write_text(&link.get_untracked());
                copied.set(true);
            } else if let Some(input) = window
                .document()
                .and_then(|d| d.get_element_by_id("invite-link"))
                .and_then(|e| wasm_bindgen::JsCast::dyn_into::<web_sys::HtmlInputElement>(e).ok())
            {
                input.select();
            }
        }
    };
    let connected = move || state.with(|s| matches!(s, ConnectionState::Connected { .. }));
    view! {
        <div class="invite">
            <button
                type="button"
                class="invite-button"
                aria-expanded=move || open.get().to_string()
                aria-controls="invite-panel"
                disabled=move || !connected()
                on:click=move |_| { open.update(|o| *o = !*o); copied.set(false); }
            >"Invite"</button>
            <Show when=move || open.get()>
                <div id="invite-panel" class="invite-panel" role="dialog" aria-label="Invite someone">
                    <label for="invite-link">"Anyone with this link can join and add photos"</label>
                    <input id="invite-link" data-testid="invite-link" readonly prop:value=move || link.get()
                        on:focus=move |ev| {
                            #[cfg(feature = "hydrate")]
                            if let Some(input) = ev.target().and_then(|t| wasm_bindgen::JsCast::dyn_into::<web_sys::HtmlInputElement>(t).ok()) {
                                input.select();
                            }
                            #[cfg(not(feature = "hydrate"))]
                            let _ = ev;
                        }
                    />
                    <button type="button" on:click=copy>{move || if copied.get() { "Copied" } else { "Copy link" }}</button>
                </div>
            </Show>
        </div>
    }
}

/// The full invitation URL: the room page with its join token (none for a public room).
pub fn invitation_link(origin: &str, room: &RoomId, token: Option<&str>) -> String {
    match token {
        Some(token) => format!("{origin}/rooms/{room}?token={token}"),
        None => format!("{origin}/rooms/{room}"),
    }
}

/// What a page without a valid invitation shows instead of a room it cannot use.
#[component]
fn NotInvited(state: ReadSignal<ConnectionState>) -> impl IntoView {
    let reason = move || state.with(|s| match s {
        ConnectionState::Refused { reason } => reason.clone(),
        _ => String::new(),
    });
    view! {
        <section class="not-invited" data-testid="not-invited" aria-labelledby="not-invited-title">
            <h2 id="not-invited-title">"Ask for an invitation"</h2>
            <p>"This room is private, or it does not exist. Only someone already in it can let you in: ask them to press "<strong>"Invite"</strong>" on the room page and send you the link."</p>
            <p class="reason">{reason}</p>
            <a href="/">"Back to the lobby"</a>
        </section>
    }
}

#[component]
fn RoomBody(entered: Entered, store: RoomStore) -> impl IntoView {
    let Entered { room, token } = entered;
    let scene = RwSignal::new(SceneData::new());
    // Cards ask the viewer to look through their photo.
    provide_context(crate::viewer::ViewRequest::new());
    // The viewer's scene follows the room's manifest and cameras; its own logic keeps the old
    // model on screen until a refinement's new one has fully arrived.
    let manifest = Memo::new(move |_| store.model.with(|m| (m.room.manifest.clone(), m.room.cameras.clone())));
    Effect::new(move |_| {
        let (manifest, cameras) = manifest.get();
        scene.update(|s| s.set_manifest(&manifest, Some(cameras)));
    });
    let latest = Memo::new(move |_| store.model.with(|m| m.latest_photo.clone()));
    Effect::new(move |_| {
        let Some(photo) = latest.get() else { return };
        // Replaying the registration moves the viewer's highlight to that photo's points.
        let event = store.model.with_untracked(|m| {
            let camera = m.room.cameras.iter().find(|c| c.photo == photo).cloned()?;
            Some(RoomEvent::PhotoRegistered { photo: photo.clone(), camera, shard: m.room.manifest.shards.last().cloned(), model_points: None })
        });
        if let Some(event) = event {
            scene.update(|s| s.apply_event(&event, crate::viewer::now_ms()));
        }
    });
    #[cfg(feature = "hydrate")]
    crate::viewer::loader::ShardLoader::new(room.clone(), token.clone(), scene).watch();
    // "View" on a toast brings the model into sight and gives it the keyboard.
    let show_model = Callback::new(move |()| {
        #[cfg(feature = "hydrate")]
        if let Some(canvas) = web_sys::window()
            .and_then(|w| w.document())
            .and_then(|d| d.query_selector("[data-testid=viewer]").ok().flatten())
        {
            canvas.scroll_into_view();
            if let Ok(canvas) = wasm_bindgen::JsCast::dyn_into::<web_sys::HtmlElement>(canvas) {
                let _ = canvas.focus();
            }
        }
    });
    view! {
        <div class="room-body">
            <div class="stage">
                <Show when=move || store.model.with(|m| m.position.is_some() && m.room.photos.is_empty())>
                    <div class="first-step" data-testid="first-step">
                        <h2>"Start the model"</h2>
                        <p>"Add two or more photos of the same part of the site, taken a few steps apart. Drop them anywhere on this page, or use "<strong>"Choose photos"</strong>"."</p>
                        <p>"Everyone in the room sees the model grow; press "<strong>"Invite"</strong>" to bring someone in."</p>
                    </div>
                </Show>
                <Viewer scene/>
                <RoomStatus store/>
                <Downloads room=room.clone() token=token.clone()/>
            </div>
            <aside class="side">
                <Uploads store room=room.clone() token=token.clone()/>
                <SettingsPanel store/>
            </aside>
            <Toasts store on_view=show_model/>
        </div>
    }
}

#[component]
fn ConnectionIndicator(state: ReadSignal<ConnectionState>) -> impl IntoView {
    view! {
        <p
            class="connection"
            data-testid="connection-state"
            data-state=move || state.with(|s| s.key())
            role="status"
            aria-live="polite"
        >
            <span class="dot" aria-hidden="true"></span>
            {move || state.with(|s| s.label())}
        </p>
    }
}

#[component]
pub fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    {
        if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
            response.set_status(http::StatusCode::NOT_FOUND);
        }
    }
    view! {
        <section class="not-found">
            <h1>"Page not found"</h1>
            <a href="/">"Back to the lobby"</a>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::room_link;

    #[test]
    fn the_invitation_carries_the_join_token_only_for_private_rooms() {
        let room = crate::protocol::RoomId::parse("plaza").expect("id");
        assert_eq!(super::invitation_link("http://h", &room, Some("ab")), "http://h/rooms/plaza?token=ab");
        assert_eq!(super::invitation_link("http://h", &room, None), "http://h/rooms/plaza");
    }

    #[test]
    fn invitation_links_are_checked() {
        assert_eq!(room_link("http://h:3000/rooms/plaza?token=ab12").as_deref(), Ok("/rooms/plaza?token=ab12"));
        assert_eq!(room_link("/rooms/plaza").as_deref(), Ok("/rooms/plaza"));
        assert!(room_link("plaza").is_err());
        assert!(room_link("/rooms/../x?token=a").is_err());
        assert!(room_link("/rooms/plaza?token=<script>").is_err());
    }
}
