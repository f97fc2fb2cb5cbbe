//! Purges of the disk tier, through its purge index: a purge visits the
//! keys its app, surrogate key or target names and no others. Hard purges
//! delete files (the index's eviction listener does, for whole keys);
//! soft ones set each file's soft-purge flag, in the index and on disk.

use std::sync::Arc;

use super::DiskTier;
use super::index::Variant;
use super::scan::{ResourceMatch, Selected};
use crate::cache::index::Selection;
use crate::cache::key::{CacheKey, UrlPurge};

impl DiskTier {
    /// Hard: removes `key`'s files; soft: marks them for revalidation.
    /// Not a purge of the app: its generation stays.
    pub fn purge_key(&self, key: &CacheKey, soft: bool) -> usize {
        self.tombstone_key(key, soft);
        self.purge_selected(key, None, soft)
    }

    /// `tenant`'s `app` files that carry `tag` (or all of them).
    pub fn purge_app(&self, tenant: &str, app: &str, tag: Option<&str>, soft: bool) -> usize {
        let what = || tag.map_or(Selected::All, |t| Selected::Tag(t.into()));
        self.tombstone(tenant, app, what, soft);
        let selection = tag.map_or(Selection::All, Selection::Tag);
        self.purges
            .purge(tenant, app, selection)
            .iter()
            .map(|key| self.purge_selected(key, tag, soft))
            .sum()
    }

    /// `tenant`'s `app` files that a purge of `url` names, as the memory
    /// tier reads it: a bare path on every host and scheme, an absolute
    /// URL on its scheme (or `fetch+` it) and host (with or without the
    /// port). A URL that names nothing purges nothing (and bumps nothing).
    pub fn purge_url(&self, tenant: &str, app: &str, url: &str, soft: bool) -> usize {
        let Some((target, matches)) = url_matcher(url) else {
            return 0;
        };
        let what = || url_matcher(url).map_or(Selected::All, |(_, m)| Selected::Url(m));
        self.tombstone(tenant, app, what, soft);
        let mut purged = 0;
        for key in self.purges.purge(tenant, app, Selection::Target(&target)) {
            if key
                .resource()
                .is_some_and(|(scheme, host, target)| matches(scheme, host, target))
            {
                purged += self.purge_selected(&key, None, soft);
            }
        }
        purged
    }

    /// Removes an app's files (an app this node no longer serves), and
    /// forgets it in the purge index (its generation moves on, so a write
    /// in flight keeps nothing).
    pub fn forget_app(&self, tenant: &str, app: &str) {
        self.tombstone(tenant, app, || Selected::All, false);
        for key in self.purges.forget_app(tenant, app) {
            // The listener deletes the files and their accounting.
            self.index.invalidate(&key);
        }
    }

    /// Purges `key`'s files that carry `tag` (all with `None`).
    fn purge_selected(&self, key: &CacheKey, tag: Option<&str>, soft: bool) -> usize {
        let Some(variants) = self.index.get(key) else {
            return 0;
        };
        let hit = |v: &Arc<Variant>| tag.is_none_or(|t| v.surrogate_keys.iter().any(|k| k == t));
        if soft {
            let marked = variants.0.iter().filter(|v| hit(v));
            return marked.map(|v| v.mark_soft(&self.jobs)).count();
        }
        if tag.is_none() {
            return self.index.remove(key).map_or(0, |v| v.0.len());
        }
        self.replace(key, &variants, |v| !hit(v))
    }
}

/// A purge by URL's target (what the purge index selects by) and what the
/// selected keys must match besides, the rules of [`UrlPurge`].
fn url_matcher(url: &str) -> Option<(String, ResourceMatch)> {
    let url = UrlPurge::parse(url)?;
    let target = url.target().to_string();
    Some((
        target,
        Box::new(move |scheme: &str, host: &str, target: &str| url.matches(scheme, host, target)),
    ))
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::path::PathBuf;

    use bytes::Bytes;

    use super::*;
    use crate::cache::body::StoredBody;
    use crate::cache::disk::format::{Meta, read_header};
    use crate::cache::disk::write::write_file;

    /// Writes and indexes a file for `key` carrying `tags`, as a write
    /// that began at `generation` does; returns its path.
    fn put(tier: &DiskTier, key: &CacheKey, tags: &[&str], generation: u64) -> PathBuf {
        let mut meta = Meta::sample();
        meta.key = key.clone();
        meta.vary.clear();
        meta.surrogate_keys = tags.iter().map(|t| t.to_string()).collect();
        let (path, tmp) = tier.paths(&meta);
        let body = StoredBody::Memory(Bytes::from_static(b"body"));
        let header = write_file(&tmp, &path, &meta, &body).unwrap();
        tier.index_written(path.clone(), header, generation);
        path
    }

    fn tier(dir: &std::path::Path) -> DiskTier {
        let tier = DiskTier::open(dir, 1 << 20, 1 << 20, None).unwrap();
        tier.rebuild();
        tier
    }

    fn key(tenant: &str, app: &str, scheme: &str, target: &str) -> CacheKey {
        CacheKey::new(tenant, app, scheme, "x.test", target)
    }

    fn soft_flag(path: &PathBuf) -> bool {
        read_header(&File::open(path).unwrap()).unwrap().soft_purged
    }

    #[test]
    fn a_purge_by_key_touches_only_that_keys_files() {
        let dir = tempfile::tempdir().unwrap();
        let tier = tier(dir.path());
        let red = key("t", "a", "https", "/red");
        let blue = key("t", "a", "https", "/blue");
        let other_app = key("t", "b", "https", "/red");
        let foreign = key("u", "a", "https", "/red");
        let at = |k: &CacheKey| tier.generation(k);
        let red_file = put(&tier, &red, &["red", "shared"], at(&red));
        let blue_file = put(&tier, &blue, &["blue", "shared"], at(&blue));
        let other_file = put(&tier, &other_app, &["red"], at(&other_app));
        let foreign_file = put(&tier, &foreign, &["red"], at(&foreign));
        // In the index but never recorded in the purge index: a purge that
        // walked the index would find it, one that selects by key does not.
        let unrecorded = key("t", "a", "https", "/walked");
        let unrecorded_file = put(&tier, &unrecorded, &["red"], at(&unrecorded));
        tier.purges.forget(
            &unrecorded,
            super::super::index::value_id(&tier.index.get(&unrecorded).unwrap()),
        );

        assert_eq!(tier.purge_app("t", "a", Some("red"), true), 1);
        tier.settle();
        assert!(soft_flag(&red_file), "the tagged file is marked on disk");
        for untouched in [&blue_file, &other_file, &foreign_file, &unrecorded_file] {
            assert!(!soft_flag(untouched), "{} was touched", untouched.display());
        }

        assert_eq!(tier.purge_app("t", "a", Some("red"), false), 1);
        tier.settle();
        assert!(!red_file.exists() && tier.index.get(&red).is_none());
        for kept in [&blue_file, &other_file, &foreign_file, &unrecorded_file] {
            assert!(kept.exists(), "{} was removed", kept.display());
        }
        // A key no file carries, and the same key in an app with none.
        assert_eq!(tier.purge_app("t", "a", Some("absent"), false), 0);
        assert_eq!(tier.purge_app("t", "c", Some("shared"), false), 0);
        assert_eq!(tier.purge_app("t", "a", Some("shared"), false), 1);
        tier.settle();
        assert!(!blue_file.exists());
        assert!(other_file.exists() && foreign_file.exists());
    }

    #[test]
    fn a_purge_by_url_selects_its_target_and_matches_scheme_and_host() {
        let dir = tempfile::tempdir().unwrap();
        let tier = tier(dir.path());
        let page = key("t", "a", "https", "/p?q=1");
        let fetched = key("t", "a", "fetch+https", "/p?q=1");
        let plain = key("t", "a", "http", "/p?q=1");
        let other = key("t", "a", "https", "/p");
        let files: Vec<PathBuf> = [&page, &fetched, &plain, &other]
            .iter()
            .map(|k| put(&tier, k, &[], tier.generation(k)))
            .collect();
        assert_eq!(tier.purge_url("t", "a", "not a url", false), 0);
        assert_eq!(tier.purge_url("t", "a", "https://x.test/p?q=1", false), 2);
        tier.settle();
        let exists: Vec<bool> = files.iter().map(|f| f.exists()).collect();
        assert_eq!(exists, [false, false, true, true]);
        assert_eq!(tier.purge_url("t", "a", "/p?q=1", false), 1);
        tier.settle();
        assert!(!files[2].exists() && files[3].exists());
    }

    #[test]
    fn a_write_begun_before_a_purge_of_its_app_is_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let tier = tier(dir.path());
        let k = key("t", "a", "https", "/");
        let elsewhere = key("t", "b", "https", "/");
        let (since, elsewhere_since) = (tier.generation(&k), tier.generation(&elsewhere));
        // Purges of the app (even ones that select nothing) move it on.
        assert_eq!(tier.purge_url("t", "a", "/nothing-here", false), 0);
        let late = put(&tier, &k, &[], since);
        tier.settle();
        assert!(!late.exists() && tier.index.get(&k).is_none());
        let kept = put(&tier, &elsewhere, &[], elsewhere_since);
        assert!(
            kept.exists(),
            "another app's purge does not drop this write"
        );
        let now = put(&tier, &k, &[], tier.generation(&k));
        assert!(now.exists() && tier.index.get(&k).is_some());
        tier.forget_app("t", "a");
        tier.settle();
        assert!(!now.exists());
        let later = put(&tier, &k, &[], since + 1);
        tier.settle();
        assert!(!later.exists());
    }
}
