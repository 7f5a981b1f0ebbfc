//! The two pages: the lobby, where a user picks a room, and the room itself.

use crate::connection::ConnectionState;
use crate::protocol::RoomId;
use leptos::prelude::*;
use leptos_router::hooks::{use_navigate, use_params_map, use_query_map};

#[component]
pub fn Lobby() -> impl IntoView {
    let (name, set_name) = signal(String::new());
    let (link, set_link) = signal(String::new());
    let (error, set_error) = signal(None::<String>);
    let (busy, set_busy) = signal(false);
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
        </section>
    }
}

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

#[component]
pub fn RoomPage() -> impl IntoView {
    let params = use_params_map();
    let query = use_query_map();
    let raw_room = move || params.read().get("room").unwrap_or_default();
    let room = Memo::new(move |_| RoomId::parse(&raw_room()));
    let state = RwSignal::new(ConnectionState::Connecting);

    // Effects run only in the browser, so the server renders "connecting" and the WASM client
    // opens the socket after hydration.
    // Nothing tracked is read inside, so this runs exactly once per page.
    Effect::new(move |_| {
        let token = query.with_untracked(|q| q.get("token"));
        match room.get_untracked() {
            #[cfg(feature = "hydrate")]
            Ok(room) => {
                let token = crate::api::remember_token(&room, token);
                crate::connection::connect(room, token, state)
            }
            #[cfg(not(feature = "hydrate"))]
            Ok(_) => {
                let _ = token;
            }
            Err(err) => state.set(ConnectionState::Offline { reason: err.to_string() }),
        }
    });

    view! {
        <section class="room">
            <header class="room-header">
                <a class="home" href="/">"Vestige"</a>
                <h1>{move || match room.get() {
                    Ok(room) => room.to_string(),
                    Err(_) => "Invalid room".to_owned(),
                }}</h1>
                <ConnectionIndicator state=state.read_only()/>
            </header>
        </section>
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
    fn invitation_links_are_checked() {
        assert_eq!(room_link("http://h:3000/rooms/plaza?token=ab12").as_deref(), Ok("/rooms/plaza?token=ab12"));
        assert_eq!(room_link("/rooms/plaza").as_deref(), Ok("/rooms/plaza"));
        assert!(room_link("plaza").is_err());
        assert!(room_link("/rooms/../x?token=a").is_err());
        assert!(room_link("/rooms/plaza?token=<script>").is_err());
    }
}
