//! Whether a speaker may announce at all. The API server says which speakers are running
//! ([`super::presence`]); a speaker that hears fewer than a majority of them, itself included,
//! is the one cut off (its membership port firewalled, its clock far off, its link to the
//! others down), and it withdraws: otherwise it would elect itself owner of every address and
//! answer beside the real owners. Exactly half is a majority for the half that holds the first
//! of the running speakers' names, so that of two halves exactly one answers.
//!
//! Two speakers: each is half. When one fails, the survivor keeps answering (and takes over at
//! once) if its name sorts first; otherwise it withdraws until the failed speaker's Lease
//! expires ([`super::presence::EXPIRES_AFTER`] after its last renewal), then takes over. A
//! membership cut between two healthy speakers leaves the first answering for all.

use std::collections::BTreeSet;

use crate::cluster::Alive;

/// A speaker's standing: the speakers running, and those of them it hears.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Standing {
    pub running: BTreeSet<String>,
    pub heard: BTreeSet<String>,
}

impl Standing {
    /// `me` hears `alive`; `running` as the API server has it (`me` is always running).
    pub fn new(me: &str, alive: &Alive, running: &BTreeSet<String>) -> Self {
        let mut running = running.clone();
        running.insert(me.to_owned());
        let mut heard: BTreeSet<String> = alive.intersection(&running).cloned().collect();
        heard.insert(me.to_owned());
        Self { running, heard }
    }

    /// A majority, or exactly half with the first name in it.
    pub fn holds(&self) -> bool {
        let (heard, running) = (self.heard.len() * 2, self.running.len());
        heard > running || (heard == running && self.running.first().is_some_and(|f| self.heard.contains(f)))
    }

    /// The running speakers not heard.
    pub fn missing(&self) -> impl Iterator<Item = &String> {
        self.running.difference(&self.heard)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|n| n.to_string()).collect()
    }

    fn holds(me: &str, alive: &[&str], running: &[&str]) -> bool {
        Standing::new(me, &names(alive), &names(running)).holds()
    }

    #[test]
    fn a_majority_of_the_running_speakers_or_the_first_half() {
        let abc = ["a", "b", "c"];
        assert!(holds("a", &["a", "b"], &abc));
        assert!(!holds("c", &["c"], &abc), "cut off from both");
        assert!(holds("a", &["a"], &["a"]), "alone, and alone running");
        // Two: of a cut, only the first answers; when one fails, the first takes over at once.
        assert!(holds("a", &["a"], &["a", "b"]));
        assert!(!holds("b", &["b"], &["a", "b"]));
        // Four, split in two halves: the half with "a" answers.
        let abcd = ["a", "b", "c", "d"];
        assert!(holds("b", &["a", "b"], &abcd) && !holds("c", &["c", "d"], &abcd));
        // A member heard but not running (its Lease expired) does not count; this node always
        // runs, whatever the API server has seen of it.
        assert!(!holds("c", &["c", "x"], &abc));
        assert!(holds("c", &["a", "c"], &["a", "b"]));
        let standing = Standing::new("c", &names(&["c"]), &names(&abc));
        assert_eq!(standing.missing().collect::<Vec<_>>(), ["a", "b"]);
    }
}
