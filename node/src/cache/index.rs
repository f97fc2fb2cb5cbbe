//! The purge index: which stored keys belong to each app, carry each
//! surrogate key, and answer each request target, so that a purge touches
//! what it removes and nothing else (moka can only be walked whole, which
//! made a purge O(every entry of every tenant)). Also each app's purge
//! generation, which a miss reads when it starts and the store checks when
//! it records the miss's answer: what a miss fetched before a purge that
//! selects it is never kept after it. The app's last purges are remembered
//! (what each selected), so that a purge of one URL or tag does not stop
//! the app's other misses from storing; a miss older than what is
//! remembered is refused.
//!
//! Written here rather than taken from a crate: it is three maps per app
//! behind sharded locks, and what matters is the order of operations with
//! moka, which no general-purpose crate knows.
//!
//! ## Consistency with the store
//!
//! The store (moka) is the truth; the index must hold every key the store
//! holds (a key missing here would survive a purge), and may briefly hold
//! keys the store no longer has (a purge of those is a no-op):
//!
//! - the store records a key here while moka holds the key's own lock for
//!   the write (inside `and_compute_with`), and writes only if no purge
//!   since the miss started selected the key; so records of one key happen
//!   in the order of its writes;
//! - a purge bumps the generation and takes the keys under the same lock,
//!   then removes them from the store;
//! - moka's removal listener forgets a key only if the removed value is the
//!   one recorded (a late notice for an older value keeps the newer key).
//!
//! No lock here is ever held while calling moka: moka may run its removal
//! listener (which takes these locks) from inside any of its calls. (The
//! other order, a moka key lock held while taking one of these, is the
//! only one, so the two cannot wait for each other.)

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::{Mutex, MutexGuard};

use super::key::CacheKey;

/// Shards of the index: purges and stores of different apps rarely wait
/// for each other.
const SHARDS: usize = 16;

/// What a purge selects within one app.
#[derive(Debug, Clone, Copy)]
pub enum Selection<'a> {
    All,
    /// Entries carrying this surrogate key.
    Tag(&'a str),
    /// Keys whose request target (path and query) is this one.
    Target(&'a str),
}

/// One recorded key: which stored value it was recorded for, and the
/// surrogate keys and target it is filed under.
#[derive(Debug)]
struct Recorded {
    /// `Arc::as_ptr` of the stored value: identifies it for the removal
    /// listener, never dereferenced.
    value: usize,
    tags: Box<[String]>,
}

/// What a remembered purge selected.
#[derive(Debug)]
enum Purged {
    All,
    Tag(Box<str>),
    Target(Box<str>),
}

/// Purges remembered per app: a miss that started before the oldest of
/// them is refused whatever it fetched.
const REMEMBERED_PURGES: usize = 64;

#[derive(Debug, Default)]
struct AppIndex {
    generation: u64,
    /// The last purges, oldest first: `(generation after it, what it
    /// selected)`.
    recent: std::collections::VecDeque<(u64, Purged)>,
    keys: HashMap<CacheKey, Recorded>,
    tags: HashMap<String, HashSet<CacheKey>>,
    targets: HashMap<String, HashSet<CacheKey>>,
}

impl AppIndex {
    /// Whether a purge since `since` selected `key` (carrying `tags`).
    fn purged_since(&self, since: u64, key: &CacheKey, tags: &[String]) -> bool {
        if since >= self.generation {
            return false;
        }
        let oldest = self.recent.front().map_or(self.generation, |(g, _)| *g);
        if since + 1 < oldest {
            return true;
        }
        let target = key.resource().map(|(_, _, target)| target);
        self.recent
            .iter()
            .filter(|(g, _)| *g > since)
            .any(|(_, purged)| match purged {
                Purged::All => true,
                Purged::Tag(tag) => tags.iter().any(|t| **t == **tag),
                Purged::Target(t) => target == Some(&**t),
            })
    }

    fn remember(&mut self, purged: Purged) {
        self.generation += 1;
        if self.recent.len() == REMEMBERED_PURGES {
            self.recent.pop_front();
        }
        self.recent.push_back((self.generation, purged));
    }

    fn file(&mut self, key: &CacheKey, recorded: Recorded) {
        let old = self.keys.insert(key.clone(), recorded);
        let new_tags = &self.keys[key].tags;
        if let Some(old) = &old {
            for tag in old.tags.iter().filter(|t| !new_tags.contains(t)) {
                unfile(&mut self.tags, tag, key);
            }
        }
        for tag in new_tags.iter() {
            if old.as_ref().is_none_or(|o| !o.tags.contains(tag)) {
                self.tags
                    .entry(tag.clone())
                    .or_default()
                    .insert(key.clone());
            }
        }
        if old.is_none()
            && let Some((_, _, target)) = key.resource()
        {
            self.targets
                .entry(target.to_string())
                .or_default()
                .insert(key.clone());
        }
    }

    fn unfile(&mut self, key: &CacheKey) {
        let Some(recorded) = self.keys.remove(key) else {
            return;
        };
        for tag in recorded.tags.iter() {
            unfile(&mut self.tags, tag, key);
        }
        if let Some((_, _, target)) = key.resource() {
            unfile(&mut self.targets, target, key);
        }
    }
}

fn unfile(map: &mut HashMap<String, HashSet<CacheKey>>, name: &str, key: &CacheKey) {
    if let Some(keys) = map.get_mut(name) {
        keys.remove(key);
        if keys.is_empty() {
            map.remove(name);
        }
    }
}

type Shard = HashMap<String, AppIndex>;

pub struct PurgeIndex {
    shards: Box<[Mutex<Shard>]>,
    hasher: std::collections::hash_map::RandomState,
}

impl Default for PurgeIndex {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: Default::default(),
        }
    }
}

impl PurgeIndex {
    /// The shard of `app` (`tenant\0app`), locked. A panic elsewhere while
    /// holding it leaves maps that are still consistent enough to use.
    fn shard(&self, app: &str) -> MutexGuard<'_, Shard> {
        let shard = &self.shards[self.hasher.hash_one(app) as usize % SHARDS];
        shard
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The app's purge generation now: what a miss starting now must still
    /// see when its answer is recorded.
    pub fn generation(&self, key: &CacheKey) -> u64 {
        let app = key.app_id();
        self.shard(app).get(app).map_or(0, |a| a.generation)
    }

    /// Files `key` (its stored value `value`, carrying `tags`) unless a
    /// purge since `since` selected it; `false` if one did, and then the
    /// caller does not store it. Call it under moka's lock of the key
    /// (inside the write), so that records follow the writes' order.
    pub fn record<'t>(
        &self,
        key: &CacheKey,
        value: usize,
        tags: impl Iterator<Item = &'t str>,
        since: Option<u64>,
    ) -> bool {
        let app = key.app_id();
        let mut shard = self.shard(app);
        let index = match shard.get_mut(app) {
            Some(index) => index,
            None => shard.entry(app.to_string()).or_default(),
        };
        let mut tags: Vec<String> = tags.map(str::to_string).collect();
        tags.sort_unstable();
        tags.dedup();
        if since.is_some_and(|since| index.purged_since(since, key, &tags)) {
            return false;
        }
        index.file(
            key,
            Recorded {
                value,
                tags: tags.into(),
            },
        );
        true
    }

    /// Forgets `key` if it is still recorded for `value` (the store removed
    /// that value): a notice about an older value keeps the newer one.
    pub fn forget(&self, key: &CacheKey, value: usize) {
        let app = key.app_id();
        let mut shard = self.shard(app);
        if let Some(index) = shard.get_mut(app)
            && index.keys.get(key).is_some_and(|r| r.value == value)
        {
            index.unfile(key);
        }
    }

    /// Starts a purge of `tenant`'s `app`: bumps its generation (misses in
    /// flight will not keep what they fetched) and returns the keys
    /// `selection` names. They stay filed until the store's removal
    /// listener forgets them: the purge may keep some (a soft purge, the
    /// variants without the tag, keys its caller filters out).
    pub fn purge(&self, tenant: &str, app: &str, selection: Selection<'_>) -> Vec<CacheKey> {
        let id = CacheKey::app_id_of(tenant, app);
        let mut shard = self.shard(&id);
        let index = shard.entry(id.clone()).or_default();
        index.remember(match selection {
            Selection::All => Purged::All,
            Selection::Tag(tag) => Purged::Tag(tag.into()),
            Selection::Target(target) => Purged::Target(target.into()),
        });
        let keys: Vec<CacheKey> = match selection {
            Selection::All => index.keys.keys().cloned().collect(),
            Selection::Tag(tag) => index
                .tags
                .get(tag)
                .map(|keys| keys.iter().cloned().collect())
                .unwrap_or_default(),
            Selection::Target(target) => index
                .targets
                .get(target)
                .map(|keys| keys.iter().cloned().collect())
                .unwrap_or_default(),
        };
        keys
    }

    /// Drops everything about an app this node no longer serves, keeping
    /// its generation (bumped) so that a miss still in flight stores
    /// nothing.
    pub fn forget_app(&self, tenant: &str, app: &str) -> Vec<CacheKey> {
        let id = CacheKey::app_id_of(tenant, app);
        let mut shard = self.shard(&id);
        let Some(index) = shard.get_mut(&id) else {
            return Vec::new();
        };
        let keys = std::mem::take(&mut index.keys).into_keys().collect();
        index.tags.clear();
        index.targets.clear();
        index.remember(Purged::All);
        keys
    }

    /// Keys recorded, all apps together.
    pub fn recorded_keys(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let shard = s.lock().unwrap_or_else(|p| p.into_inner());
                shard.values().map(|a| a.keys.len()).sum::<usize>()
            })
            .sum()
    }

    /// Forgets recorded keys the store no longer has (`present` says; it
    /// is called with no lock held). Only needed when a removal notice
    /// overtook the recording of the same value, which leaves a key behind.
    pub fn sweep(&self, present: impl Fn(&CacheKey) -> bool) {
        for shard in self.shards.iter() {
            let recorded: Vec<(String, CacheKey, usize)> = {
                let shard = shard.lock().unwrap_or_else(|p| p.into_inner());
                shard
                    .iter()
                    .flat_map(|(app, index)| {
                        index
                            .keys
                            .iter()
                            .map(move |(key, r)| (app.clone(), key.clone(), r.value))
                    })
                    .collect()
            };
            let gone: Vec<_> = recorded
                .into_iter()
                .filter(|(_, k, _)| !present(k))
                .collect();
            if gone.is_empty() {
                continue;
            }
            let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            for (app, key, value) in gone {
                if let Some(index) = shard.get_mut(&app)
                    && index.keys.get(&key).is_some_and(|r| r.value == value)
                {
                    index.unfile(&key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(tenant: &str, app: &str, target: &str) -> CacheKey {
        CacheKey::new(tenant, app, "https", "x.test", target)
    }

    #[test]
    fn purges_select_by_app_tag_and_target_within_one_app() {
        let index = PurgeIndex::default();
        let (a, b, c) = (
            key("t", "a", "/1"),
            key("t", "a", "/2"),
            key("t", "a", "/1?q"),
        );
        let foreign = key("u", "a", "/1");
        index.record(&a, 1, ["red", "blue"].into_iter(), None);
        index.record(&b, 2, ["blue"].into_iter(), None);
        index.record(&c, 3, std::iter::empty(), None);
        index.record(&foreign, 4, ["red"].into_iter(), None);
        assert_eq!(
            index.purge("t", "a", Selection::Tag("red")),
            vec![a.clone()]
        );
        let mut blue = index.purge("t", "a", Selection::Tag("blue"));
        blue.sort_by(|x, y| format!("{x:?}").cmp(&format!("{y:?}")));
        assert_eq!(blue, vec![a.clone(), b.clone()]);
        assert_eq!(
            index.purge("t", "a", Selection::Target("/1?q")),
            vec![c.clone()]
        );
        assert_eq!(index.purge("t", "a", Selection::All).len(), 3);
        assert_eq!(index.purge("u", "a", Selection::All), vec![foreign.clone()]);
        // The store's removal notices are what forget keys.
        for (k, v) in [(&a, 1), (&b, 2), (&c, 3), (&foreign, 4)] {
            index.forget(k, v);
        }
        assert_eq!(index.recorded_keys(), 0);
        assert!(index.purge("t", "a", Selection::Tag("blue")).is_empty());
        assert!(index.purge("t", "a", Selection::Target("/1")).is_empty());
    }

    #[test]
    fn a_record_after_a_purge_that_selects_it_is_refused() {
        let index = PurgeIndex::default();
        let k = key("t", "a", "/");
        let other_app = key("t", "b", "/");
        let since = index.generation(&k);
        let other_since = index.generation(&other_app);
        index.purge("t", "a", Selection::Target("/elsewhere"));
        index.purge("t", "a", Selection::Tag("blue"));
        assert!(
            index.record(&k, 1, ["red"].into_iter(), Some(since)),
            "purges of another URL and another tag leave it alone"
        );
        assert!(!index.record(&k, 1, ["red", "blue"].into_iter(), Some(since)));
        index.purge("t", "a", Selection::Target("/"));
        assert!(!index.record(&k, 1, std::iter::empty(), Some(since)));
        assert!(
            index.record(&other_app, 2, std::iter::empty(), Some(other_since)),
            "another app's purge does not stop this app's stores"
        );
        assert!(index.record(&k, 1, std::iter::empty(), Some(index.generation(&k))));
        assert_eq!(index.forget_app("t", "a"), vec![k.clone()]);
        assert!(!index.record(&k, 1, std::iter::empty(), Some(since + 3)));
        // A miss older than every remembered purge is refused.
        let old = index.generation(&k);
        for i in 0..REMEMBERED_PURGES + 1 {
            index.purge("t", "a", Selection::Target(&format!("/other/{i}")));
        }
        assert!(!index.record(&k, 1, std::iter::empty(), Some(old)));
        let recent = index.generation(&k) - 1;
        assert!(index.record(&k, 1, std::iter::empty(), Some(recent)));
    }

    #[test]
    fn a_late_removal_notice_keeps_the_newer_value() {
        let index = PurgeIndex::default();
        let k = key("t", "a", "/");
        index.record(&k, 1, ["x"].into_iter(), None);
        index.record(&k, 2, ["y"].into_iter(), None);
        index.forget(&k, 1);
        assert_eq!(index.purge("t", "a", Selection::Tag("y")), vec![k.clone()]);
        assert!(
            index.purge("t", "a", Selection::Tag("x")).is_empty(),
            "the old value's tags are gone"
        );
        index.forget(&k, 2);
        assert_eq!(index.recorded_keys(), 0);
        index.record(&k, 3, std::iter::empty(), None);
        index.sweep(|_| false);
        assert_eq!(index.recorded_keys(), 0);
    }
}
