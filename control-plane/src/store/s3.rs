//! Blobs in an S3-compatible bucket (AWS S3, MinIO, Ceph RGW, s3s-fs…),
//! through the `object_store` crate: the scale-out twin of [`super::fs`].
//!
//! Layout under `s3://BUCKET/PREFIX`:
//!
//! | key | what |
//! |---|---|
//! | `PREFIX/blobs/<sha256>` | the blob's bytes, written by one PUT (S3 makes an object visible whole or not at all, so no partial blob is ever under its digest) |
//! | `PREFIX/touched/<sha256>` | a marker rewritten (with unique content) by every `put` and `touch` of the blob |
//! | `PREFIX/graves/<sha256>.<random>` | a server-side copy of a blob while a deletion decides whether it stands |
//!
//! Every read re-checks the digest: a corrupted or swapped object is
//! [`StoreError::Corrupt`], never returned.
//!
//! # Touch, and why a touched blob is never deleted
//!
//! S3 cannot change an object's modification time. Copying the object onto
//! itself would, but AWS refuses a self-copy unless the metadata changes
//! (`x-amz-metadata-directive: REPLACE`), which `object_store` cannot send,
//! and S3 has no conditional DELETE that `object_store` exposes either. So
//! a blob's modified time is the later of its object's and its marker's,
//! and `touch` writes the marker, then checks that the blob is there.
//!
//! `delete_if_unmodified_since(sha, cutoff)`:
//! 1. reads the marker (`m0`); modified after `cutoff`: kept;
//! 2. reads the blob; absent or modified after `cutoff`: kept;
//! 3. copies it to a grave (server-side), then 4. deletes it;
//! 5. reads the marker again: if it changed (ETag or time; every marker
//!    write has new content, so a new ETag), a `put` or `touch` came after
//!    step 1, and the blob is copied back from the grave. Then the grave
//!    goes.
//!
//! A `touch` (or `put`) writes its marker at `tm` and checks (or writes)
//! the blob after `tm`. If `tm` is before step 1, step 1 sees it (a touch
//! after the cutoff is newer than the cutoff) and nothing is deleted. If
//! `tm` is between steps 1 and 5, step 5 sees the marker changed and
//! restores the blob. If `tm` is after step 5, the touch's check comes
//! after the deletion (step 4) and finds the blob gone: `touch` answers
//! `false` and the upload stores it again (a `put` simply writes it). No
//! interleaving loses a blob that a `touch` reported present, for any
//! number of deleting replicas (each restores from its own grave). Step 5
//! compares the marker with itself, not with a clock; only step 1 compares
//! the S3 server's clock with ours, and the grace period (an hour) dwarfs
//! any skew.
//!
//! The remaining race: a deletion that dies between steps 4 and 5 (a
//! crash, the store unreachable) leaves the blob only in its grave. A
//! grave older than [`ORPHAN_GRAVE_AGE`] (far longer than a deletion's few
//! requests, each bounded by the client's timeouts) is such an orphan: the
//! start of every garbage-collection pass (`list` from the beginning)
//! copies it back and removes it. Restoring garbage is harmless (the blob
//! is young again and is collected a grace period later); a touch that
//! reported the blob present in that window sees it back within minutes.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use edge_common::signing::{is_sha256_hex, sha256_hex, to_hex};
use futures::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey, Checksum};
use object_store::path::Path;
use object_store::{
    BackoffConfig, ClientConfigKey, ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload,
    RetryConfig,
};

use super::{BlobInfo, BlobStore, MAX_BLOBS_LISTED, StoreError, StoreResult, now_unix};

/// A grave this old belongs to a deletion that died: its blob is restored.
/// A live deletion keeps a grave for a few requests (each at most
/// [`REQUEST_TIMEOUT`] times its retries); ten minutes is far beyond that.
pub const ORPHAN_GRAVE_AGE: Duration = Duration::from_secs(600);

/// Per request: a blob is at most the upload limit (64 MiB by default),
/// which a LAN or a cloud region moves in seconds.
const REQUEST_TIMEOUT: &str = "60s";
/// A store that does not accept a connection within this is down: the API
/// answers 503 rather than holding the request.
const CONNECT_TIMEOUT: &str = "3s";
/// `object_store` retries for up to 3 minutes by default; an API request
/// (and a node fetching an artifact) would hang that long on a store that
/// is down. Two quick retries cover a dropped connection.
const MAX_RETRIES: usize = 2;
const RETRY_TIMEOUT: Duration = Duration::from_secs(10);

/// `s3://BUCKET[/PREFIX]`: where blobs live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    /// Without leading or trailing `/`; empty for the bucket's root.
    pub prefix: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum S3LocationError {
    #[error("a blob store URL starts with s3:// (s3://BUCKET/PREFIX), not {0:?}")]
    Scheme(String),
    #[error(
        "bucket name {0:?}: 3 to 63 lowercase letters, digits, '.' and '-', starting and ending with a letter or digit"
    )]
    Bucket(String),
    #[error("prefix {prefix:?}: {reason}")]
    Prefix { prefix: String, reason: String },
}

impl FromStr for S3Location {
    type Err = S3LocationError;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| S3LocationError::Scheme(url.to_string()))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-'))
            && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
            && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !bucket_ok {
            return Err(S3LocationError::Bucket(bucket.to_string()));
        }
        let prefix = prefix.trim_end_matches('/');
        if !prefix.is_empty() {
            // The object_store path rules: no empty, `.` or `..` segments,
            // no control characters.
            Path::parse(prefix).map_err(|e| S3LocationError::Prefix {
                prefix: prefix.to_string(),
                reason: e.to_string(),
            })?;
        }
        Ok(Self {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        })
    }
}

impl fmt::Display for S3Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.prefix)
    }
}

/// Where the S3 blob store is and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Config {
    pub location: S3Location,
    /// `object_store` S3 settings (`aws_endpoint`, `aws_access_key_id`,
    /// `aws_secret_access_key`, `aws_region`, `aws_allow_http`, ...),
    /// applied over the standard `AWS_*` environment variables: for
    /// embedders and tests, which must not change the process environment.
    pub options: Vec<(String, String)>,
}

impl S3Config {
    pub fn new(location: S3Location) -> Self {
        Self {
            location,
            options: Vec::new(),
        }
    }
}

/// Why the S3 blob store could not be opened; each names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum S3OpenError {
    #[error("S3 option {key:?}: {reason}")]
    Option { key: String, reason: String },
    #[error(
        "cannot set up the S3 client for {location}: {source} (check AWS_ENDPOINT_URL, AWS_REGION and AWS_ALLOW_HTTP)"
    )]
    Client {
        location: S3Location,
        source: object_store::Error,
    },
    #[error(
        "bucket {bucket:?} does not exist at {endpoint}: create it, or fix --blobs (EDGE_CP_BLOBS) or AWS_ENDPOINT_URL"
    )]
    NoBucket { bucket: String, endpoint: String },
    #[error(
        "{endpoint} refused the credentials for {location}: check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and that they may read and write the bucket)"
    )]
    Refused {
        location: S3Location,
        endpoint: String,
    },
    #[error(
        "cannot use the S3 store {location} at {endpoint}: {detail} (check AWS_ENDPOINT_URL and that the server is up)"
    )]
    Unreachable {
        location: S3Location,
        endpoint: String,
        detail: String,
    },
}

pub struct S3BlobStore {
    store: Arc<AmazonS3>,
    prefix: String,
    /// `s3://bucket/prefix`, for logs.
    name: String,
}

/// A marker's identity: two reads that differ saw a write in between.
type MarkerVersion = Option<(Option<String>, i64)>;

fn unix(meta: &ObjectMeta) -> u64 {
    u64::try_from(meta.last_modified.timestamp()).unwrap_or(0)
}

/// S3's error codes (in the answer's body, which the error carries) are
/// part of its API: `object_store` maps a listing's failure to a generic
/// error, so its text is all there is to tell them apart.
fn classify_open_error(
    e: object_store::Error,
    location: &S3Location,
    endpoint: String,
) -> S3OpenError {
    let text = e.to_string();
    let refused = [
        "status code: 401",
        "status code: 403",
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
    ];
    if text.contains("NoSuchBucket") {
        S3OpenError::NoBucket {
            bucket: location.bucket.clone(),
            endpoint,
        }
    } else if matches!(
        e,
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. }
    ) || refused.iter().any(|code| text.contains(code))
    {
        S3OpenError::Refused {
            location: location.clone(),
            endpoint,
        }
    } else {
        S3OpenError::Unreachable {
            location: location.clone(),
            endpoint,
            detail: text,
        }
    }
}

fn version(meta: ObjectMeta) -> (Option<String>, i64) {
    (meta.e_tag, meta.last_modified.timestamp_micros())
}

fn random_hex() -> StoreResult<String> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| StoreError::Backend("no randomness for a marker".into()))?;
    Ok(to_hex(&bytes))
}

impl S3BlobStore {
    /// Connects and checks, with one request, that the bucket exists and
    /// the credentials are accepted.
    pub async fn open(config: &S3Config) -> Result<Self, S3OpenError> {
        let location = &config.location;
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(&location.bucket);
        for (key, value) in &config.options {
            let parsed = AmazonS3ConfigKey::from_str(key).map_err(|e| S3OpenError::Option {
                key: key.clone(),
                reason: e.to_string(),
            })?;
            builder = builder.with_config(parsed, value);
        }
        // Our defaults, unless the environment or options set them.
        for (key, value) in [
            (ClientConfigKey::Timeout, REQUEST_TIMEOUT),
            (ClientConfigKey::ConnectTimeout, CONNECT_TIMEOUT),
        ] {
            let key = AmazonS3ConfigKey::Client(key);
            if builder.get_config_value(&key).is_none() {
                builder = builder.with_config(key, value);
            }
        }
        let endpoint = builder
            .get_config_value(&AmazonS3ConfigKey::Endpoint)
            .unwrap_or_else(|| {
                let region = builder
                    .get_config_value(&AmazonS3ConfigKey::Region)
                    .unwrap_or_else(|| "us-east-1".into());
                format!("AWS S3 ({region})")
            });
        let store = builder
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(100),
                    max_backoff: Duration::from_secs(1),
                    base: 2.0,
                },
                max_retries: MAX_RETRIES,
                retry_timeout: RETRY_TIMEOUT,
            })
            // The server checks every PUT's bytes against this (a transfer
            // corrupted on the way is refused, not stored).
            .with_checksum_algorithm(Checksum::SHA256)
            .build()
            .map_err(|source| S3OpenError::Client {
                location: location.clone(),
                source,
            })?;
        let this = Self {
            store: Arc::new(store),
            prefix: location.prefix.clone(),
            name: location.to_string(),
        };
        // One listing of an empty prefix: S3 answers it only for a bucket
        // that exists and lets these credentials in. (A GET of an absent
        // key would not tell a missing bucket on every server.)
        let first = this.store.list(Some(&this.dir("probe"))).next().await;
        match first {
            None | Some(Ok(_)) => Ok(this),
            Some(Err(e)) => Err(classify_open_error(e, location, endpoint)),
        }
    }

    fn dir(&self, kind: &str) -> Path {
        if self.prefix.is_empty() {
            Path::from(kind)
        } else {
            Path::from(format!("{}/{kind}", self.prefix))
        }
    }

    fn key(&self, kind: &str, name: &str) -> Path {
        self.dir(kind).join(name)
    }

    fn unavailable(&self, what: &str, e: object_store::Error) -> StoreError {
        StoreError::Unavailable(format!("{}: {what}: {e}", self.name))
    }

    async fn head(&self, path: &Path, what: &str) -> StoreResult<Option<ObjectMeta>> {
        match self.store.head(path).await {
            Ok(meta) => Ok(Some(meta)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.unavailable(what, e)),
        }
    }

    async fn marker(&self, sha256: &str) -> StoreResult<MarkerVersion> {
        Ok(self
            .head(&self.key("touched", sha256), "cannot read a touch marker")
            .await?
            .map(version))
    }

    /// Rewrites the blob's marker with new content (so a new ETag).
    async fn write_marker(&self, sha256: &str) -> StoreResult<()> {
        let content = format!("{} {}", now_unix(), random_hex()?);
        self.store
            .put(&self.key("touched", sha256), PutPayload::from(content))
            .await
            .map_err(|e| self.unavailable("cannot write a touch marker", e))?;
        Ok(())
    }

    /// Copies back the blobs of graves left by deletions that died (see
    /// the module's documentation).
    async fn restore_orphan_graves(&self) -> StoreResult<()> {
        let graves = self.dir("graves");
        let oldest = now_unix().saturating_sub(ORPHAN_GRAVE_AGE.as_secs());
        let mut listing = self.store.list(Some(&graves));
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| self.unavailable("cannot list graves", e))?;
            let Some(sha256) = meta.location.filename().and_then(|n| n.get(..64)) else {
                continue;
            };
            if !is_sha256_hex(sha256) || unix(&meta) > oldest {
                continue;
            }
            let blob = self.key("blobs", sha256);
            if self.head(&blob, "cannot read a blob").await?.is_none() {
                tracing::warn!(store = %self.name, blob = sha256, "restoring a blob from an interrupted deletion");
                match self.store.copy(&meta.location, &blob).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(self.unavailable("cannot restore a blob", e)),
                }
            }
            match self.store.delete(&meta.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.unavailable("cannot delete a grave", e)),
            }
        }
        Ok(())
    }
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn put(&self, bytes: Bytes) -> StoreResult<String> {
        let hashed = bytes.clone();
        let sha256 = tokio::task::spawn_blocking(move || sha256_hex(&hashed))
            .await
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        // Marker first: see the module's documentation. The PUT always
        // sends the bytes, so a damaged object is replaced (reading it
        // back to compare would cost as much).
        self.write_marker(&sha256).await?;
        self.store
            .put(&self.key("blobs", &sha256), PutPayload::from(bytes))
            .await
            .map_err(|e| self.unavailable("cannot write a blob", e))?;
        Ok(sha256)
    }

    async fn get(&self, sha256: &str) -> StoreResult<Option<Bytes>> {
        if !is_sha256_hex(sha256) {
            return Ok(None);
        }
        let result = match self.store.get(&self.key("blobs", sha256)).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.unavailable("cannot read a blob", e)),
        };
        let bytes = result
            .bytes()
            .await
            .map_err(|e| self.unavailable("cannot read a blob", e))?;
        let check = bytes.clone();
        let actual = tokio::task::spawn_blocking(move || sha256_hex(&check))
            .await
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        if actual != sha256 {
            tracing::error!(store = %self.name, blob = sha256, actual, "a stored blob does not match its digest");
            return Err(StoreError::Corrupt(sha256.to_string()));
        }
        Ok(Some(bytes))
    }

    async fn touch(&self, sha256: &str) -> StoreResult<bool> {
        if !is_sha256_hex(sha256) {
            return Ok(false);
        }
        self.write_marker(sha256).await?;
        Ok(self
            .head(&self.key("blobs", sha256), "cannot read a blob")
            .await?
            .is_some())
    }

    async fn list(&self, after: Option<&str>, limit: usize) -> StoreResult<Vec<BlobInfo>> {
        let limit = limit.min(MAX_BLOBS_LISTED);
        if after.is_none() {
            // The start of a garbage-collection pass.
            self.restore_orphan_graves().await?;
        }
        if limit == 0 {
            return Ok(Vec::new());
        }
        let listing = |kind: &str| {
            let dir = self.dir(kind);
            match after {
                // S3's `start-after`: the server skips what sorts before.
                Some(after) => self
                    .store
                    .list_with_offset(Some(&dir), &dir.clone().join(after)),
                None => self.store.list(Some(&dir)),
            }
        };
        // The stream fetches a page (at most 1000 keys) at a time and is
        // dropped once `limit` blobs are in hand.
        let mut found: Vec<BlobInfo> = Vec::new();
        let mut blobs = listing("blobs");
        while found.len() < limit {
            let Some(meta) = blobs.next().await else {
                break;
            };
            let meta = meta.map_err(|e| self.unavailable("cannot list the blobs", e))?;
            let Some(name) = meta.location.filename() else {
                continue;
            };
            // Only this store's own keys, directly under `blobs/`.
            if !is_sha256_hex(name) || meta.location != self.key("blobs", name) {
                continue;
            }
            found.push(BlobInfo {
                sha256: name.to_string(),
                size: meta.size,
                modified_unix: unix(&meta),
            });
        }
        drop(blobs);
        let Some(last) = found.last().map(|b| b.sha256.clone()) else {
            return Ok(found);
        };
        // A blob's modified time is the later of its object's and its
        // marker's: the markers in the same digest range.
        let index: HashMap<String, usize> = found
            .iter()
            .enumerate()
            .map(|(i, b)| (b.sha256.clone(), i))
            .collect();
        let mut markers = listing("touched");
        while let Some(meta) = markers.next().await {
            let meta = meta.map_err(|e| self.unavailable("cannot list touch markers", e))?;
            let Some(name) = meta.location.filename() else {
                continue;
            };
            if name > last.as_str() {
                break;
            }
            if let Some(&i) = index.get(name) {
                found[i].modified_unix = found[i].modified_unix.max(unix(&meta));
            }
        }
        Ok(found)
    }

    async fn delete_if_unmodified_since(&self, sha256: &str, unix_time: u64) -> StoreResult<bool> {
        if !is_sha256_hex(sha256) {
            return Ok(false);
        }
        // The steps are those of the module's documentation.
        let marker = self
            .head(&self.key("touched", sha256), "cannot read a touch marker")
            .await?;
        if marker.as_ref().is_some_and(|m| unix(m) > unix_time) {
            return Ok(false);
        }
        let before: MarkerVersion = marker.map(version);
        let blob = self.key("blobs", sha256);
        match self.head(&blob, "cannot read a blob").await? {
            Some(meta) if unix(&meta) <= unix_time => {}
            _ => return Ok(false),
        }
        let grave = self.key("graves", &format!("{sha256}.{}", random_hex()?));
        match self.store.copy(&blob, &grave).await {
            Ok(()) => {}
            Err(object_store::Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(self.unavailable("cannot copy a blob aside", e)),
        }
        if let Err(e) = self.store.delete(&blob).await {
            let _ = self.store.delete(&grave).await;
            return Err(self.unavailable("cannot delete a blob", e));
        }
        // Unknown is treated as touched: restoring garbage costs nothing.
        let touched = match self.marker(sha256).await {
            Ok(after) => after != before,
            Err(_) => true,
        };
        if touched {
            // A failed copy leaves the grave for `restore_orphan_graves`.
            self.store
                .copy(&grave, &blob)
                .await
                .map_err(|e| self.unavailable("cannot restore a touched blob", e))?;
        }
        match self.store.delete(&grave).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => {
                // Left behind: restored (harmlessly) by a later pass.
                tracing::warn!(store = %self.name, blob = sha256, error = %e, "cannot delete a grave");
            }
        }
        if !touched && before.is_some() {
            // Best effort: a touch rewriting it now finds the blob gone.
            let _ = self.store.delete(&self.key("touched", sha256)).await;
        }
        Ok(!touched)
    }
}
