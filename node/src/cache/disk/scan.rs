//! The startup scan: every file's header is read into the index (in a
//! background task: the node serves meanwhile, and what is not indexed
//! yet misses); unreadable, truncated, wrong-version or foreign files are
//! deleted. Purges that arrive during the scan are remembered and replayed
//! once it ends, so a file indexed after a purge ran does not escape it.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use super::format::{FormatError, read_header};
use super::{DiskTier, remove_file};
use crate::cache::key::CacheKey;

/// Purges remembered while the startup scan runs.
const MAX_REPLAYS: usize = 4096;

/// A purge that ran during the startup scan, replayed when it ends.
pub(super) enum Replay {
    Key(CacheKey, bool),
    App(String, String, Option<String>, bool),
    Url(String, String, String, bool),
    Forget(String, String),
}

impl DiskTier {
    /// Reads every file's header into the index, deleting what cannot be
    /// used, then replays the purges that arrived meanwhile. Blocking: run
    /// it with `spawn_blocking`.
    pub fn rebuild(&self) {
        let (mut kept, mut dropped) = (0u64, 0u64);
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
                match File::open(&path)
                    .map_err(FormatError::from)
                    .and_then(|f| read_header(&f))
                {
                    Ok(header) => {
                        self.index_insert(path, header, None);
                        kept += 1;
                    }
                    Err(err) => {
                        tracing::debug!(path = %path.display(), error = %err, "dropping unusable cache file");
                        remove_file(&path);
                        dropped += 1;
                    }
                }
            }
        }
        let replays = self
            .replays
            .lock()
            .map(|mut r| r.take())
            .unwrap_or_default();
        if self.replays_overflowed.load(Ordering::Relaxed) {
            // Too many purges to remember during the scan: forget it all
            // rather than serve something one of them removed.
            self.index.invalidate_all();
        }
        for replay in replays.unwrap_or_default() {
            match replay {
                Replay::Key(key, soft) => {
                    self.purge_key(&key, soft);
                }
                Replay::App(tenant, app, tag, soft) => {
                    self.purge_app(&tenant, &app, tag.as_deref(), soft);
                }
                Replay::Url(tenant, app, url, soft) => {
                    self.purge_url(&tenant, &app, &url, soft);
                }
                Replay::Forget(tenant, app) => self.forget_app(&tenant, &app),
            }
        }
        self.index.run_pending_tasks();
        tracing::info!(
            files = kept,
            dropped,
            bytes = self.weighted_bytes(),
            "cache disk tier indexed"
        );
    }

    /// Remembers a purge for replay if the startup scan is running.
    pub(super) fn remember(&self, replay: impl FnOnce() -> Replay) {
        if let Ok(mut replays) = self.replays.lock()
            && let Some(list) = replays.as_mut()
        {
            if list.len() < MAX_REPLAYS {
                list.push(replay());
            } else {
                self.replays_overflowed.store(true, Ordering::Relaxed);
            }
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
