//! The tenants' key-value store as the control plane, nodes, `edgectl`
//! and the SDK agree on it: names and limits, the stable error codes, the
//! writes a node forwards (`POST /v1/kv/write`), the ordered change stream
//! nodes replicate from (`GET /v1/kv/sync`), and the tenant API's bodies.
//!
//! The model (README, "Key-value stores"):
//! - the control plane is the source of truth; every committed change has
//!   a sequence number, and sequence order is commit order;
//! - every node holds a replica of every store, built from the stream and
//!   persisted to its data directory, and serves reads from it;
//! - writes go to the control plane and are durable before the guest's
//!   call returns; the node applies what the control plane committed to
//!   its own replica before returning (read-your-writes on that node);
//! - `increment` and `compare-and-swap` execute on the control plane.
//!
//! Every body a node applies is signed by the control plane's sync key
//! ([`SignedBody`]), as snapshots are: the stream's batches and the answer
//! to a write (which echoes the node's nonce, so an answer cannot be
//! replayed for another write).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::names::{AppName, TenantId};
use crate::signing::{SigningKey, VerifyingKey};

// ---------------------------------------------------------------------------
// Limits

/// Per-tenant limits of the key-value store. The defaults apply to a
/// tenant without its own values; an admin sets others through
/// `PUT /v1/tenants/{tenant}/limits` (the `kv_*` fields), within
/// [`KvLimits::CEILING`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KvLimits {
    /// Bytes of a key (`kv-key-too-long`, 400). Default 512.
    pub max_key_bytes: u32,
    /// Bytes of a value (`kv-value-too-large`, 413). Default 1 MiB.
    pub max_value_bytes: u32,
    /// Live keys in one store (`kv-keys-limit`, 409). Default 100,000.
    pub max_keys_per_store: u64,
    /// Bytes (keys plus values) over all of the tenant's stores
    /// (`kv-bytes-limit`, 409). Default 256 MiB.
    pub max_tenant_bytes: u64,
    /// Key-value operations one incoming request may make, a batch
    /// counting one per key (`kv-ops-limit`, 429). Default 1,000.
    pub max_ops_per_request: u32,
    /// Stores of the tenant (`kv-store-limit`, 409). Default 20.
    pub max_stores: u32,
}

impl KvLimits {
    pub const DEFAULT: KvLimits = KvLimits {
        max_key_bytes: 512,
        max_value_bytes: 1 << 20,
        max_keys_per_store: 100_000,
        max_tenant_bytes: 256 << 20,
        max_ops_per_request: 1_000,
        max_stores: 20,
    };

    /// The most an admin may set. A value travels base64 in JSON bodies
    /// and is held by every node, so it stays far below a request body's
    /// limits; a key is a URL query value and a log field.
    pub const CEILING: KvLimits = KvLimits {
        max_key_bytes: 1024,
        max_value_bytes: 8 << 20,
        max_keys_per_store: 100_000_000,
        max_tenant_bytes: 64 << 30,
        max_ops_per_request: 100_000,
        max_stores: 1_000,
    };

    /// The field over [`KvLimits::CEILING`] or zero, if any, named as the
    /// API names it (`kv_max_value_bytes`).
    pub fn check(&self) -> Result<(), String> {
        let c = Self::CEILING;
        let fields: [(&str, u64, u64); 6] = [
            (
                "kv_max_key_bytes",
                self.max_key_bytes.into(),
                c.max_key_bytes.into(),
            ),
            (
                "kv_max_value_bytes",
                self.max_value_bytes.into(),
                c.max_value_bytes.into(),
            ),
            (
                "kv_max_keys_per_store",
                self.max_keys_per_store,
                c.max_keys_per_store,
            ),
            (
                "kv_max_tenant_bytes",
                self.max_tenant_bytes,
                c.max_tenant_bytes,
            ),
            (
                "kv_max_ops_per_request",
                self.max_ops_per_request.into(),
                c.max_ops_per_request.into(),
            ),
            ("kv_max_stores", self.max_stores.into(), c.max_stores.into()),
        ];
        for (name, value, ceiling) in fields {
            if value == 0 || value > ceiling {
                return Err(format!("{name} must be between 1 and {ceiling}"));
            }
        }
        Ok(())
    }

    pub fn is_default(&self) -> bool {
        *self == Self::DEFAULT
    }
}

impl Default for KvLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

// ---------------------------------------------------------------------------
// Names and keys

/// Store names that would read as the node endpoints under `/v1/kv/`.
const RESERVED_STORE_NAMES: [&str; 2] = ["sync", "write"];

/// A store name: the app-name rule (1-63 lowercase letters, digits and
/// `-`), unique within its tenant; `sync` and `write` are reserved.
pub fn check_store_name(name: &str) -> Result<(), String> {
    AppName::try_from(name.to_string()).map_err(|e| e.replace("app name", "store name"))?;
    if RESERVED_STORE_NAMES.contains(&name) {
        return Err(format!("store name `{name}` is reserved"));
    }
    Ok(())
}

/// A key: 1 to `max_key_bytes` bytes of UTF-8 without control characters
/// (a key is printed by `edgectl kv list` and in logs). Anything else,
/// `/` and `.` included, is allowed: keys travel as a query value
/// (`?key=`), never as a path segment.
pub fn check_key(key: &str, limits: &KvLimits) -> Result<(), KvError> {
    if key.is_empty() {
        return Err(KvError::new(
            KvErrorCode::KeyInvalid,
            "a key cannot be empty",
        ));
    }
    if key.len() > limits.max_key_bytes as usize {
        return Err(KvError::new(
            KvErrorCode::KeyTooLong,
            format!(
                "a key is at most {} bytes (this one has {})",
                limits.max_key_bytes,
                key.len()
            ),
        ));
    }
    if key.chars().any(char::is_control) {
        return Err(KvError::new(
            KvErrorCode::KeyInvalid,
            "a key cannot hold control characters",
        ));
    }
    Ok(())
}

/// A value's size against the limit.
pub fn check_value(value: &[u8], limits: &KvLimits) -> Result<(), KvError> {
    if value.len() > limits.max_value_bytes as usize {
        return Err(KvError::new(
            KvErrorCode::ValueTooLarge,
            format!(
                "a value is at most {} bytes (this one has {})",
                limits.max_value_bytes,
                value.len()
            ),
        ));
    }
    Ok(())
}

/// What `increment` reads and writes: the value as a decimal `u64` in
/// ASCII (as wasmtime's own implementation stores it, so a counter reads
/// as text with `edgectl kv get`). An absent key counts from 0.
pub fn increment_value(current: Option<&[u8]>, delta: u64) -> Result<u64, KvError> {
    let current = match current {
        None => 0,
        Some(bytes) => std::str::from_utf8(bytes)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| {
                KvError::new(
                    KvErrorCode::NotANumber,
                    "the value is not a decimal number, so it cannot be incremented",
                )
            })?,
    };
    current
        .checked_add(delta)
        .ok_or_else(|| KvError::new(KvErrorCode::Overflow, "the increment overflows a u64"))
}

// ---------------------------------------------------------------------------
// Errors

/// The stable error codes of the key-value store: the API's `error.code`,
/// and the prefix of the message a guest receives in
/// `wasi:keyvalue/store.error::other` (`kv-value-too-large: ...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KvErrorCode {
    StoreNameInvalid,
    StoreExists,
    StoreNotFound,
    StoreLimit,
    StoreLinked,
    /// The app does not link the store (a node's write for it).
    NotLinked,
    KeyInvalid,
    KeyTooLong,
    KeyNotFound,
    ValueTooLarge,
    KeysLimit,
    BytesLimit,
    OpsLimit,
    NotANumber,
    Overflow,
    /// The node cannot reach the control plane: the write did not happen.
    Unavailable,
    /// The node's replica is over `[kv] max_replica_bytes`: it does not
    /// answer reads it may not hold.
    ReplicaFull,
    /// The node's position in the stream is older than what the control
    /// plane keeps (or from another epoch): it must take a snapshot.
    Resync,
    /// A request body the API cannot read (bad JSON, bad base64).
    Invalid,
}

impl KvErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            KvErrorCode::StoreNameInvalid => "kv-store-name-invalid",
            KvErrorCode::StoreExists => "kv-store-exists",
            KvErrorCode::StoreNotFound => "kv-store-not-found",
            KvErrorCode::StoreLimit => "kv-store-limit",
            KvErrorCode::StoreLinked => "kv-store-linked",
            KvErrorCode::NotLinked => "kv-not-linked",
            KvErrorCode::KeyInvalid => "kv-key-invalid",
            KvErrorCode::KeyTooLong => "kv-key-too-long",
            KvErrorCode::KeyNotFound => "kv-key-not-found",
            KvErrorCode::ValueTooLarge => "kv-value-too-large",
            KvErrorCode::KeysLimit => "kv-keys-limit",
            KvErrorCode::BytesLimit => "kv-bytes-limit",
            KvErrorCode::OpsLimit => "kv-ops-limit",
            KvErrorCode::NotANumber => "kv-not-a-number",
            KvErrorCode::Overflow => "kv-overflow",
            KvErrorCode::Unavailable => "kv-unavailable",
            KvErrorCode::ReplicaFull => "kv-replica-full",
            KvErrorCode::Resync => "kv-resync",
            KvErrorCode::Invalid => "kv-invalid",
        }
    }

    /// The HTTP status the API answers with.
    pub fn status(self) -> u16 {
        match self {
            KvErrorCode::StoreNameInvalid
            | KvErrorCode::KeyInvalid
            | KvErrorCode::KeyTooLong
            | KvErrorCode::Invalid => 400,
            KvErrorCode::NotLinked => 403,
            KvErrorCode::StoreNotFound | KvErrorCode::KeyNotFound => 404,
            KvErrorCode::StoreExists
            | KvErrorCode::StoreLimit
            | KvErrorCode::StoreLinked
            | KvErrorCode::KeysLimit
            | KvErrorCode::BytesLimit
            | KvErrorCode::NotANumber
            | KvErrorCode::Overflow => 409,
            KvErrorCode::Resync => 410,
            KvErrorCode::ValueTooLarge => 413,
            KvErrorCode::OpsLimit => 429,
            KvErrorCode::Unavailable => 503,
            KvErrorCode::ReplicaFull => 507,
        }
    }
}

impl std::fmt::Display for KvErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused key-value operation: its code and a short message naming the
/// rule or limit. Displays as `code: message`, which is what a guest reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{code}: {message}")]
pub struct KvError {
    pub code: KvErrorCode,
    pub message: String,
}

impl KvError {
    pub fn new(code: KvErrorCode, message: impl Into<String>) -> Self {
        KvError {
            code,
            message: message.into(),
        }
    }
}

// ---------------------------------------------------------------------------
// Values on the wire

/// Bytes of a value, base64 (standard alphabet, padded) in JSON.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct KvValue(pub Vec<u8>);

impl std::fmt::Debug for KvValue {
    // Values are tenants' data: a debug print shows the size only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KvValue({} bytes)", self.0.len())
    }
}

impl Serialize for KvValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use base64::Engine as _;
        serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for KvValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use base64::Engine as _;
        let text = String::deserialize(deserializer)?;
        base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map(KvValue)
            .map_err(|e| serde::de::Error::custom(format!("a value must be base64: {e}")))
    }
}

// ---------------------------------------------------------------------------
// The snapshot's part: which stores an app opens

/// A store an app links, as the signed config snapshot lists it
/// (`SnapshotApp::kv`): the name the guest passes to `open`, and the
/// store's id, which is what the change stream names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvLink {
    pub name: String,
    pub store: String,
}

// ---------------------------------------------------------------------------
// Writes: node -> control plane (`POST /v1/kv/write`, node token)

/// One or more writes of one guest call, for one store of one app. The
/// control plane checks that the app links the store and the tenant's
/// limits, and commits every op in one transaction (all or none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KvWriteRequest {
    /// Random, chosen by the node; echoed in the signed answer.
    pub nonce: String,
    pub tenant: TenantId,
    pub app: AppName,
    /// The store's name as the app opened it.
    pub store: String,
    pub ops: Vec<KvOp>,
}

/// Most ops in one [`KvWriteRequest`], whatever the tenant's limits.
pub const MAX_OPS_PER_WRITE: usize = 10_000;

/// Bytes of one `POST /v1/kv/write` body (JSON, values in base64) the
/// control plane accepts; a node refuses a larger write itself with
/// `kv-value-too-large` before sending anything.
pub const MAX_WRITE_BODY_BYTES: usize = 16 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case", deny_unknown_fields)]
pub enum KvOp {
    Set {
        key: String,
        value: KvValue,
    },
    /// Deleting an absent key is no change (and no error).
    Delete {
        key: String,
    },
    Increment {
        key: String,
        delta: u64,
    },
    /// Sets `value` if the current value is `expected` (`None`: the key
    /// must be absent); otherwise changes nothing.
    CompareAndSwap {
        key: String,
        expected: Option<KvValue>,
        value: KvValue,
    },
}

impl KvOp {
    pub fn key(&self) -> &str {
        match self {
            KvOp::Set { key, .. }
            | KvOp::Delete { key }
            | KvOp::Increment { key, .. }
            | KvOp::CompareAndSwap { key, .. } => key,
        }
    }
}

/// The signed answer to a write: one result per op, in order, and the
/// changes the transaction committed (what the node applies to its own
/// replica before the guest's call returns).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvWriteResult {
    pub nonce: String,
    pub epoch: String,
    pub results: Vec<KvOpResult>,
    pub changes: Vec<KvChange>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum KvOpResult {
    /// A set or delete.
    Done,
    Incremented {
        value: u64,
    },
    CompareAndSwap {
        swapped: bool,
    },
}

// ---------------------------------------------------------------------------
// The change stream: control plane -> node (`GET /v1/kv/sync`, node token)

/// One committed change. `key: None` is a dropped store (every key of it
/// is gone); `value: None` a deleted key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvChange {
    pub seq: u64,
    pub store: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<KvValue>,
}

/// A live entry of a snapshot page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvEntry {
    pub store: String,
    pub key: String,
    pub value: KvValue,
    pub seq: u64,
}

/// Where a snapshot page ends: the next page starts after this entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvCursor {
    pub store: String,
    pub key: String,
}

/// Bytes of values in one batch the control plane sends (a page or a run
/// of changes ends before it would pass this; one larger value is sent
/// alone).
pub const MAX_BATCH_VALUE_BYTES: usize = 4 << 20;

/// What `GET /v1/kv/sync` answers, signed.
///
/// - `?since=SEQ&epoch=E&wait=25s`: the changes after `SEQ` (waiting up
///   to `wait` for one), or `410 kv-resync` when `SEQ` is older than what
///   the control plane keeps or `E` is not its epoch.
/// - `?snapshot=AT&after_store=S&after_key=K` (`AT=0` to start one): a
///   page of the live entries with `seq <= at`, in (store, key) order. An
///   entry changed later is left out and arrives with the changes after
///   `at`, which the node asks for once `next` is `None`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum KvBatch {
    Changes {
        epoch: String,
        since: u64,
        /// The last seq this batch covers: the node continues from here
        /// (equal to `since` when nothing changed).
        head: u64,
        changes: Vec<KvChange>,
        /// The control plane's clock, for the node's lag gauge.
        now_ms: u64,
    },
    Snapshot {
        epoch: String,
        at: u64,
        /// The cursor this page continues from: the request's
        /// `after_store`/`after_key`, `None` for the first page. A node
        /// applies a page only for the cursor it asked with, so a replayed
        /// or reordered page cannot complete a snapshot.
        #[serde(default)]
        after: Option<KvCursor>,
        entries: Vec<KvEntry>,
        next: Option<KvCursor>,
        now_ms: u64,
    },
}

// ---------------------------------------------------------------------------
// Signed bodies

/// A body a node applies, as it travels: the exact JSON that was signed,
/// and the signature (as [`crate::sync::SignedSnapshot`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignedBody {
    pub key_id: String,
    pub payload: String,
    pub signature: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SignedBodyError {
    #[error(
        "the signature does not verify with the pinned control-plane key {expected} (signed by key {actual})"
    )]
    BadSignature { expected: String, actual: String },
    #[error("the signed body is not valid: {0}")]
    Malformed(#[from] serde_json::Error),
}

impl SignedBody {
    pub fn sign<T: Serialize>(body: &T, key: &SigningKey) -> Result<Self, serde_json::Error> {
        let payload = serde_json::to_string(body)?;
        Ok(SignedBody {
            key_id: key.verifying_key().id(),
            signature: key.sign_hex(payload.as_bytes()),
            payload,
        })
    }

    /// Checks the signature, then parses the payload.
    pub fn verify<T: DeserializeOwned>(&self, key: &VerifyingKey) -> Result<T, SignedBodyError> {
        if !key.verify(self.payload.as_bytes(), &self.signature) {
            return Err(SignedBodyError::BadSignature {
                expected: key.id(),
                actual: self.key_id.clone(),
            });
        }
        Ok(serde_json::from_str(&self.payload)?)
    }
}

// ---------------------------------------------------------------------------
// The tenant API's bodies

/// `POST /v1/kv`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKvStore {
    pub name: String,
}

/// A store, as `GET /v1/kv` and `POST /v1/kv` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvStore {
    pub name: String,
    pub created_unix: i64,
    /// Live keys and their bytes (keys plus values).
    pub keys: u64,
    pub bytes: u64,
    /// Apps that link it.
    pub apps: Vec<AppName>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvStoreList {
    pub stores: Vec<KvStore>,
}

/// `GET /v1/apps/{app}/kv`: the stores the app may open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvLinkList {
    pub stores: Vec<String>,
}

/// `GET /v1/kv/{store}/keys?prefix=&cursor=&limit=`: keys in byte order;
/// `cursor` (the last key of this page) asks for the next page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvKeyList {
    pub keys: Vec<String>,
    pub cursor: Option<String>,
}

/// Most keys in one `GET /v1/kv/{store}/keys` page (and the default).
pub const MAX_KEYS_PER_PAGE: usize = 1_000;

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_names_follow_the_app_rule_and_reserve_the_node_paths() {
        assert!(check_store_name("sessions").is_ok());
        assert!(check_store_name("Sessions").is_err());
        assert!(check_store_name("").is_err());
        let reserved = check_store_name("sync").unwrap_err();
        assert!(reserved.contains("reserved"), "{reserved}");
        assert!(check_store_name("write").is_err());
        assert!(
            check_store_name("bad name")
                .unwrap_err()
                .contains("store name")
        );
    }

    #[test]
    fn keys_are_checked_against_the_limits() {
        let limits = KvLimits::DEFAULT;
        assert!(check_key("a/b/../c.d", &limits).is_ok());
        assert_eq!(
            check_key("", &limits).unwrap_err().code,
            KvErrorCode::KeyInvalid
        );
        assert_eq!(
            check_key("a\nb", &limits).unwrap_err().code,
            KvErrorCode::KeyInvalid
        );
        let long = "k".repeat(513);
        assert_eq!(
            check_key(&long, &limits).unwrap_err().code,
            KvErrorCode::KeyTooLong
        );
        assert!(check_key(&long[..512], &limits).is_ok());
        assert_eq!(
            check_value(&vec![0; (1 << 20) + 1], &limits)
                .unwrap_err()
                .code,
            KvErrorCode::ValueTooLarge
        );
    }

    #[test]
    fn increment_reads_decimal_text() {
        assert_eq!(increment_value(None, 5), Ok(5));
        assert_eq!(increment_value(Some(b"41"), 1), Ok(42));
        assert_eq!(
            increment_value(Some(b"x"), 1).unwrap_err().code,
            KvErrorCode::NotANumber
        );
        assert_eq!(
            increment_value(Some(u64::MAX.to_string().as_bytes()), 1)
                .unwrap_err()
                .code,
            KvErrorCode::Overflow
        );
    }

    #[test]
    fn limits_are_checked_against_the_ceiling() {
        assert!(KvLimits::DEFAULT.check().is_ok());
        let mut limits = KvLimits::DEFAULT;
        limits.max_value_bytes = (8 << 20) + 1;
        assert!(limits.check().unwrap_err().contains("kv_max_value_bytes"));
        limits = KvLimits::DEFAULT;
        limits.max_stores = 0;
        assert!(limits.check().unwrap_err().contains("kv_max_stores"));
    }

    #[test]
    fn values_travel_base64_and_ops_are_tagged() {
        let op = KvOp::CompareAndSwap {
            key: "k".into(),
            expected: None,
            value: KvValue(b"hi".to_vec()),
        };
        let json = serde_json::to_string(&op).unwrap();
        assert_eq!(
            json,
            r#"{"op":"compare-and-swap","key":"k","expected":null,"value":"aGk="}"#
        );
        assert_eq!(serde_json::from_str::<KvOp>(&json).unwrap(), op);
        assert!(serde_json::from_str::<KvValue>(r#""not base64!""#).is_err());
        assert_eq!(format!("{:?}", KvValue(vec![1, 2, 3])), "KvValue(3 bytes)");
    }

    #[test]
    fn a_signed_body_verifies_only_with_its_key() {
        let key = SigningKey::from_pkcs8(&SigningKey::generate_pkcs8().unwrap()).unwrap();
        let other = SigningKey::from_pkcs8(&SigningKey::generate_pkcs8().unwrap()).unwrap();
        let batch = KvBatch::Changes {
            epoch: "e".into(),
            since: 1,
            head: 2,
            changes: vec![KvChange {
                seq: 2,
                store: "s".into(),
                key: Some("k".into()),
                value: Some(KvValue(b"v".to_vec())),
            }],
            now_ms: 0,
        };
        let signed = SignedBody::sign(&batch, &key).unwrap();
        assert_eq!(
            signed.verify::<KvBatch>(&key.verifying_key()).unwrap(),
            batch
        );
        assert!(matches!(
            signed.verify::<KvBatch>(&other.verifying_key()),
            Err(SignedBodyError::BadSignature { .. })
        ));
        let mut tampered = signed.clone();
        tampered.payload = tampered.payload.replace("\"head\":2", "\"head\":9");
        assert!(tampered.verify::<KvBatch>(&key.verifying_key()).is_err());
    }
}
