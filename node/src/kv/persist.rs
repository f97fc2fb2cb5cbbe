//! The replica on disk (`data_dir/kv/replica.bin`), so a node restarted
//! while its control plane is down still serves reads (static stability,
//! as the stored snapshot does for apps).
//!
//! A length-prefixed binary file rather than JSON: values are arbitrary
//! bytes (base64 would add a third) and a replica may hold hundreds of MiB.
//! Written whole and atomically (edge_common::fsutil) while changes arrive,
//! off the async workers: at most once a second, and less often the larger
//! the replica (a write costs time in proportion to its size). The copy it
//! encodes is the replica's persistent maps cloned in O(1) under the read
//! lock, so neither the stream nor readers wait for the encoding.
//!
//! Layout: `MAGIC`, epoch (u32 length + UTF-8), seq (u64), entry count
//! (u64), then per entry: store, key (u32 length + UTF-8 each), seq (u64),
//! a flag (1 = value follows, 0 = tombstone) and the value (u32 length +
//! bytes); `MAGIC` again last, so a file cut short is noticed. Integers
//! big-endian.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;

use super::replica::{Entry, Replica, State};

const MAGIC: &[u8; 8] = b"EDGEKV01";
/// Tenants' data: readable by the node's user only.
const FILE_MODE: u32 = 0o600;
/// How often, at most, the replica is written while it changes.
const PERSIST_EVERY: Duration = Duration::from_secs(1);
/// Replica bytes per extra second between writes: a 256 MiB replica that
/// keeps changing is written every 8 s, not every second.
const BYTES_PER_SECOND_OF_INTERVAL: u64 = 32 << 20;

/// The pause before the next write of a replica of `bytes`.
fn interval(bytes: u64) -> Duration {
    PERSIST_EVERY.max(Duration::from_secs(bytes / BYTES_PER_SECOND_OF_INTERVAL))
}

pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("kv").join("replica.bin")
}

pub fn encode(state: &State) -> Vec<u8> {
    let mut out = Vec::with_capacity(state.bytes as usize + 64);
    out.extend_from_slice(MAGIC);
    put_str(&mut out, &state.epoch);
    out.extend_from_slice(&state.seq.to_be_bytes());
    let count: usize = state.stores.values().map(|m| m.len()).sum();
    out.extend_from_slice(&(count as u64).to_be_bytes());
    for (store, map) in &state.stores {
        for (key, entry) in map {
            put_str(&mut out, store);
            put_str(&mut out, key);
            out.extend_from_slice(&entry.seq.to_be_bytes());
            match &entry.value {
                Some(value) => {
                    out.push(1);
                    put_bytes(&mut out, value);
                }
                None => out.push(0),
            }
        }
    }
    out.extend_from_slice(MAGIC);
    out
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_bytes(out, s.as_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not a replica file (or a truncated one)")]
    Format,
    #[error("it holds more than [kv] max_replica_bytes allows")]
    TooLarge,
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.bytes.len() < n {
            return Err(DecodeError::Format);
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        let mut b = [0; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(b))
    }

    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let mut b = [0; 4];
        b.copy_from_slice(self.take(4)?);
        self.take(u32::from_be_bytes(b) as usize)
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| DecodeError::Format)
    }
}

pub fn decode(bytes: &[u8], max_bytes: u64) -> Result<State, DecodeError> {
    let mut r = Reader { bytes };
    if r.take(8)? != MAGIC {
        return Err(DecodeError::Format);
    }
    let epoch = r.string()?;
    let seq = r.u64()?;
    let count = r.u64()?;
    let mut state = State::new(epoch, seq);
    for _ in 0..count {
        let store = r.string()?;
        let key = r.string()?;
        let entry_seq = r.u64()?;
        let value = match r.take(1)?[0] {
            1 => Some(Bytes::copy_from_slice(r.bytes()?)),
            0 => None,
            _ => return Err(DecodeError::Format),
        };
        let entry = Entry {
            value,
            seq: entry_seq,
        };
        state
            .put(&store, &key, entry, max_bytes)
            .map_err(|_| DecodeError::TooLarge)?;
    }
    if r.take(8)? != MAGIC || !r.bytes.is_empty() {
        return Err(DecodeError::Format);
    }
    Ok(state)
}

/// The stored replica, if there is a usable one. A file that cannot be
/// read is logged and ignored: the stream then starts from a snapshot.
pub fn load(data_dir: &Path, max_bytes: u64) -> Option<State> {
    let path = path(data_dir);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "cannot read the stored key-value replica; starting empty");
            return None;
        }
    };
    match decode(&bytes, max_bytes) {
        Ok(state) => Some(state),
        Err(e @ DecodeError::TooLarge) => {
            // Not damage: the bound was lowered below what the replica
            // holds. The node starts unsynced and a snapshot will not fit
            // either until the setting is raised again.
            tracing::error!(path = %path.display(), error = %e, max_replica_bytes = max_bytes, "configuration error: [kv] max_replica_bytes is smaller than the stored key-value replica; starting empty");
            None
        }
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "the stored key-value replica is unusable; starting empty");
            None
        }
    }
}

pub fn store(data_dir: &Path, state: &State) -> std::io::Result<()> {
    let target = path(data_dir);
    let tmp = target.with_extension("bin.tmp");
    edge_common::fsutil::write_atomically(&tmp, &target, &encode(state), FILE_MODE)
}

/// Writes the replica whenever it changed, at most every
/// [`PERSIST_EVERY`], and once more at shutdown.
pub async fn run(
    replica: std::sync::Arc<Replica>,
    data_dir: PathBuf,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut written = replica.version();
    let mut pause = PERSIST_EVERY;
    loop {
        let stopping = tokio::select! {
            _ = tokio::time::sleep(pause) => false,
            _ = crate::shutdown::stopped(&mut shutdown) => true,
        };
        let version = replica.version();
        if version != written {
            let state = replica.clone_state();
            pause = interval(state.bytes);
            let dir = data_dir.clone();
            let result = tokio::task::spawn_blocking(move || store(&dir, &state)).await;
            match result {
                Ok(Ok(())) => written = version,
                Ok(Err(e)) => tracing::error!(error = %e, "cannot store the key-value replica"),
                Err(e) => tracing::error!(error = %e, "the key-value persist task failed"),
            }
        }
        if stopping {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_common::kv::{KvChange, KvValue};

    #[test]
    fn a_replica_survives_a_round_trip_through_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let replica = Replica::new(State::new("epoch-1".into(), 0), 1 << 20);
        let changes = [
            KvChange {
                seq: 1,
                store: "s1".into(),
                key: Some("k".into()),
                value: Some(KvValue(vec![0, 1, 2, 255])),
            },
            KvChange {
                seq: 2,
                store: "s2".into(),
                key: Some("ключ".into()),
                value: Some(KvValue(Vec::new())),
            },
        ];
        replica.apply_batch("epoch-1", 2, changes.to_vec()).unwrap();
        // A tombstone newer than the stream's position is kept.
        replica
            .apply_write(
                "epoch-1",
                vec![KvChange {
                    seq: 5,
                    store: "s1".into(),
                    key: Some("gone".into()),
                    value: None,
                }],
            )
            .unwrap();
        store(dir.path(), &replica.clone_state()).unwrap();
        let loaded = load(dir.path(), 1 << 20).unwrap();
        let original = replica.clone_state();
        assert_eq!(loaded.epoch, "epoch-1");
        assert_eq!(loaded.seq, 2);
        assert_eq!(loaded.stores, original.stores);
        assert_eq!((loaded.bytes, loaded.keys), (original.bytes, original.keys));
        let mode = std::fs::metadata(path(dir.path())).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn a_damaged_or_oversized_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = State::new("e".into(), 3);
        state
            .put(
                "s",
                "k",
                Entry {
                    value: Some(Bytes::from_static(b"value")),
                    seq: 3,
                },
                1 << 20,
            )
            .unwrap();
        let bytes = encode(&state);
        assert!(matches!(
            decode(&bytes[..bytes.len() - 1], 1 << 20),
            Err(DecodeError::Format)
        ));
        assert!(matches!(
            decode(b"garbage", 1 << 20),
            Err(DecodeError::Format)
        ));
        assert!(matches!(decode(&bytes, 3), Err(DecodeError::TooLarge)));
        std::fs::create_dir_all(dir.path().join("kv")).unwrap();
        std::fs::write(path(dir.path()), &bytes[..20]).unwrap();
        assert!(load(dir.path(), 1 << 20).is_none());
        assert!(load(&dir.path().join("absent"), 1 << 20).is_none());
    }

    #[test]
    fn a_larger_replica_is_written_less_often() {
        assert_eq!(interval(0), PERSIST_EVERY);
        assert_eq!(interval(256 << 20), Duration::from_secs(8));
    }

    #[test]
    fn a_stored_tombstone_the_position_passed_is_not_loaded() {
        let mut state = State::new("e".into(), 0);
        state
            .put(
                "s",
                "gone",
                Entry {
                    value: None,
                    seq: 4,
                },
                1 << 20,
            )
            .unwrap();
        state.seq = 9;
        let loaded = decode(&encode(&state), 1 << 20).unwrap();
        assert!(loaded.stores.is_empty());
        assert_eq!((loaded.bytes, loaded.pending_tombstones()), (0, 0));
    }
}
