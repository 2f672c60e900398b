//! The etcd members a worker can call, and which one it calls next.
//!
//! Envoy users name one cluster whose endpoints are the members (Envoy picks
//! a healthy one). Kong's `dispatch_http_call` takes one host:port and has no
//! load balancing or health checks of its own, so there the configuration lists
//! every member and the filter fails over itself: a call that could not connect
//! or got no answer moves this worker to the next member, and every later call
//! goes there until that one fails in turn. Sticky, not round-robin: a healthy
//! member keeps the traffic, so a worker does not keep probing a dead one.

use std::cell::Cell;
use std::rc::Rc;

/// Which member a call went to (an index into `Members::names`).
pub type MemberIndex = usize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Members {
    names: Vec<String>,
    /// This worker's current member. Shared by every clone of the
    /// configuration in one worker (its root and request contexts): one VM is
    /// one thread, so a `Cell` is enough.
    current: Rc<Cell<MemberIndex>>,
}

impl Members {
    /// `names` is not empty (the configuration makes sure).
    pub fn new(names: Vec<String>) -> Members {
        Members {
            names,
            current: Rc::new(Cell::new(0)),
        }
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The member the next call goes to.
    pub fn pick(&self) -> (MemberIndex, &str) {
        let index = self.current.get() % self.names.len().max(1);
        (index, self.names.get(index).map_or("", String::as_str))
    }

    /// A call to `member` could not connect or got no answer: the next call
    /// goes to the next member. A late failure of a member this worker has
    /// already left changes nothing (two calls failing on the same dead member
    /// must not skip the healthy one after it).
    pub fn failed(&self, member: MemberIndex) {
        if member == self.pick().0 && self.names.len() > 1 {
            self.current.set((member + 1) % self.names.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three() -> Members {
        Members::new(vec!["a:1".into(), "b:2".into(), "c:3".into()])
    }

    #[test]
    fn a_worker_stays_with_a_member_that_answers() {
        let members = three();
        assert_eq!(members.pick(), (0, "a:1"));
        assert_eq!(members.pick(), (0, "a:1"));
    }

    #[test]
    fn a_failure_moves_to_the_next_member_and_wraps_around() {
        let members = three();
        members.failed(0);
        assert_eq!(members.pick(), (1, "b:2"));
        members.failed(1);
        members.failed(2);
        assert_eq!(members.pick(), (0, "a:1"));
    }

    #[test]
    fn a_late_failure_of_a_member_already_left_changes_nothing() {
        let members = three();
        // Two calls in flight to a; both fail.
        members.failed(0);
        members.failed(0);
        assert_eq!(members.pick(), (1, "b:2"), "the second failure must not skip b");
    }

    #[test]
    fn clones_share_the_choice_and_one_member_never_moves() {
        let members = three();
        let clone = members.clone();
        clone.failed(0);
        assert_eq!(members.pick(), (1, "b:2"));
        let single = Members::new(vec!["etcd".into()]);
        single.failed(0);
        assert_eq!(single.pick(), (0, "etcd"));
    }
}
