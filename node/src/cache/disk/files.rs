//! File deletions and soft-purge flag writes, off the async workers: the
//! index's eviction listener, purges and the read-error path run on them
//! (moka runs the listener inside whatever call triggered it), and an
//! unlink or a pwrite can block for as long as the disk wants. They go to
//! one background thread through a bounded channel. When the channel is
//! full the job runs on a blocking-pool thread instead (or here, outside
//! a runtime): a delete is never dropped, and a file whose delete failed
//! anyway is found by the next startup scan (which checks every file
//! against the index it rebuilds, and the purges that ran).
//!
//! One plain thread rather than a task per job: jobs are tiny and ordered
//! per file (a flag write then a delete of the same file must not swap).

use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};

use super::format::{FLAG_SOFT_PURGED, FLAGS_OFFSET};

/// Jobs queued for the thread; past it they run on the blocking pool.
const QUEUE: usize = 4096;

enum Job {
    Remove(PathBuf),
    MarkSoft(PathBuf),
    /// Answered once every job queued before it has run (tests).
    #[cfg(test)]
    Barrier(std::sync::mpsc::Sender<()>),
}

impl Job {
    fn run(self) {
        match self {
            Job::Remove(path) => remove_now(&path),
            Job::MarkSoft(path) => mark_soft_now(&path),
            #[cfg(test)]
            Job::Barrier(done) => {
                let _ = done.send(());
            }
        }
    }
}

/// The sending half; the thread ends when every clone is gone.
#[derive(Clone)]
pub(super) struct FileJobs {
    tx: SyncSender<Job>,
}

impl FileJobs {
    pub(super) fn start() -> io::Result<Self> {
        let (tx, rx) = sync_channel::<Job>(QUEUE);
        std::thread::Builder::new()
            .name("cache-disk-io".into())
            .spawn(move || {
                for job in rx {
                    job.run();
                }
            })?;
        Ok(Self { tx })
    }

    /// Deletes `path` (already gone is fine).
    pub(super) fn remove(&self, path: PathBuf) {
        self.send(Job::Remove(path));
    }

    /// Sets the soft-purge flag in the file at `path` (so that it survives
    /// a restart); the index's flag, set by the caller, is authoritative
    /// meanwhile.
    pub(super) fn mark_soft(&self, path: PathBuf) {
        self.send(Job::MarkSoft(path));
    }

    fn send(&self, job: Job) {
        let job = match self.tx.try_send(job) {
            Ok(()) => return,
            Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => job,
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn_blocking(move || job.run());
            }
            // Not on a runtime thread: blocking here blocks no async work.
            Err(_) => job.run(),
        }
    }

    /// Waits until every job queued so far has run.
    #[cfg(test)]
    pub(super) fn flush(&self) {
        let (done, wait) = std::sync::mpsc::channel();
        if self.tx.send(Job::Barrier(done)).is_ok() {
            let _ = wait.recv();
        }
    }
}

pub(super) fn remove_now(path: &Path) {
    if let Err(err) = std::fs::remove_file(path)
        && err.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), error = %err, "cannot remove cache file");
    }
}

fn mark_soft_now(path: &Path) {
    let written = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| f.write_all_at(&[FLAG_SOFT_PURGED], FLAGS_OFFSET));
    if let Err(err) = written {
        // Gone already (evicted meanwhile) is fine; anything else means a
        // restart would forget the purge: drop the file instead.
        if err.kind() != io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), error = %err, "cannot mark cache file soft-purged; removing it");
            remove_now(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_runs_jobs_elsewhere_and_drops_none() {
        let dir = tempfile::tempdir().unwrap();
        let jobs = FileJobs::start().unwrap();
        let paths: Vec<PathBuf> = (0..QUEUE + 64)
            .map(|i| dir.path().join(format!("f{i}")))
            .collect();
        for path in &paths {
            std::fs::write(path, b"x").unwrap();
        }
        // More than the queue holds, from outside a runtime: the overflow
        // runs inline, the rest on the thread.
        for path in &paths {
            jobs.remove(path.clone());
        }
        jobs.flush();
        assert!(paths.iter().all(|p| !p.exists()));
        // A flag write to a file that is gone is not an error, and does
        // not create it.
        jobs.mark_soft(paths[0].clone());
        jobs.flush();
        assert!(!paths[0].exists());
    }
}
