//! Who is in a room: one entry per person however many tabs they have, with a grace period so
//! that a quick reconnect (a page reload, a flaky phone connection) does not show as leave+join.
//!
//! This is plain state; the room stream owns one per room and sends the diffs it returns, under
//! the same lock as events, so every member sees presence change in one order.

use app::protocol::{Member, ServerMessage};
use std::collections::BTreeMap;

struct Entry {
    name: String,
    colour: String,
    /// Open connections of this user and how many files each is uploading.
    connections: BTreeMap<u64, u32>,
    /// Set when the last connection closed: the ticket a later expiry must match, so a user who
    /// came back and left again is only removed by the newest expiry.
    leaving: Option<u64>,
}

impl Entry {
    fn member(&self, user: &str) -> Member {
        Member {
            user: user.to_owned(),
            name: self.name.clone(),
            colour: self.colour.clone(),
            uploading: self.connections.values().sum(),
            tabs: self.connections.len() as u32,
        }
    }
}

#[derive(Default)]
pub struct Presence {
    members: BTreeMap<String, Entry>,
    /// Connection id -> user id.
    users: BTreeMap<u64, String>,
    next_ticket: u64,
}

/// A change to announce, already in wire form.
pub type Diff = ServerMessage;

fn joined(member: Member) -> Diff {
    ServerMessage::PresenceDiff { joined: vec![member], left: Vec::new(), changed: Vec::new() }
}

fn changed(member: Member) -> Diff {
    ServerMessage::PresenceDiff { joined: Vec::new(), left: Vec::new(), changed: vec![member] }
}

impl Presence {
    /// Everyone present, including those inside their grace period.
    pub fn members(&self) -> Vec<Member> {
        self.members.iter().map(|(user, entry)| entry.member(user)).collect()
    }

    pub fn connections(&self) -> usize {
        self.users.len()
    }

    /// A connection of `user` arrived. Returns the diff to send to the others, if any.
    pub fn connect(&mut self, connection: u64, user: &str, name: &str, colour: &str) -> Option<Diff> {
        self.users.insert(connection, user.to_owned());
        match self.members.get_mut(user) {
            Some(entry) => {
                let mut was = entry.member(user);
                if entry.leaving.take().is_some() {
                    // Back within the grace period: the others never saw this user leave, so
                    // they still show the tab count from before.
                    was.tabs += 1;
                }
                entry.name = name.to_owned();
                entry.colour = colour.to_owned();
                entry.connections.insert(connection, 0);
                let now = entry.member(user);
                // A second tab changes the tab count, which the avatar shows.
                (now != was).then(|| changed(now))
            }
            None => {
                let entry = Entry {
                    name: name.to_owned(),
                    colour: colour.to_owned(),
                    connections: BTreeMap::from([(connection, 0)]),
                    leaving: None,
                };
                let member = entry.member(user);
                self.members.insert(user.to_owned(), entry);
                Some(joined(member))
            }
        }
    }

    /// A connection closed. Returns a diff (fewer tabs, no longer uploading) and, when it was
    /// the user's last connection, `(user, ticket)` for [`Presence::expire`] after the grace
    /// period.
    pub fn disconnect(&mut self, connection: u64) -> (Option<Diff>, Option<(String, u64)>) {
        let Some(user) = self.users.remove(&connection) else { return (None, None) };
        let Some(entry) = self.members.get_mut(&user) else { return (None, None) };
        entry.connections.remove(&connection);
        if entry.connections.is_empty() {
            self.next_ticket += 1;
            entry.leaving = Some(self.next_ticket);
            return (None, Some((user, self.next_ticket)));
        }
        (Some(changed(entry.member(&user))), None)
    }

    /// The grace period of `user` ended: removes them unless they came back since.
    pub fn expire(&mut self, user: &str, ticket: u64) -> Option<Diff> {
        let entry = self.members.get(user)?;
        if entry.leaving != Some(ticket) {
            return None;
        }
        self.members.remove(user);
        Some(ServerMessage::PresenceDiff { joined: Vec::new(), left: vec![user.to_owned()], changed: Vec::new() })
    }

    /// A connection reported how many files it is uploading.
    pub fn set_uploading(&mut self, connection: u64, files: u32) -> Option<Diff> {
        let user = self.users.get(&connection)?;
        let entry = self.members.get_mut(user)?;
        let slot = entry.connections.get_mut(&connection)?;
        if *slot == files {
            return None;
        }
        *slot = files;
        Some(changed(entry.member(user)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn left(diff: Option<Diff>) -> Vec<String> {
        match diff {
            Some(ServerMessage::PresenceDiff { left, .. }) => left,
            _ => Vec::new(),
        }
    }

    #[test]
    fn two_tabs_are_one_member() {
        let mut p = Presence::default();
        assert!(matches!(p.connect(1, "u1", "Ana", "#ff0000"), Some(ServerMessage::PresenceDiff { ref joined, .. }) if joined.len() == 1));
        assert!(matches!(p.connect(2, "u1", "Ana", "#ff0000"), Some(ServerMessage::PresenceDiff { ref changed, .. }) if changed[0].tabs == 2));
        assert_eq!(p.members().len(), 1);
        let (diff, leaving) = p.disconnect(1);
        assert!(diff.is_some() && leaving.is_none(), "one tab left: still here");
        assert_eq!(p.members()[0].tabs, 1);
    }

    #[test]
    fn a_quick_reconnect_does_not_leave() {
        let mut p = Presence::default();
        p.connect(1, "u1", "Ana", "#ff0000");
        let (_, leaving) = p.disconnect(1);
        let (user, ticket) = leaving.expect("last tab");
        // Back within the grace period: no join diff, and the old expiry does nothing.
        assert_eq!(p.connect(2, "u1", "Ana", "#ff0000"), None);
        assert!(left(p.expire(&user, ticket)).is_empty());
        assert_eq!(p.members().len(), 1);
        // Gone for good this time.
        let (_, leaving) = p.disconnect(2);
        let (user, ticket) = leaving.expect("last tab");
        assert_eq!(left(p.expire(&user, ticket)), vec!["u1".to_owned()]);
        assert!(p.members().is_empty());
    }

    #[test]
    fn uploading_is_summed_over_tabs() {
        let mut p = Presence::default();
        p.connect(1, "u1", "Ana", "#ff0000");
        p.connect(2, "u1", "Ana", "#ff0000");
        assert!(p.set_uploading(1, 3).is_some());
        assert!(p.set_uploading(2, 2).is_some());
        assert_eq!(p.set_uploading(2, 2), None, "no change, no diff");
        assert_eq!(p.members()[0].uploading, 5);
        assert_eq!(p.set_uploading(99, 1), None);
    }
}
