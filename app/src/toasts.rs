//! Toasts: short notices stacked in a corner, at most five, each dismissed by itself after a
//! visible countdown or by its close button, with an optional action (Retry, View). The region is
//! a polite live region, so screen readers announce each new toast.

use crate::protocol::ClientMessage;
use crate::room_state::{RoomStore, Toast, ToastAction, ToastKind};
use leptos::prelude::*;

/// How long a toast stays, in milliseconds; errors stay longer.
pub fn lifetime_ms(kind: ToastKind) -> u32 {
    match kind {
        ToastKind::Error => 10_000,
        ToastKind::Warning => 8_000,
        ToastKind::Success | ToastKind::Info => 5_000,
    }
}

fn kind_class(kind: ToastKind) -> &'static str {
    match kind {
        ToastKind::Success => "success",
        ToastKind::Error => "error",
        ToastKind::Warning => "warning",
        ToastKind::Info => "info",
    }
}

/// The toast stack. `on_view` is what the View action does (frame the model).
#[component]
pub fn Toasts(store: RoomStore, on_view: Callback<()>) -> impl IntoView {
    let toasts = Memo::new(move |_| store.model.with(|m| m.toasts.clone()));
    view! {
        <section class="toasts" aria-label="Notifications" aria-live="polite" aria-relevant="additions">
            <For each=move || toasts.get() key=|t| t.id let:toast>
                <ToastItem toast store on_view/>
            </For>
        </section>
    }
}

#[component]
fn ToastItem(toast: Toast, store: RoomStore, on_view: Callback<()>) -> impl IntoView {
    let id = toast.id;
    let life = lifetime_ms(toast.kind);
    let dismiss = move || store.model.update(|m| m.dismiss(id));
    // Timers exist only in the browser; the server never renders toasts anyway.
    #[cfg(feature = "hydrate")]
    if let Ok(timer) = set_timeout_with_handle(
        move || store.model.update(|m| m.dismiss(id)),
        std::time::Duration::from_millis(u64::from(life)),
    ) {
        on_cleanup(move || timer.clear());
    }
    let action = toast.action.clone().map(|(label, action)| {
        let run = move |_| {
            match &action {
                ToastAction::RetryPhoto(photo) => store.send(ClientMessage::RetryPhoto { photo: photo.clone() }),
                ToastAction::View => on_view.run(()),
            }
            dismiss();
        };
        view! { <button type="button" class="toast-action" on:click=run>{label}</button> }
    });
    let role = if toast.kind == ToastKind::Error { "alert" } else { "status" };
    view! {
        <div class=format!("toast {}", kind_class(toast.kind)) role=role data-testid="toast" data-kind=kind_class(toast.kind)>
            <p class="toast-text">{toast.text.clone()}</p>
            {action}
            <button type="button" class="toast-close" aria-label="Dismiss notification" on:click=move |_| dismiss()>"×"</button>
            // The countdown is a CSS animation of this bar over the toast's lifetime.
            <span class="toast-timer" aria-hidden="true" style=format!("animation-duration: {life}ms")></span>
        </div>
    }
}
