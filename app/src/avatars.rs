//! Who is here: an avatar stack with initials on each person's colour, the name on hover and
//! focus, a marker on those uploading, and "+N" beyond the first few.

use crate::protocol::Member;
use crate::room_state::RoomStore;
use leptos::prelude::*;

/// Avatars shown before the rest are counted.
pub const SHOWN: usize = 5;

/// Up to two initials: "Ana María" gives "AM", "ben" gives "B".
pub fn initials(name: &str) -> String {
    let letters: String = name.split_whitespace().filter_map(|w| w.chars().next()).take(2).collect();
    if letters.is_empty() { "?".to_owned() } else { letters.to_uppercase() }
}

#[component]
pub fn Avatars(store: RoomStore) -> impl IntoView {
    let members = Memo::new(move |_| store.model.with(|m| (m.members.clone(), m.members_total)));
    let shown = move || members.with(|(all, _)| all.iter().take(SHOWN).cloned().collect::<Vec<Member>>());
    let more = move || members.with(|(all, total)| (*total as usize).max(all.len()).saturating_sub(SHOWN));
    view! {
        <ul class="avatars" aria-label=move || format!("{} here", members.with(|(all, total)| (*total as usize).max(all.len())))>
            <For each=shown key=|m| (m.user.clone(), m.name.clone(), m.uploading, m.tabs) let:member>
                <li
                    class={if member.uploading > 0 { "avatar uploading" } else { "avatar" }}
                    style=format!("background-color: {}", member.colour)
                    title=describe(&member)
                    tabindex="0"
                    aria-label=describe(&member)
                    data-testid="avatar"
                >
                    {initials(&member.name)}
                </li>
            </For>
            <Show when=move || { more() > 0 }>
                <li class="avatar more" tabindex="0" aria-label=move || format!("and {} more", more())>{move || format!("+{}", more())}</li>
            </Show>
        </ul>
    }
}

fn describe(member: &Member) -> String {
    match member.uploading {
        0 => member.name.clone(),
        1 => format!("{} (uploading 1 photo)", member.name),
        n => format!("{} (uploading {n} photos)", member.name),
    }
}

#[cfg(test)]
mod tests {
    use super::initials;

    #[test]
    fn initials_take_the_first_letters_of_two_words() {
        assert_eq!(initials("Ana María López"), "AM");
        assert_eq!(initials("ben"), "B");
        assert_eq!(initials("  "), "?");
        assert_eq!(initials("élodie"), "É");
    }
}
