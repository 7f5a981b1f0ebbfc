//! The two pages: the lobby, where a user picks a room, and the room itself.

use crate::connection::ConnectionState;
use crate::protocol::RoomId;
use leptos::prelude::*;
use leptos_router::hooks::{use_navigate, use_params_map};

#[component]
pub fn Lobby() -> impl IntoView {
    let (name, set_name) = signal(String::new());
    let (error, set_error) = signal(None::<String>);
    let navigate = use_navigate();
    let join = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        match RoomId::parse(name.get_untracked().trim()) {
            Ok(room) => navigate(&format!("/rooms/{room}"), Default::default()),
            Err(err) => set_error.set(Some(err.to_string())),
        }
    };
    view! {
        <section class="lobby">
            <h1>"Vestige"</h1>
            <p class="tagline">"Photograph a heritage site together and watch its 3D model grow."</p>
            <form class="join" on:submit=join>
                <label for="room-name">"Room"</label>
                <input
                    id="room-name"
                    name="room"
                    placeholder="auditorio"
                    autocomplete="off"
                    prop:value=name
                    on:input=move |ev| {
                        set_error.set(None);
                        set_name.set(event_target_value(&ev));
                    }
                />
                <button type="submit">"Join"</button>
            </form>
            <p class="error" role="alert">{move || error.get()}</p>
        </section>
    }
}

#[component]
pub fn RoomPage() -> impl IntoView {
    let params = use_params_map();
    let raw_room = move || params.read().get("room").unwrap_or_default();
    let room = Memo::new(move |_| RoomId::parse(&raw_room()));
    let state = RwSignal::new(ConnectionState::Connecting);

    // Effects run only in the browser, so the server renders "connecting" and the WASM client
    // opens the socket after hydration.
    // Nothing tracked is read inside, so this runs exactly once per page.
    Effect::new(move |_| match room.get_untracked() {
        #[cfg(feature = "hydrate")]
        Ok(room) => crate::connection::connect(room, state),
        #[cfg(not(feature = "hydrate"))]
        Ok(_) => {}
        Err(err) => state.set(ConnectionState::Offline { reason: err.to_string() }),
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
