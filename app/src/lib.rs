//! Vestige's user interface and wire protocol.
//!
//! This crate is compiled twice: with `ssr` into the server, which renders the pages, and with
//! `hydrate` into the WASM client, which takes those pages over in the browser. It holds the
//! Leptos components, [`protocol`], the typed messages both ends exchange, and [`viewer`], the
//! room's 3D view.
//!
//! It is not the server (no sockets, storage or reconstruction here). Anything that needs a
//! browser API (the WebSocket, WebGL2, fetching shards) lives behind the `hydrate` feature; the
//! logic around it is plain Rust, tested natively.
// Leptos views are nested types; the room page is deeper than the default limit allows.
#![recursion_limit = "256"]

#[cfg(feature = "hydrate")]
pub mod api;
pub mod avatars;
pub mod connection;
pub mod pages;
pub mod photo_uploads;
pub mod protocol;
pub mod room_state;
pub mod settings_panel;
pub mod shard;
pub mod status;
pub mod toasts;
pub mod viewer;

use leptos::prelude::*;
use leptos_meta::{MetaTags, Stylesheet, Title, provide_meta_context};
use leptos_router::{
    components::{Route, Router, Routes},
    path,
};

/// The page's Content-Security-Policy: scripts only from this server or carrying this
/// response's nonce (the hydration script), WebAssembly allowed, and no framing by other sites.
pub fn content_security_policy(nonce: &str) -> String {
    format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; \
         img-src 'self' data: blob:; connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; \
         frame-ancestors 'none'"
    )
}

/// The HTML document the server renders around [`App`].
pub fn shell(options: LeptosOptions) -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let (Some(nonce), Some(response)) = (leptos::nonce::use_nonce(), use_context::<leptos_axum::ResponseOptions>())
        && let Ok(value) = http::HeaderValue::from_str(&content_security_policy(&nonce))
    {
        response.insert_header(http::header::CONTENT_SECURITY_POLICY, value);
    }
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <link rel="icon" type="image/svg+xml" href="/favicon.svg"/>
                <AutoReload options=options.clone()/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    view! {
        <Stylesheet id="leptos" href="/pkg/vestige.css"/>
        <Title text="Vestige"/>
        <Router>
            <main>
                <Routes fallback=pages::NotFound>
                    <Route path=path!("") view=pages::Lobby/>
                    <Route path=path!("/rooms/:room") view=pages::RoomPage/>
                </Routes>
            </main>
        </Router>
    }
}
