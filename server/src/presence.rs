//! Who is in a room: one entry per person however many tabs they have, with a grace period so
//! that a quick reconnect (a page reload, a flaky phone connection) does not show as leave+join.
//!
//! Changes are not sent one by one: the room stream flushes them a few times a second as one
//! diff between what members were last told (`announced`) and the present. A burst of joins in a
//! big room is then a handful of frames instead of one per pair of members, and a tab that
//! reconnects within a flush shows nothing at all. New members get the announced list, capped
//! at [`LISTED`] entries with the total, so joining a room of thousands stays cheap.

use app::protocol::{Member, ServerMessage};
use std::collections::{BTreeMap, BTreeSet};

/// Members listed in full to a newcomer; the rest are counted.
pub const LISTED: usize = 24;

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
            // A user inside the grace period still shows their last tab.
            tabs: (self.connections.len() as u32).max(1),
        }
    }
}

#[derive(Default)]
pub struct Presence {
    members: BTreeMap<String, Entry>,
    /// Connection id -> user id.
    users: BTreeMap<u64, String>,
    /// What members have been told, by user.
    announced: BTreeMap<String, Member>,
    /// Users whose entry may differ from `announced`.
    dirty: BTreeSet<String>,
    next_ticket: u64,
}

impl Presence {
    /// The `presence` message for a newcomer: what everyone else has been told.
    pub fn listing(&self) -> ServerMessage {
        ServerMessage::Presence {
            members: self.announced.values().take(LISTED).cloned().collect(),
            total: self.announced.len() as u32,
        }
    }

    pub fn connections(&self) -> usize {
        self.users.len()
    }

    /// A connection of `user` arrived.
    pub fn connect(&mut self, connection: u64, user: &str, name: &str, colour: &str) {
        self.users.insert(connection, user.to_owned());
        let entry = self.members.entry(user.to_owned()).or_insert_with(|| Entry {
            name: name.to_owned(),
            colour: colour.to_owned(),
            connections: BTreeMap::new(),
            leaving: None,
        });
        entry.leaving = None;
        entry.name = name.to_owned();
        entry.colour = colour.to_owned();
        entry.connections.insert(connection, 0);
        self.dirty.insert(user.to_owned());
    }

    /// A connection closed. When it was the user's last, returns `(user, ticket)` for
    /// [`Presence::expire`] after the grace period.
    pub fn disconnect(&mut self, connection: u64) -> Option<(String, u64)> {
        let user = self.users.remove(&connection)?;
        let entry = self.members.get_mut(&user)?;
        entry.connections.remove(&connection);
        self.dirty.insert(user.clone());
        if entry.connections.is_empty() {
            self.next_ticket += 1;
            entry.leaving = Some(self.next_ticket);
            return Some((user, self.next_ticket));
        }
        None
    }

    /// The grace period of `user` ended: removes them unless they came back since.
    pub fn expire(&mut self, user: &str, ticket: u64) {
        if self.members.get(user).is_some_and(|e| e.leaving == Some(ticket)) {
            self.members.remove(user);
            self.dirty.insert(user.to_owned());
        }
    }

    /// A connection reported how many files it is uploading.
    pub fn set_uploading(&mut self, connection: u64, files: u32) {
        let Some(user) = self.users.get(&connection) else { return };
        let Some(slot) = self.members.get_mut(user).and_then(|e| e.connections.get_mut(&connection)) else { return };
        *slot = files;
        self.dirty.insert(user.clone());
    }

    /// Everything that changed since the last call, as one diff; `None` when members have
    /// nothing new to learn.
    pub fn take_diff(&mut self) -> Option<ServerMessage> {
        let (mut joined, mut left, mut changed) = (Vec::new(), Vec::new(), Vec::new());
        for user in std::mem::take(&mut self.dirty) {
            let now = self.members.get(&user).map(|e| e.member(&user));
            match (self.announced.get(&user), now) {
                (None, Some(member)) => {
                    joined.push(member.clone());
                    self.announced.insert(user, member);
                }
                (Some(_), None) => {
                    self.announced.remove(&user);
                    left.push(user);
                }
                (Some(was), Some(member)) if *was != member => {
                    changed.push(member.clone());
                    self.announced.insert(user, member);
                }
                _ => {}
            }
        }
        if joined.is_empty() && left.is_empty() && changed.is_empty() {
            return None;
        }
        // In a crowd, members see the first faces and a count, not every arrival: a diff stays
        // a couple of kilobytes however many joined (every connection keeps a write buffer as
        // large as the largest frame it ever sent).
        joined.truncate(LISTED);
        changed.truncate(LISTED);
        Some(ServerMessage::PresenceDiff { joined, left, changed, total: self.announced.len() as u32 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diff(p: &mut Presence) -> (Vec<Member>, Vec<String>, Vec<Member>) {
        match p.take_diff() {
            Some(ServerMessage::PresenceDiff { joined, left, changed, .. }) => (joined, left, changed),
            _ => Default::default(),
        }
    }

    #[test]
    fn two_tabs_are_one_member() {
        let mut p = Presence::default();
        p.connect(1, "u1", "Ana", "#ff0000");
        let (joined, _, _) = diff(&mut p);
        assert_eq!(joined.len(), 1);
        p.connect(2, "u1", "Ana", "#ff0000");
        let (joined, _, changed) = diff(&mut p);
        assert!(joined.is_empty());
        assert_eq!(changed[0].tabs, 2);
        assert!(p.disconnect(1).is_none(), "one tab left: still here");
        assert_eq!(diff(&mut p).2[0].tabs, 1);
    }

    #[test]
    fn a_quick_reconnect_does_not_leave() {
        let mut p = Presence::default();
        p.connect(1, "u1", "Ana", "#ff0000");
        diff(&mut p);
        let (user, ticket) = p.disconnect(1).expect("last tab");
        // Back within the grace period: nothing to tell, and the old expiry does nothing.
        p.connect(2, "u1", "Ana", "#ff0000");
        p.expire(&user, ticket);
        assert_eq!(p.take_diff(), None);
        // Gone for good this time.
        let (user, ticket) = p.disconnect(2).expect("last tab");
        assert_eq!(p.take_diff(), None, "still inside the grace period");
        p.expire(&user, ticket);
        assert_eq!(diff(&mut p).1, vec!["u1".to_owned()]);
    }

    #[test]
    fn a_join_and_leave_inside_one_flush_is_invisible() {
        let mut p = Presence::default();
        p.connect(1, "u1", "Ana", "#ff0000");
        let (user, ticket) = p.disconnect(1).expect("last tab");
        p.expire(&user, ticket);
        assert_eq!(p.take_diff(), None);
    }

    #[test]
    fn uploading_is_summed_over_tabs_and_big_rooms_are_listed_with_a_total() {
        let mut p = Presence::default();
        p.connect(1, "u1", "Ana", "#ff0000");
        p.connect(2, "u1", "Ana", "#ff0000");
        p.set_uploading(1, 3);
        p.set_uploading(2, 2);
        p.set_uploading(99, 1);
        assert_eq!(diff(&mut p).0[0].uploading, 5);
        for i in 0..(LISTED + 20) {
            p.connect(10 + i as u64, &format!("v{i}"), "V", "#000000");
        }
        diff(&mut p);
        match p.listing() {
            ServerMessage::Presence { members, total } => {
                assert_eq!(members.len(), LISTED);
                assert_eq!(total as usize, LISTED + 21);
            }
            other => panic!("{other:?}"),
        }
    }
}
