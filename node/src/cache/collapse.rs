//! Request collapsing: concurrent misses for one key make one backend
//! call. The first becomes the leader; the others wait (for a bounded
//! time) for its outcome: a stored response they can all use, or word that
//! the response was not storable, after which each goes to the backend
//! itself (RFC 9111 lets a cache collapse only when it can reuse the
//! answer).
//!
//! The map holds one entry per key with a miss in flight, removed when the
//! leader finishes — or is dropped (cancelled, panicked), which releases
//! the waiters as "go yourself" — so it is bounded by concurrent requests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::store::CacheKey;

/// What a leader's backend call ended in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Stored: look it up again.
    Stored,
    /// Not storable (or failed): go to the backend yourself.
    NotStored,
}

type Slot = watch::Receiver<Option<Outcome>>;

#[derive(Default)]
pub struct Collapser {
    in_flight: Mutex<HashMap<CacheKey, Slot>>,
}

/// Either lead the backend call for a key, or wait for the leader.
pub enum Role {
    Leader(LeaderGuard),
    Follower(Slot),
}

/// Held by the leader; publishing (or dropping) it releases the waiters.
pub struct LeaderGuard {
    collapser: Arc<Collapser>,
    key: CacheKey,
    sender: Option<watch::Sender<Option<Outcome>>>,
}

impl LeaderGuard {
    pub fn finish(mut self, outcome: Outcome) {
        self.release(outcome);
    }

    fn release(&mut self, outcome: Outcome) {
        if let Some(sender) = self.sender.take() {
            if let Ok(mut map) = self.collapser.in_flight.lock() {
                map.remove(&self.key);
            }
            let _ = sender.send(Some(outcome));
        }
    }
}

impl Drop for LeaderGuard {
    fn drop(&mut self) {
        self.release(Outcome::NotStored);
    }
}

impl Collapser {
    pub fn join(self: &Arc<Self>, key: &CacheKey) -> Role {
        let mut map = match self.in_flight.lock() {
            Ok(map) => map,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(slot) = map.get(key) {
            return Role::Follower(slot.clone());
        }
        let (sender, receiver) = watch::channel(None);
        map.insert(key.clone(), receiver);
        Role::Leader(LeaderGuard {
            collapser: self.clone(),
            key: key.clone(),
            sender: Some(sender),
        })
    }

    /// Keys with a backend call in flight.
    #[cfg(test)]
    fn in_flight(&self) -> usize {
        self.in_flight.lock().map(|m| m.len()).unwrap_or(0)
    }
}

/// Waits up to `limit` for the leader; `None` if it took longer (the
/// follower then goes to the backend itself: a slow origin must not hold
/// every client hostage).
pub async fn wait(mut slot: Slot, limit: Duration) -> Option<Outcome> {
    let waited = tokio::time::timeout(limit, slot.wait_for(Option::is_some)).await;
    match waited {
        Ok(Ok(outcome)) => outcome.clone(),
        // The leader vanished without a word (its sender dropped).
        Ok(Err(_)) => Some(Outcome::NotStored),
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(path: &str) -> CacheKey {
        CacheKey::new("t", "a", "https", "x.test", path)
    }

    #[tokio::test]
    async fn one_leader_per_key_and_followers_get_its_outcome() {
        let collapser = Arc::new(Collapser::default());
        let Role::Leader(leader) = collapser.join(&key("/")) else {
            panic!("the first request leads");
        };
        let followers: Vec<_> = (0..5)
            .map(|_| match collapser.join(&key("/")) {
                Role::Follower(slot) => tokio::spawn(wait(slot, Duration::from_secs(5))),
                Role::Leader(_) => panic!("only one leader"),
            })
            .collect();
        assert!(
            matches!(collapser.join(&key("/other")), Role::Leader(_)),
            "other keys lead alone"
        );
        assert_eq!(
            collapser.in_flight(),
            1,
            "the other key's leader was dropped"
        );
        leader.finish(Outcome::Stored);
        for follower in followers {
            assert_eq!(follower.await.unwrap(), Some(Outcome::Stored));
        }
        assert_eq!(collapser.in_flight(), 0);
        assert!(
            matches!(collapser.join(&key("/")), Role::Leader(_)),
            "the next miss leads again"
        );
    }

    #[tokio::test]
    async fn a_dropped_leader_releases_followers_to_go_themselves() {
        let collapser = Arc::new(Collapser::default());
        let leader = collapser.join(&key("/"));
        let Role::Follower(slot) = collapser.join(&key("/")) else {
            panic!("second is a follower");
        };
        drop(leader);
        assert_eq!(
            wait(slot, Duration::from_secs(5)).await,
            Some(Outcome::NotStored)
        );
        assert_eq!(collapser.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn followers_stop_waiting_after_the_limit() {
        let collapser = Arc::new(Collapser::default());
        let _leader = collapser.join(&key("/"));
        let Role::Follower(slot) = collapser.join(&key("/")) else {
            panic!("second is a follower");
        };
        assert_eq!(wait(slot, Duration::from_secs(2)).await, None);
    }
}
