//! Durable file writes, for everything a crash must not leave half written:
//! control-plane keys and blobs, a node's stored snapshot and artifacts.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Writes `bytes` to `target` so that after a crash it holds either its old
/// content or all of `bytes`: write `tmp` (created with `mode`), fsync,
/// rename over `target`, fsync the directory. `mode` is filtered by the
/// umask as usual (0o666 gives what `File::create` gives). A directory created for
/// `target` is itself made durable in its parent. `tmp` is removed if any
/// step fails, and before the write: a leftover of a crashed write would
/// keep its own mode when opened again (`mode` applies only to a new file),
/// and a private key written over it would be as readable as it was.
pub fn write_atomically(tmp: &Path, target: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = target
        .parent()
        .ok_or_else(|| std::io::Error::other("the target has no parent directory"))?;
    if !dir.exists() {
        std::fs::create_dir_all(dir)?;
        if let Some(parent) = dir.parent() {
            std::fs::File::open(parent)?.sync_all()?;
        }
    }
    let result = (|| {
        match std::fs::remove_file(tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        // `create_new`: were another file put there since, it is not
        // written through.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(tmp)?;
        // In two halves, with a crash point between them: the chaos tests
        // kill a process here, with half the bytes in `tmp`.
        let (first, rest) = bytes.split_at(bytes.len() / 2);
        file.write_all(first)?;
        crate::chaos::hold(|| format!("write {}", target.display()));
        file.write_all(rest)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(tmp, target)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn writes_replace_whole_files_and_create_directories() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a/b/file");
        let tmp = dir.path().join("file.tmp");
        write_atomically(&tmp, &target, b"one", 0o600).unwrap();
        write_atomically(&tmp, &target, b"two", 0o600).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"two");
        assert!(!tmp.exists());
        let mode = std::fs::metadata(&target).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_leftover_tmp_file_does_not_lend_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("key");
        let tmp = dir.path().join("key.tmp");
        // A crashed write left a world-readable tmp file behind.
        std::fs::write(&tmp, b"old and long leftover").unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_atomically(&tmp, &target, b"secret", 0o600).unwrap();
        let mode = std::fs::metadata(&target).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read(&target).unwrap(), b"secret");
        assert!(!tmp.exists());
    }
}
