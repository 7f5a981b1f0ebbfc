//! The browser entry point: hydrates the server-rendered Vestige pages with the `app` crate.
//!
//! It holds no logic of its own; cargo-leptos compiles it to WASM and the page's hydration
//! script calls [`hydrate`].
// Leptos views are nested types; the room page is deeper than the default limit allows.
#![recursion_limit = "256"]

#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(app::App);
}
