//! The file layout: a fixed prefix (magic, format version, a soft-purge
//! flag byte at a fixed offset, the header's and body's lengths), a header
//! (the full key, status, header fields, received times, Vary values,
//! surrogate keys) and the body; and its parsing, which refuses anything
//! truncated, of another version, foreign or lying about its sizes.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::HeaderName;
use http::{HeaderMap, HeaderValue, StatusCode};

use crate::cache::key::CacheKey;
use crate::cache::policy::Received;
use crate::cache::store::Entry;

/// First bytes of every file.
const MAGIC: &[u8; 4] = b"EDGC";
/// The file format's version; a file of another version is deleted.
pub const FORMAT_VERSION: u16 = 1;
/// magic (4), version (2), flags (1), reserved (1), header length (4),
/// body length (8).
pub(super) const PREFIX_LEN: usize = 20;
/// Where the flag byte is: a soft purge rewrites this byte only.
pub(super) const FLAGS_OFFSET: u64 = 6;
pub(super) const FLAG_SOFT_PURGED: u8 = 1;
pub(super) const BODY_LEN_OFFSET: u64 = 12;
/// Body length written while a streamed body is still arriving.
pub(super) const INCOMPLETE: u64 = u64::MAX;
/// A header larger than this is not ours (or corrupt).
const MAX_HEADER_BYTES: usize = 1 << 20;

/// Why a file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    #[error("not a cache file")]
    Magic,
    #[error("format version {0}, expected {FORMAT_VERSION}")]
    Version(u16),
    #[error("truncated or incomplete file")]
    Truncated,
    #[error("malformed header: {0}")]
    Header(&'static str),
}

/// What a file says about its response, besides the body.
#[derive(Debug, Clone)]
pub struct Meta {
    pub key: CacheKey,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub received: Received,
    pub vary: Vec<(String, Option<HeaderValue>)>,
    pub surrogate_keys: Vec<String>,
}

impl Meta {
    pub fn from_entry(key: &CacheKey, entry: &Entry) -> Self {
        Self {
            key: key.clone(),
            status: entry.status,
            headers: entry.headers.clone(),
            received: entry.received,
            vary: entry.vary.clone(),
            surrogate_keys: entry.surrogate_keys.clone(),
        }
    }

    pub(super) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        put_bytes(&mut out, self.key.as_str().as_bytes());
        out.extend_from_slice(&self.status.as_u16().to_le_bytes());
        put_time(&mut out, self.received.request_time);
        put_time(&mut out, self.received.response_time);
        put_u32(&mut out, self.headers.len());
        for (name, value) in &self.headers {
            put_bytes(&mut out, name.as_str().as_bytes());
            put_bytes(&mut out, value.as_bytes());
        }
        put_u32(&mut out, self.vary.len());
        for (name, value) in &self.vary {
            put_bytes(&mut out, name.as_bytes());
            match value {
                Some(value) => {
                    out.push(1);
                    put_bytes(&mut out, value.as_bytes());
                }
                None => out.push(0),
            }
        }
        put_u32(&mut out, self.surrogate_keys.len());
        for key in &self.surrogate_keys {
            put_bytes(&mut out, key.as_bytes());
        }
        out
    }

    fn decode(mut input: &[u8]) -> Result<Self, FormatError> {
        let r = &mut input;
        let key = String::from_utf8(take_bytes(r)?.to_vec())
            .ok()
            .and_then(CacheKey::from_stored)
            .ok_or(FormatError::Header("key"))?;
        let status = StatusCode::from_u16(u16::from_le_bytes(take_array(r)?))
            .map_err(|_| FormatError::Header("status"))?;
        let received = Received {
            request_time: take_time(r)?,
            response_time: take_time(r)?,
        };
        let mut headers = HeaderMap::new();
        for _ in 0..take_count(r)? {
            let name = HeaderName::from_bytes(take_bytes(r)?)
                .map_err(|_| FormatError::Header("header name"))?;
            let value = HeaderValue::from_bytes(take_bytes(r)?)
                .map_err(|_| FormatError::Header("header value"))?;
            headers.append(name, value);
        }
        let mut vary = Vec::new();
        for _ in 0..take_count(r)? {
            let name = std::str::from_utf8(take_bytes(r)?)
                .map_err(|_| FormatError::Header("vary name"))?
                .to_string();
            let value = match take_array::<1>(r)?[0] {
                0 => None,
                _ => Some(
                    HeaderValue::from_bytes(take_bytes(r)?)
                        .map_err(|_| FormatError::Header("vary value"))?,
                ),
            };
            vary.push((name, value));
        }
        let mut surrogate_keys = Vec::new();
        for _ in 0..take_count(r)? {
            surrogate_keys.push(
                std::str::from_utf8(take_bytes(r)?)
                    .map_err(|_| FormatError::Header("surrogate key"))?
                    .to_string(),
            );
        }
        if !r.is_empty() {
            return Err(FormatError::Header("trailing bytes"));
        }
        Ok(Self {
            key,
            status,
            headers,
            received,
            vary,
            surrogate_keys,
        })
    }
}

fn put_u32(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_u32(out, bytes.len());
    out.extend_from_slice(bytes);
}

fn put_time(out: &mut Vec<u8>, time: SystemTime) {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    out.extend_from_slice(&since.as_secs().to_le_bytes());
    out.extend_from_slice(&since.subsec_nanos().to_le_bytes());
}

fn take_array<const N: usize>(input: &mut &[u8]) -> Result<[u8; N], FormatError> {
    let (head, rest) = input
        .split_first_chunk::<N>()
        .ok_or(FormatError::Header("short"))?;
    *input = rest;
    Ok(*head)
}

fn take_count(input: &mut &[u8]) -> Result<usize, FormatError> {
    let n = u32::from_le_bytes(take_array(input)?) as usize;
    // Every counted item takes at least 4 bytes: a count larger than what
    // is left is corrupt (and must not size an allocation).
    if n > input.len() / 4 {
        return Err(FormatError::Header("count"));
    }
    Ok(n)
}

fn take_bytes<'a>(input: &mut &'a [u8]) -> Result<&'a [u8], FormatError> {
    let n = u32::from_le_bytes(take_array(input)?) as usize;
    if n > input.len() {
        return Err(FormatError::Header("length"));
    }
    let (head, rest) = input.split_at(n);
    *input = rest;
    Ok(head)
}

fn take_time(input: &mut &[u8]) -> Result<SystemTime, FormatError> {
    let secs = u64::from_le_bytes(take_array(input)?);
    let nanos = u32::from_le_bytes(take_array(input)?);
    if nanos >= 1_000_000_000 {
        return Err(FormatError::Header("time"));
    }
    UNIX_EPOCH
        .checked_add(Duration::new(secs, nanos))
        .ok_or(FormatError::Header("time"))
}

/// The fixed prefix of a file with `header_len` bytes of header.
pub(super) fn prefix(header_len: usize, body_len: u64, flags: u8) -> [u8; PREFIX_LEN] {
    let mut prefix = [0u8; PREFIX_LEN];
    prefix[..4].copy_from_slice(MAGIC);
    prefix[4..6].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    prefix[6] = flags;
    prefix[8..12].copy_from_slice(&u32::try_from(header_len).unwrap_or(u32::MAX).to_le_bytes());
    prefix[12..20].copy_from_slice(&body_len.to_le_bytes());
    prefix
}

/// A file's header, read and checked against the file's size.
#[derive(Debug)]
pub struct FileHeader {
    pub meta: Meta,
    pub soft_purged: bool,
    pub body_offset: u64,
    pub body_len: u64,
    pub file_len: u64,
}

/// Reads the prefix and header of `file` (never the body).
pub fn read_header(file: &File) -> Result<FileHeader, FormatError> {
    let file_len = file.metadata()?.len();
    let mut prefix = [0u8; PREFIX_LEN];
    file.read_exact_at(&mut prefix, 0)
        .map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => FormatError::Truncated,
            _ => FormatError::Io(e),
        })?;
    let layout = Layout::of(&prefix, file_len)?;
    let mut header = vec![0u8; layout.header_len];
    file.read_exact_at(&mut header, PREFIX_LEN as u64)?;
    Ok(layout.with(Meta::decode(&header)?))
}

/// The header of a whole file already in memory; its body is
/// `file[body_offset..]`.
pub fn parse_file(file: &[u8]) -> Result<FileHeader, FormatError> {
    let prefix: &[u8; PREFIX_LEN] = file
        .get(..PREFIX_LEN)
        .and_then(|p| p.try_into().ok())
        .ok_or(FormatError::Truncated)?;
    let layout = Layout::of(prefix, file.len() as u64)?;
    let header = &file[PREFIX_LEN..PREFIX_LEN + layout.header_len];
    Ok(layout.with(Meta::decode(header)?))
}

/// What a file's prefix says, checked against the file's size.
struct Layout {
    header_len: usize,
    body_len: u64,
    file_len: u64,
    soft_purged: bool,
}

impl Layout {
    fn of(prefix: &[u8; PREFIX_LEN], file_len: u64) -> Result<Self, FormatError> {
        if &prefix[..4] != MAGIC {
            return Err(FormatError::Magic);
        }
        let version = u16::from_le_bytes([prefix[4], prefix[5]]);
        if version != FORMAT_VERSION {
            return Err(FormatError::Version(version));
        }
        let header_len =
            u32::from_le_bytes([prefix[8], prefix[9], prefix[10], prefix[11]]) as usize;
        let mut body_len = [0u8; 8];
        body_len.copy_from_slice(&prefix[12..20]);
        let body_len = u64::from_le_bytes(body_len);
        if header_len > MAX_HEADER_BYTES {
            return Err(FormatError::Header("too large"));
        }
        let body_offset = (PREFIX_LEN + header_len) as u64;
        if body_len == INCOMPLETE || body_offset.checked_add(body_len) != Some(file_len) {
            return Err(FormatError::Truncated);
        }
        Ok(Self {
            header_len,
            body_len,
            file_len,
            soft_purged: prefix[6] & FLAG_SOFT_PURGED != 0,
        })
    }

    fn with(self, meta: Meta) -> FileHeader {
        FileHeader {
            meta,
            soft_purged: self.soft_purged,
            body_offset: (PREFIX_LEN + self.header_len) as u64,
            body_len: self.body_len,
            file_len: self.file_len,
        }
    }
}

#[cfg(test)]
impl Meta {
    /// A response with header fields, Vary values and surrogate keys.
    pub(crate) fn sample() -> Self {
        let mut headers = HeaderMap::new();
        headers.insert("cache-control", HeaderValue::from_static("max-age=60"));
        headers.append("x-multi", HeaderValue::from_static("a"));
        headers.append("x-multi", HeaderValue::from_bytes(b"b\xff").unwrap());
        let now = SystemTime::now();
        Self {
            key: CacheKey::new("t", "a", "https", "x.test", "/p?q=1"),
            status: StatusCode::OK,
            headers,
            received: Received {
                request_time: now - Duration::from_millis(5),
                response_time: now,
            },
            vary: vec![
                (
                    "accept-language".into(),
                    Some(HeaderValue::from_static("en")),
                ),
                ("x-absent".into(), None),
            ],
            surrogate_keys: vec!["red".into(), "blue".into()],
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use bytes::Bytes;

    use super::*;
    use crate::cache::body::StoredBody;
    use crate::cache::disk::write::write_file;

    fn write(dir: &Path, meta: &Meta, body: &'static [u8]) -> PathBuf {
        let path = dir.join("f");
        write_file(
            &dir.join("tmp-f"),
            &path,
            meta,
            &StoredBody::Memory(Bytes::from_static(body)),
        )
        .unwrap();
        path
    }

    /// The file at `path` through both parsers: from the open file, and
    /// whole from memory.
    fn parsed(path: &Path) -> [Result<FileHeader, FormatError>; 2] {
        [
            read_header(&File::open(path).unwrap()),
            parse_file(&std::fs::read(path).unwrap()),
        ]
    }

    #[test]
    fn a_file_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Meta::sample();
        let path = write(dir.path(), &meta, b"hello body");
        let [from_file, from_memory] = parsed(&path);
        let (header, whole) = (from_file.unwrap(), from_memory.unwrap());
        assert_eq!(whole.meta.key, meta.key);
        assert_eq!(whole.meta.headers, meta.headers);
        assert_eq!(whole.meta.vary, meta.vary);
        assert_eq!(
            (whole.body_offset, whole.body_len, whole.file_len),
            (header.body_offset, header.body_len, header.file_len)
        );
        assert_eq!(header.meta.key, meta.key);
        assert_eq!(header.meta.status, meta.status);
        assert_eq!(header.meta.headers, meta.headers);
        assert_eq!(
            header.meta.received.request_time,
            meta.received.request_time
        );
        assert_eq!(
            header.meta.received.response_time,
            meta.received.response_time
        );
        assert_eq!(header.meta.vary, meta.vary);
        assert_eq!(header.meta.surrogate_keys, meta.surrogate_keys);
        assert!(!header.soft_purged);
        assert_eq!(header.body_len, 10);
        let mut body = vec![0u8; 10];
        File::open(&path)
            .unwrap()
            .read_exact_at(&mut body, header.body_offset)
            .unwrap();
        assert_eq!(body, b"hello body");
        assert!(!dir.path().join("tmp-f").exists(), "renamed into place");
    }

    #[test]
    fn truncated_extended_and_incomplete_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), &Meta::sample(), b"hello body");
        let full = std::fs::read(&path).unwrap();
        for cut in [0, 3, PREFIX_LEN - 1, PREFIX_LEN + 5, full.len() - 1] {
            std::fs::write(&path, &full[..cut]).unwrap();
            for result in parsed(&path) {
                let err = result.unwrap_err();
                assert!(matches!(err, FormatError::Truncated), "cut at {cut}: {err}");
            }
        }
        let mut longer = full.clone();
        longer.push(b'!');
        std::fs::write(&path, &longer).unwrap();
        for result in parsed(&path) {
            assert!(matches!(result, Err(FormatError::Truncated)));
        }
        let mut incomplete = full.clone();
        incomplete[12..20].copy_from_slice(&INCOMPLETE.to_le_bytes());
        std::fs::write(&path, &incomplete).unwrap();
        for result in parsed(&path) {
            assert!(matches!(result, Err(FormatError::Truncated)));
        }
    }

    #[test]
    fn other_versions_foreign_files_and_garbage_headers_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), &Meta::sample(), b"x");
        let full = std::fs::read(&path).unwrap();
        let mut other = full.clone();
        other[4..6].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
        std::fs::write(&path, &other).unwrap();
        for result in parsed(&path) {
            assert!(matches!(result, Err(FormatError::Version(v)) if v == FORMAT_VERSION + 1));
        }
        std::fs::write(&path, b"GIF89a this is not ours at all").unwrap();
        for result in parsed(&path) {
            assert!(matches!(result, Err(FormatError::Magic)));
        }
        // A header whose counts and lengths lie (sizes still consistent).
        let mut garbage = full.clone();
        for b in &mut garbage[PREFIX_LEN..PREFIX_LEN + 4] {
            *b = 0xff;
        }
        std::fs::write(&path, &garbage).unwrap();
        for result in parsed(&path) {
            assert!(matches!(result, Err(FormatError::Header(_))));
        }
    }
}
