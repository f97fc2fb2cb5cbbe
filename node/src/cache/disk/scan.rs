//! The startup scan: every file's header is read into the index (in a
//! background task: the node serves meanwhile, and what is not indexed
//! yet misses); unreadable, truncated, wrong-version or foreign files are
//! deleted.
//!
//! Purges that arrive during the scan run at once on what is indexed, and
//! leave a tombstone (what they selected, and when) that the scan checks
//! each file against before indexing it: a file written before a purge
//! that selects it is deleted (hard) or indexed marked (soft), so nothing
//! a purge removed is served once the scan reaches it. Check and insert
//! happen under the tombstones' lock, which a purge takes before it looks
//! at the index: either the scan sees the tombstone or the purge sees the
//! file. Tombstones are bounded (invalidations after every POST are
//! purges of a key too, and a long scan under write traffic sees many):
//! key tombstones are one per key, and past [`MAX_TOMBSTONES`] the app
//! with the most gives them up for one time, the newest it forgot, before
//! which its files are dropped: that app loses its older files, the other
//! apps nothing.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::format::{FormatError, Meta, read_header};
use super::{DiskTier, remove_file};
use crate::cache::key::CacheKey;

/// Tombstones kept while the startup scan runs, all apps together.
const MAX_TOMBSTONES: usize = 4096;
/// Apps that gave up their tombstones; past it, one time for all apps.
const MAX_FORGOTTEN_APPS: usize = 1024;

/// A resource predicate of a purge by URL: (scheme, host, target).
pub(super) type ResourceMatch = Box<dyn Fn(&str, &str, &str) -> bool + Send + Sync>;

/// What a purge during the scan selected within its app.
pub(super) enum Selected {
    All,
    Tag(String),
    Url(ResourceMatch),
}

/// When a key was last purged during the scan.
#[derive(Default, Clone, Copy)]
struct Stamp {
    hard: Option<SystemTime>,
    soft: Option<SystemTime>,
}

impl Stamp {
    fn add(&mut self, at: SystemTime, soft: bool) {
        let slot = if soft { &mut self.soft } else { &mut self.hard };
        *slot = Some(slot.map_or(at, |t| t.max(at)));
    }

    fn newest(&self) -> Option<SystemTime> {
        self.hard.max(self.soft)
    }
}

#[derive(Default)]
struct AppTombstones {
    keys: HashMap<CacheKey, Stamp>,
    purges: Vec<(SystemTime, Selected, bool)>,
}

impl AppTombstones {
    fn len(&self) -> usize {
        self.keys.len() + self.purges.len()
    }

    fn newest(&self) -> Option<SystemTime> {
        let keys = self.keys.values().filter_map(Stamp::newest).max();
        keys.max(self.purges.iter().map(|(at, _, _)| *at).max())
    }
}

/// What the scan does with a file.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    Keep,
    Soft,
    Drop,
}

/// The purges that ran during the scan (see the module comment).
pub(super) struct Tombstones {
    running: bool,
    apps: HashMap<(String, String), AppTombstones>,
    count: usize,
    /// Apps whose tombstones were given up: their files written before
    /// this time are dropped.
    forgotten: HashMap<(String, String), SystemTime>,
    /// Past `MAX_FORGOTTEN_APPS`: any file written before it is dropped.
    all_before: Option<SystemTime>,
}

impl Default for Tombstones {
    fn default() -> Self {
        Self {
            running: true,
            apps: HashMap::new(),
            count: 0,
            forgotten: HashMap::new(),
            all_before: None,
        }
    }
}

impl Tombstones {
    fn add_key(&mut self, key: &CacheKey, at: SystemTime, soft: bool) {
        let (tenant, app) = key.owner();
        let owner = (tenant.to_string(), app.to_string());
        self.make_room();
        let tombs = self.apps.entry(owner).or_default();
        let before = tombs.keys.len();
        tombs.keys.entry(key.clone()).or_default().add(at, soft);
        self.count += tombs.keys.len() - before;
    }

    fn add(&mut self, owner: (String, String), at: SystemTime, what: Selected, soft: bool) {
        self.make_room();
        self.apps
            .entry(owner)
            .or_default()
            .purges
            .push((at, what, soft));
        self.count += 1;
    }

    /// Below the bound before one more is added.
    fn make_room(&mut self) {
        if self.count < MAX_TOMBSTONES {
            return;
        }
        let Some(owner) = self
            .apps
            .iter()
            .max_by_key(|(_, t)| t.len())
            .map(|(owner, _)| owner.clone())
        else {
            return;
        };
        let Some(tombs) = self.apps.remove(&owner) else {
            return;
        };
        self.count -= tombs.len();
        if let Some(newest) = tombs.newest() {
            let at = self.forgotten.entry(owner).or_insert(newest);
            *at = (*at).max(newest);
        }
        if self.forgotten.len() > MAX_FORGOTTEN_APPS {
            let newest = self.forgotten.drain().map(|(_, at)| at).max();
            self.all_before = self.all_before.max(newest);
        }
    }

    /// Whether a file of `meta` written at `written` escapes every purge.
    pub(super) fn verdict(&self, meta: &Meta, written: SystemTime) -> Verdict {
        let (tenant, app) = meta.key.owner();
        if self.all_before.is_some_and(|t| written < t) {
            return Verdict::Drop;
        }
        let owner = (tenant.to_string(), app.to_string());
        if self.forgotten.get(&owner).is_some_and(|t| written < *t) {
            return Verdict::Drop;
        }
        let Some(tombs) = self.apps.get(&owner) else {
            return Verdict::Keep;
        };
        let mut soft = false;
        if let Some(stamp) = tombs.keys.get(&meta.key) {
            if stamp.hard.is_some_and(|t| written < t) {
                return Verdict::Drop;
            }
            soft |= stamp.soft.is_some_and(|t| written < t);
        }
        for (at, what, soft_purge) in &tombs.purges {
            if written >= *at {
                continue;
            }
            let selected = match what {
                Selected::All => true,
                Selected::Tag(tag) => meta.surrogate_keys.iter().any(|k| k == tag),
                Selected::Url(matches) => meta
                    .key
                    .resource()
                    .is_some_and(|(scheme, host, target)| matches(scheme, host, target)),
            };
            if selected && !soft_purge {
                return Verdict::Drop;
            }
            soft |= selected;
        }
        if soft { Verdict::Soft } else { Verdict::Keep }
    }
}

impl DiskTier {
    /// Reads every file's header into the index, deleting what cannot be
    /// used or what a purge during the scan removed. Blocking: run it with
    /// `spawn_blocking`.
    pub fn rebuild(&self) {
        let (mut kept, mut dropped, mut purged) = (0u64, 0u64, 0u64);
        if let Ok(tmp) = std::fs::read_dir(self.root.join("tmp")) {
            for file in tmp.flatten() {
                remove_file(&file.path());
            }
        }
        for dir in fan_out_dirs(&self.root) {
            let Ok(files) = std::fs::read_dir(&dir) else {
                continue;
            };
            for file in files.flatten() {
                let path = file.path();
                if !file.file_type().is_ok_and(|t| t.is_file()) {
                    continue;
                }
                let read = File::open(&path).map_err(FormatError::from).and_then(|f| {
                    // Unknown: as old as can be, so that any purge applies.
                    let written = f
                        .metadata()
                        .and_then(|m| m.modified())
                        .unwrap_or(SystemTime::UNIX_EPOCH);
                    Ok((read_header(&f)?, written))
                });
                match read {
                    Ok((header, written)) => {
                        if self.scan_insert(path, header, written) {
                            kept += 1;
                        } else {
                            purged += 1;
                        }
                    }
                    Err(err) => {
                        tracing::debug!(path = %path.display(), error = %err, "dropping unusable cache file");
                        remove_file(&path);
                        dropped += 1;
                    }
                }
            }
        }
        if let Ok(mut tombs) = self.tombstones.lock() {
            *tombs = Tombstones {
                running: false,
                ..Tombstones::default()
            };
        }
        self.index.run_pending_tasks();
        tracing::info!(
            files = kept,
            dropped,
            purged,
            bytes = self.weighted_bytes(),
            "cache disk tier indexed"
        );
    }

    /// Indexes a file the scan found unless a purge during the scan
    /// removed it (then it is deleted and `false` returned).
    fn scan_insert(
        &self,
        path: PathBuf,
        mut header: super::format::FileHeader,
        written: SystemTime,
    ) -> bool {
        // Held across the insert: a purge records its tombstone under it
        // before it looks at the index.
        let Ok(tombs) = self.tombstones.lock() else {
            remove_file(&path);
            return false;
        };
        match tombs.verdict(&header.meta, written) {
            Verdict::Drop => {
                remove_file(&path);
                false
            }
            Verdict::Soft => {
                header.soft_purged = true;
                self.jobs.mark_soft(path.clone());
                self.index_insert(path, header, None)
            }
            Verdict::Keep => self.index_insert(path, header, None),
        }
    }

    /// Leaves a tombstone of a purge of `key` if the scan is running.
    pub(super) fn tombstone_key(&self, key: &CacheKey, soft: bool) {
        if let Ok(mut tombs) = self.tombstones.lock()
            && tombs.running
        {
            tombs.add_key(key, SystemTime::now(), soft);
        }
    }

    /// Leaves a tombstone of a purge within an app if the scan is running.
    pub(super) fn tombstone(
        &self,
        tenant: &str,
        app: &str,
        what: impl FnOnce() -> Selected,
        soft: bool,
    ) {
        if let Ok(mut tombs) = self.tombstones.lock()
            && tombs.running
        {
            tombs.add((tenant.into(), app.into()), SystemTime::now(), what(), soft);
        }
    }
}

/// The two-level fan-out directories under `root` (two hex digits each).
pub(super) fn fan_out_dirs(root: &Path) -> Vec<PathBuf> {
    let hex2 = |name: &std::ffi::OsStr| {
        name.to_str()
            .is_some_and(|n| n.len() == 2 && n.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    let mut dirs = Vec::new();
    let Ok(top) = std::fs::read_dir(root) else {
        return dirs;
    };
    for first in top.flatten().filter(|d| hex2(&d.file_name())) {
        let Ok(second) = std::fs::read_dir(first.path()) else {
            continue;
        };
        dirs.extend(
            second
                .flatten()
                .filter(|d| hex2(&d.file_name()))
                .map(|d| d.path()),
        );
    }
    dirs
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::cache::body::StoredBody;
    use crate::cache::disk::write::write_file;

    fn key(app: &str, target: &str) -> CacheKey {
        CacheKey::new("t", app, "https", "x.test", target)
    }

    fn meta(key: &CacheKey, tags: &[&str]) -> Meta {
        let mut meta = Meta::sample();
        meta.key = key.clone();
        meta.vary.clear();
        meta.surrogate_keys = tags.iter().map(|t| t.to_string()).collect();
        meta
    }

    /// Writes a file for `key` as a node before a restart did, dated `at`.
    fn old_file(tier: &DiskTier, key: &CacheKey, tags: &[&str], at: SystemTime) -> PathBuf {
        let meta = meta(key, tags);
        let (path, tmp) = tier.paths(&meta);
        let body = StoredBody::Memory(Bytes::from_static(b"body"));
        write_file(&tmp, &path, &meta, &body).unwrap();
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(at)
            .unwrap();
        path
    }

    fn soft(path: &Path) -> bool {
        read_header(&File::open(path).unwrap()).unwrap().soft_purged
    }

    #[test]
    fn a_purge_during_the_scan_reaches_files_the_scan_has_not_indexed_yet() {
        let dir = tempfile::tempdir().unwrap();
        // A tier whose scan has not run yet: as at startup, before the
        // scan reaches these files.
        let tier = DiskTier::open(dir.path(), 1 << 20, 1 << 20, None).unwrap();
        let hour_ago = SystemTime::now() - Duration::from_secs(3600);
        let (a, b, c, d) = (
            key("a", "/a"),
            key("a", "/b"),
            key("a", "/c"),
            key("a", "/d"),
        );
        let other = key("b", "/a");
        let a_file = old_file(&tier, &a, &[], hour_ago);
        let b_file = old_file(&tier, &b, &["blue"], hour_ago);
        let c_file = old_file(&tier, &c, &[], hour_ago);
        let other_file = old_file(&tier, &other, &[], hour_ago);
        // Written after the purges (a write during the scan).
        let d_file = old_file(
            &tier,
            &d,
            &[],
            SystemTime::now() + Duration::from_secs(3600),
        );

        assert_eq!(tier.purge_url("t", "a", "https://x.test/a", false), 0);
        assert_eq!(tier.purge_app("t", "a", Some("blue"), true), 0);
        assert_eq!(tier.purge_key(&c, false), 0);
        assert_eq!(tier.purge_key(&d, false), 0);
        tier.rebuild();
        tier.settle();

        assert!(
            !a_file.exists() && tier.index.get(&a).is_none(),
            "purged by URL"
        );
        assert!(
            !c_file.exists() && tier.index.get(&c).is_none(),
            "purged by key"
        );
        let b_variants = tier.index.get(&b).expect("soft-purged files stay");
        assert!(
            b_variants.0[0]
                .soft_purged
                .load(std::sync::atomic::Ordering::Relaxed)
        );
        assert!(soft(&b_file), "the soft purge is on disk too");
        assert!(
            d_file.exists() && tier.index.get(&d).is_some(),
            "newer than the purge"
        );
        assert!(
            other_file.exists() && tier.index.get(&other).is_some(),
            "another app's file with the purged URL"
        );
        // The scan is over: purges act on the index only, leave nothing.
        tier.purge_key(&d, false);
        assert_eq!(tier.tombstones.lock().unwrap().count, 0);
    }

    #[test]
    fn tombstones_are_bounded_and_overflow_costs_only_the_busiest_app() {
        let mut tombs = Tombstones::default();
        let t0 = SystemTime::now();
        let (t1, t2) = (t0 + Duration::from_secs(1), t0 + Duration::from_secs(2));
        // The same key invalidated again and again is one tombstone.
        for _ in 0..10 {
            tombs.add_key(&key("a", "/same"), t1, false);
        }
        assert_eq!(tombs.count, 1);
        for i in 0..MAX_TOMBSTONES + 10 {
            tombs.add_key(&key("a", &format!("/{i}")), t1, false);
        }
        tombs.add(
            ("t".into(), "b".into()),
            t1,
            Selected::Tag("red".into()),
            false,
        );
        assert!(tombs.count <= MAX_TOMBSTONES, "{} tombstones", tombs.count);

        let verdict =
            |t: &Tombstones, k: &CacheKey, tags: &[&str], at| t.verdict(&meta(k, tags), at);
        // The app that overflowed: its files older than what it forgot go,
        // newer ones stay, and what it still remembers still applies.
        assert_eq!(
            verdict(&tombs, &key("a", "/untouched"), &[], t0),
            Verdict::Drop
        );
        assert_eq!(
            verdict(&tombs, &key("a", "/untouched"), &[], t2),
            Verdict::Keep
        );
        // Other apps keep their files unless a purge selected them.
        assert_eq!(
            verdict(&tombs, &key("b", "/x"), &["red"], t0),
            Verdict::Drop
        );
        assert_eq!(
            verdict(&tombs, &key("b", "/x"), &["blue"], t0),
            Verdict::Keep
        );
        assert_eq!(
            verdict(&tombs, &key("b", "/x"), &["red"], t2),
            Verdict::Keep
        );
        assert_eq!(verdict(&tombs, &key("c", "/0"), &[], t0), Verdict::Keep);

        // Past the bound on apps that gave up theirs: one time for all.
        for app in 0..MAX_FORGOTTEN_APPS + 1 {
            for i in 0..MAX_TOMBSTONES {
                tombs.add_key(&key(&format!("x{app}"), &format!("/{i}")), t1, false);
            }
        }
        assert!(tombs.forgotten.len() <= MAX_FORGOTTEN_APPS);
        assert_eq!(verdict(&tombs, &key("c", "/0"), &[], t0), Verdict::Drop);
        assert_eq!(verdict(&tombs, &key("c", "/0"), &[], t2), Verdict::Keep);
    }
}
