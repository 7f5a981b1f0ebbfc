//! The shared settings panel: every member sees the current values, who set them, and changes
//! live. An edit is sent with the revision it was based on; when someone else changed the field
//! first, the panel shows both values and lets the author keep theirs, use the other, or (for
//! numbers) average them. Nothing is dropped without the author deciding.

use crate::protocol::{ClientMessage, KnownIntrinsics, RoomSettings, SettingValue};
use crate::room_state::{PendingConflict, RoomStore};
use leptos::prelude::*;

/// A field's value as the panel's input shows it.
pub fn display(value: &SettingValue) -> String {
    match value {
        SettingValue::RefineEvery(n) | SettingValue::MaxImageSide(n) | SettingValue::MaxFeatures(n) => n.to_string(),
        SettingValue::Intrinsics(None) => String::new(),
        SettingValue::Intrinsics(Some(k)) => format!("{} {} {} {}", k.fx, k.fy, k.cx, k.cy),
    }
}

/// Parses what the user typed into a value of the same field as `like`.
pub fn parse(like: &SettingValue, text: &str) -> Result<SettingValue, String> {
    let number = || text.trim().parse::<u32>().map_err(|_| "enter a whole number".to_owned());
    let value = match like {
        SettingValue::RefineEvery(_) => SettingValue::RefineEvery(number()?),
        SettingValue::MaxImageSide(_) => SettingValue::MaxImageSide(number()?),
        SettingValue::MaxFeatures(_) => SettingValue::MaxFeatures(number()?),
        SettingValue::Intrinsics(_) => {
            let parts: Vec<&str> = text.split_whitespace().collect();
            if parts.is_empty() {
                SettingValue::Intrinsics(None)
            } else {
                let numbers: Result<Vec<f64>, _> = parts.iter().map(|p| p.parse::<f64>()).collect();
                match numbers.as_deref() {
                    Ok([fx, fy, cx, cy]) => SettingValue::Intrinsics(Some(KnownIntrinsics { fx: *fx, fy: *fy, cx: *cx, cy: *cy })),
                    _ => return Err("four numbers: fx fy cx cy (or empty to estimate)".into()),
                }
            }
        }
    };
    value.validate()?;
    Ok(value)
}

fn label(field: &SettingValue) -> &'static str {
    match field {
        SettingValue::RefineEvery(_) => "Refine the whole model every (photos)",
        SettingValue::MaxImageSide(_) => "Largest image side used (pixels)",
        SettingValue::MaxFeatures(_) => "Points found per photo",
        SettingValue::Intrinsics(_) => "Camera calibration, if known: focal x, focal y, centre x, centre y (pixels)",
    }
}

const FIELDS: [SettingValue; 4] = [
    SettingValue::RefineEvery(0),
    SettingValue::MaxImageSide(0),
    SettingValue::MaxFeatures(0),
    SettingValue::Intrinsics(None),
];

#[component]
pub fn SettingsPanel(store: RoomStore) -> impl IntoView {
    let settings = Memo::new(move |_| store.model.with(|m| m.room.settings.clone()));
    let conflicts = Memo::new(move |_| store.model.with(|m| m.conflicts.clone()));
    // Most rooms never need these: they stay folded, and open by themselves when a conflict
    // needs an answer.
    let open = RwSignal::new(false);
    Effect::new(move |_| {
        if conflicts.with(|c| !c.is_empty()) {
            open.set(true);
        }
    });
    view! {
        <section class="panel settings" aria-labelledby="settings-title">
            <details prop:open=move || open.get() on:toggle=move |ev| {
                #[cfg(feature = "hydrate")]
                if let Some(details) = ev.target().and_then(|t| wasm_bindgen::JsCast::dyn_into::<web_sys::HtmlDetailsElement>(t).ok()) {
                    open.set(details.open());
                }
                #[cfg(not(feature = "hydrate"))]
                let _ = ev;
            }>
                <summary><h2 id="settings-title">"Advanced settings"</h2><span class="summary-note">" shared by everyone in the room"</span></summary>
                {FIELDS.iter().map(|field| view! { <SettingRow field=field.clone() settings store/> }).collect_view()}
                <For each=move || conflicts.get() key=|c| (c.yours.field(), c.revision) let:conflict>
                    <ConflictCard conflict store/>
                </For>
            </details>
        </section>
    }
}

#[component]
fn SettingRow(field: SettingValue, settings: Memo<RoomSettings>, store: RoomStore) -> impl IntoView {
    let id = format!("setting-{}", field.field());
    let current = {
        let field = field.clone();
        Memo::new(move |_| settings.with(|s| s.current(&field)))
    };
    let text = RwSignal::new(String::new());
    let editing = RwSignal::new(None::<u64>);
    let error = RwSignal::new(None::<String>);
    // Follow remote changes unless the user is typing.
    Effect::new(move |_| {
        let (value, _, _) = current.get();
        if editing.get_untracked().is_none() {
            text.set(display(&value));
        }
    });
    let save = {
        let field = field.clone();
        move |ev: leptos::ev::SubmitEvent| {
            ev.prevent_default();
            match parse(&field, &text.get_untracked()) {
                Ok(value) => {
                    let base_revision = editing.get_untracked().unwrap_or_else(|| current.get_untracked().1);
                    store.send(ClientMessage::UpdateSetting { setting: value, base_revision });
                    editing.set(None);
                    error.set(None);
                }
                Err(message) => error.set(Some(message)),
            }
        }
    };
    let who = move || {
        let (_, revision, by) = current.get();
        match by {
            Some(by) if revision > 0 => format!("set by {by}"),
            _ => "default".to_owned(),
        }
    };
    view! {
        <form class="setting" on:submit=save data-testid=format!("setting-{}", field.field())>
            <label for=id.clone()>{label(&field)}</label>
            <input
                id=id
                inputmode="decimal"
                prop:value=move || text.get()
                on:input=move |ev| {
                    if editing.get_untracked().is_none() {
                        // The revision the user saw when they started typing.
                        editing.set(Some(current.get_untracked().1));
                    }
                    text.set(event_target_value(&ev));
                }
            />
            <button type="submit" class="quiet">"Save"</button>
            <span class="setting-by">{who}</span>
            <span class="error" role="alert">{move || error.get()}</span>
        </form>
    }
}

#[component]
fn ConflictCard(conflict: PendingConflict, store: RoomStore) -> impl IntoView {
    let PendingConflict { yours, theirs, theirs_by, revision } = conflict;
    let field = yours.field();
    let resolve = move |choice: Option<SettingValue>| {
        store.model.update(|m| m.conflicts.retain(|c| c.yours.field() != field));
        if let Some(setting) = choice {
            store.send(ClientMessage::UpdateSetting { setting, base_revision: revision });
        }
    };
    let average = yours.average(&theirs);
    let who = theirs_by.unwrap_or_else(|| "someone".to_owned());
    let (mine, other) = (yours.clone(), theirs.clone());
    view! {
        <div class="conflict" role="alert" data-testid="setting-conflict">
            <p>
                {format!("{who} changed {} to {} while you were editing it (yours: {}).",
                    field.replace('_', " "), display(&theirs), display(&yours))}
            </p>
            <button type="button" on:click=move |_| resolve(Some(mine.clone()))>"Keep mine"</button>
            <button type="button" on:click=move |_| { let _ = &other; resolve(None) }>"Use theirs"</button>
            {average.map(|avg| view! {
                <button type="button" on:click=move |_| resolve(Some(avg.clone()))>{format!("Average ({})", display(&avg))}</button>
            })}
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_values_are_parsed_and_checked() {
        assert_eq!(parse(&SettingValue::RefineEvery(0), " 5 "), Ok(SettingValue::RefineEvery(5)));
        assert!(parse(&SettingValue::RefineEvery(0), "five").is_err());
        assert!(parse(&SettingValue::MaxImageSide(0), "10").is_err(), "out of bounds");
        assert_eq!(parse(&SettingValue::Intrinsics(None), ""), Ok(SettingValue::Intrinsics(None)));
        let k = parse(&SettingValue::Intrinsics(None), "2759.5 2764.2 1520.7 1006.8").expect("four numbers");
        assert_eq!(display(&k), "2759.5 2764.2 1520.7 1006.8");
        assert!(parse(&SettingValue::Intrinsics(None), "1 2 3").is_err());
    }
}
