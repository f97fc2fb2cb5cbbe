//! The sync wire format between the control plane and nodes.
//!
//! A snapshot is the whole desired state of the fleet at one revision: every
//! deployed app with its hostnames, artifact digest, config values and
//! limits (artifacts themselves are fetched by digest). The control plane
//! signs the snapshot's exact JSON bytes, and a node verifies the signature
//! before it parses them, so nothing unsigned ever reaches
//! `Component::deserialize`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::kv::{KvLimits, KvLink};
use crate::limits::AppLimits;
use crate::names::{AppName, HostPattern, TenantId};
use crate::outbound::AppOutbound;
use crate::secrets::SecretsRef;
use crate::signing::{SigningKey, VerifyingKey};

/// The desired state at one revision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Names the control plane's database: a restored or recreated one has
    /// a new epoch, and its revisions start over. A node accepts a snapshot
    /// of another epoch whatever its revision.
    pub epoch: String,
    /// Monotonic within an epoch: every change on the control plane bumps it.
    pub revision: u64,
    /// When the control plane built it (Unix seconds).
    pub created_unix: u64,
    pub apps: Vec<SnapshotApp>,
    /// Apps that are plain reverse proxies to an origin (no component).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub origins: Vec<SnapshotOrigin>,
    /// The most recent cache purges, oldest first (ids increase by one). A
    /// node applies those newer than the last it applied; if the oldest kept
    /// one is newer than that plus one, it missed some and purges the
    /// whole cache softly instead.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub purges: Vec<Purge>,
    /// Tenants' TLS certificates. The snapshot names each bundle by digest
    /// only: the private key travels in the bundle, which a node fetches
    /// over the authenticated sync channel
    /// (`GET /v1/certificates/{sha256}`) and checks against this digest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<SnapshotCertificate>,
    /// Pending ACME HTTP-01 challenges: every node answers them at
    /// `/.well-known/acme-challenge/{token}`, so whichever node the CA
    /// reaches can answer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acme_challenges: Vec<AcmeChallenge>,
    /// Apps someone follows with `edgectl logs` now (deduplicated, sorted,
    /// unexpired when the snapshot was built): nodes ship the log and
    /// access lines of these apps only, and nothing for the rest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tails: Vec<TailedApp>,
}

/// An app whose lines nodes ship to the control plane (someone tails it).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TailedApp {
    pub tenant: TenantId,
    pub app: AppName,
}

/// A certificate nodes serve, chosen by SNI, for some of its tenant's
/// hostnames.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotCertificate {
    /// The control plane's id (`edgectl certs list`): the `cert` label of
    /// `edge_tls_certificate_expiry_timestamp_seconds`.
    pub id: u64,
    pub tenant: TenantId,
    pub app: AppName,
    /// The names it is served for: exact or `*.` wildcards, each one its
    /// tenant owned when the snapshot was built.
    pub hosts: Vec<HostPattern>,
    /// SHA-256 (hex) of the bundle ([`certificate_bundle`]).
    pub bundle_sha256: String,
    pub bundle_size: u64,
    /// The leaf's notAfter (Unix seconds).
    pub not_after_unix: u64,
}

/// One HTTP-01 challenge: a request for
/// `http://{host}/.well-known/acme-challenge/{token}` is answered with
/// `key_authorization` (RFC 8555 §8.3). Not secret: the CA reads it over
/// plain HTTP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcmeChallenge {
    pub host: String,
    pub token: String,
    pub key_authorization: String,
}

/// Longest certificate bundle (chain and key, PEM) a control plane accepts
/// and a node fetches.
pub const MAX_CERTIFICATE_BUNDLE_BYTES: u64 = 256 * 1024;

/// The bundle a node fetches for a certificate: the chain's PEM (leaf
/// first), then the private key's PEM. Its SHA-256 is what the snapshot
/// names.
pub fn certificate_bundle(chain_pem: &str, key_pem: &str) -> String {
    let mut bundle = String::with_capacity(chain_pem.len() + key_pem.len() + 1);
    bundle.push_str(chain_pem);
    if !chain_pem.ends_with('\n') {
        bundle.push('\n');
    }
    bundle.push_str(key_pem);
    bundle
}

/// An app's HTTPS options (`GET/PUT /v1/apps/{app}/https`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppHttps {
    /// Plain HTTP requests get a 308 to the same URL on HTTPS (except ACME
    /// HTTP-01 challenges, which the CA fetches over plain HTTP).
    #[serde(default)]
    pub redirect: bool,
    /// A `Strict-Transport-Security` value sent on HTTPS answers, such as
    /// `max-age=31536000; includeSubDomains`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hsts: Option<String>,
}

impl AppHttps {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// Checks `hsts` (RFC 6797 §6.1): `max-age=SECONDS`, then optionally
    /// `includeSubDomains` and `preload`, separated by `;`. The error says
    /// what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        let Some(hsts) = &self.hsts else {
            return Ok(());
        };
        if hsts.len() > 256 {
            return Err("hsts: longer than 256 bytes".into());
        }
        let mut max_age = false;
        for directive in hsts.split(';').map(str::trim) {
            let lower = directive.to_ascii_lowercase();
            if let Some(seconds) = lower.strip_prefix("max-age=") {
                let seconds = seconds.trim_matches('"');
                if max_age
                    || seconds.is_empty()
                    || seconds.len() > 10
                    || !seconds.bytes().all(|b| b.is_ascii_digit())
                {
                    return Err("hsts: write `max-age=SECONDS` once, with 1 to 10 digits".into());
                }
                max_age = true;
            } else if lower != "includesubdomains" && lower != "preload" {
                return Err(format!(
                    "hsts: unknown directive `{directive}` (use max-age=SECONDS, includeSubDomains, preload)"
                ));
            }
        }
        if !max_age {
            return Err("hsts: `max-age=SECONDS` is required".into());
        }
        Ok(())
    }
}

/// An app's compression at the edge (`GET/PUT /v1/apps/{app}/compression`):
/// each field left out takes the node's `[compression]` default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppCompression {
    /// Compress this app's compressible answers for clients that accept
    /// gzip, br or zstd. Default (`None`): the node's `compression.enabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Answers shorter than this many bytes are sent as they are.
    /// Default (`None`): the node's `compression.min_bytes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_bytes: Option<u64>,
}

/// The largest `min_bytes` an app may set: past the largest response a
/// node stores, a threshold only means "never".
pub const MAX_COMPRESSION_MIN_BYTES: u64 = 1 << 30;

impl AppCompression {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// Checks `min_bytes`; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        match self.min_bytes {
            Some(n) if n > MAX_COMPRESSION_MIN_BYTES => Err(format!(
                "min_bytes: {n} is more than {MAX_COMPRESSION_MIN_BYTES} (1 GiB)"
            )),
            _ => Ok(()),
        }
    }
}

/// An app that forwards every request to an origin URL, with the edge
/// cache in front.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotOrigin {
    pub tenant: TenantId,
    pub name: AppName,
    pub hosts: Vec<HostPattern>,
    /// `http://host[:port][/base/path]` or `https://...`.
    pub origin: String,
    pub limits: AppLimits,
    /// Forward method-override headers, `X-Forwarded-Scheme` and header
    /// names with `_` to the origin (dropped by default: they change the
    /// origin's answer without being part of the cache key).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forward_override_headers: bool,
    #[serde(default, skip_serializing_if = "AppHttps::is_default")]
    pub https: AppHttps,
    /// Compression at the edge (`PUT /v1/apps/{app}/compression`).
    #[serde(default, skip_serializing_if = "AppCompression::is_default")]
    pub compression: AppCompression,
}

/// One cache purge, fanned out to every node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Purge {
    /// Increases by one per purge within an epoch.
    pub id: u64,
    pub tenant: TenantId,
    pub app: AppName,
    #[serde(flatten)]
    pub target: PurgeTarget,
    /// Soft: mark stale (served again only after revalidation, or within
    /// stale-while-revalidate / stale-if-error); hard: remove.
    pub soft: bool,
    pub created_unix: u64,
}

/// What a purge removes from one app's cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum PurgeTarget {
    /// One URL: absolute (`https://shop.example/a?b=1`: that scheme, host
    /// and target) or a path with its query (`/a?b=1`: on every host).
    Url { url: String },
    /// Every response tagged with this `Surrogate-Key`.
    Key { key: String },
    /// The app's whole cache.
    All,
}

/// A purge as a tenant asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgeRequest {
    pub target: PurgeTarget,
    pub soft: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum PurgeRequestError {
    #[error("invalid purge request: {0}")]
    Shape(serde_json::Error),
    #[error("invalid purge request: write a JSON object such as {{\"url\": \"/path\"}}")]
    NotObject,
    #[error("name what to purge: one of `url`, `key` or `all: true`")]
    NoTarget,
    #[error("name one thing to purge: only one of `url`, `key` and `all`")]
    TwoTargets,
    #[error("`all` must be true (to purge something else, use `url` or `key`)")]
    AllFalse,
    #[error("{0}")]
    Target(String),
}

/// The body of a purge request (the control plane's
/// `POST /v1/apps/{app}/purge`, and the node's admin purge without its
/// `tenant` and `app`): exactly one of `url`, `key` and `all: true`, which
/// [`PurgeRequest::from_json`] checks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurgeBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all: Option<bool>,
    #[serde(default)]
    pub soft: bool,
}

impl From<PurgeRequest> for PurgeBody {
    fn from(request: PurgeRequest) -> Self {
        let (url, key, all) = match request.target {
            PurgeTarget::Url { url } => (Some(url), None, None),
            PurgeTarget::Key { key } => (None, Some(key), None),
            PurgeTarget::All => (None, None, Some(true)),
        };
        Self {
            url,
            key,
            all,
            soft: request.soft,
        }
    }
}

impl PurgeRequest {
    /// `{"url"}`, `{"key"}` or `{"all": true}` (exactly one), and an
    /// optional `"soft"` (default: hard).
    pub fn from_json(value: serde_json::Value) -> Result<Self, PurgeRequestError> {
        // serde would read a struct from an array too (`[url, key, ...]`).
        if !value.is_object() {
            return Err(PurgeRequestError::NotObject);
        }
        let body: PurgeBody = serde_json::from_value(value).map_err(PurgeRequestError::Shape)?;
        if body.all == Some(false) {
            return Err(PurgeRequestError::AllFalse);
        }
        let target = match (body.url, body.key, body.all) {
            (Some(url), None, None) => PurgeTarget::Url { url },
            (None, Some(key), None) => PurgeTarget::Key { key },
            (None, None, Some(_)) => PurgeTarget::All,
            (None, None, None) => return Err(PurgeRequestError::NoTarget),
            _ => return Err(PurgeRequestError::TwoTargets),
        };
        target.validate().map_err(PurgeRequestError::Target)?;
        Ok(Self {
            target,
            soft: body.soft,
        })
    }
}

/// Longest purge URL and surrogate key accepted.
pub const MAX_PURGE_URL_BYTES: usize = 2048;
pub const MAX_SURROGATE_KEY_BYTES: usize = 256;

impl PurgeTarget {
    /// Checks a purge target as a tenant wrote it; the error says what is
    /// wrong.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            PurgeTarget::Url { url } => {
                if url.len() > MAX_PURGE_URL_BYTES {
                    return Err(format!("url: longer than {MAX_PURGE_URL_BYTES} bytes"));
                }
                if url.starts_with('/') {
                    return url
                        .parse::<http::uri::PathAndQuery>()
                        .map(|_| ())
                        .map_err(|_| "url: not a valid path and query".to_string());
                }
                let uri = url
                    .parse::<http::Uri>()
                    .map_err(|_| "url: not a valid URL or path".to_string())?;
                match (uri.scheme_str(), uri.host()) {
                    (Some("http" | "https"), Some(_)) => Ok(()),
                    _ => Err("url: write an http(s) URL or a path starting with `/`".into()),
                }
            }
            PurgeTarget::Key { key } => {
                if key.is_empty() || key.len() > MAX_SURROGATE_KEY_BYTES {
                    return Err(format!("key: 1 to {MAX_SURROGATE_KEY_BYTES} bytes"));
                }
                if !key.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err("key: visible ASCII only, no spaces".into());
                }
                Ok(())
            }
            PurgeTarget::All => Ok(()),
        }
    }
}

/// One deployed app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotApp {
    pub tenant: TenantId,
    pub name: AppName,
    pub hosts: Vec<HostPattern>,
    /// The active version (1, 2, ...).
    pub version: u64,
    /// SHA-256 of the uploaded `.wasm`.
    pub source_sha256: String,
    /// The precompiled artifact to fetch from `/v1/artifacts/{sha256}`.
    pub artifact: ArtifactRef,
    /// Config values, the guest's environment.
    pub config: BTreeMap<String, String>,
    pub limits: AppLimits,
    #[serde(default, skip_serializing_if = "AppHttps::is_default")]
    pub https: AppHttps,
    /// Compression at the edge (`PUT /v1/apps/{app}/compression`).
    #[serde(default, skip_serializing_if = "AppCompression::is_default")]
    pub compression: AppCompression,
    /// The app's secrets bundle, by digest only: a node fetches the
    /// values from `GET /v1/secrets/{sha256}` and checks them against it.
    /// No value is ever in a snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<SecretsRef>,
    /// What the guest may call (`PUT /v1/apps/{app}/outbound`), its
    /// `max_subrequests` already within the tenant's cap. The node's own
    /// `[outbound]` still decides which addresses are reachable.
    #[serde(default, skip_serializing_if = "AppOutbound::is_default")]
    pub outbound: AppOutbound,
    /// The key-value stores the app may open (`wasi:keyvalue/store.open`
    /// by name), each with its id in the change stream.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kv: Vec<KvLink>,
    /// Its tenant's key-value limits, which the node checks before it
    /// forwards a write (the control plane checks them again).
    #[serde(default, skip_serializing_if = "KvLimits::is_default")]
    pub kv_limits: KvLimits,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactRef {
    pub sha256: String,
    pub size: u64,
    /// The engine compatibility hash it was compiled for
    /// ([`crate::engine_hash`]).
    pub engine: String,
}

/// A snapshot as it travels and as a node stores it: the exact bytes that
/// were signed, and the signature.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignedSnapshot {
    /// [`VerifyingKey::id`] of the signing key.
    pub key_id: String,
    /// The snapshot's JSON.
    pub payload: String,
    /// Ed25519 signature over `payload`, hex.
    pub signature: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(
        "the snapshot signature does not verify with the pinned control-plane key {expected} (signed by key {actual})"
    )]
    BadSignature { expected: String, actual: String },
    #[error("the signed snapshot is not valid: {0}")]
    Malformed(#[from] serde_json::Error),
}

impl SignedSnapshot {
    pub fn sign(snapshot: &Snapshot, key: &SigningKey) -> Result<Self, serde_json::Error> {
        let payload = serde_json::to_string(snapshot)?;
        Ok(Self {
            key_id: key.verifying_key().id(),
            signature: key.sign_hex(payload.as_bytes()),
            payload,
        })
    }

    /// Checks the signature, then parses the payload.
    pub fn verify(&self, key: &VerifyingKey) -> Result<Snapshot, SnapshotError> {
        if !key.verify(self.payload.as_bytes(), &self.signature) {
            return Err(SnapshotError::BadSignature {
                expected: key.id(),
                actual: self.key_id.clone(),
            });
        }
        Ok(serde_json::from_str(&self.payload)?)
    }
}

/// What a node reports after trying to apply a revision.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeReport {
    pub revision: u64,
    /// `applied` (ACK: the node serves this revision, except the apps in
    /// `app_errors`) or `rejected` (NACK: the snapshot itself was refused,
    /// for example its signature did not verify).
    pub outcome: ApplyOutcome,
    /// Why it was rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Apps of an applied revision this node could not serve (a digest
    /// mismatch, a component that does not load, a hostname the node's own
    /// config routes). Each keeps its previous version if it had one; one
    /// app's failure never holds back the others.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub app_errors: Vec<AppError>,
    /// The node's engine compatibility hash.
    pub engine: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppError {
    pub tenant: TenantId,
    pub app: AppName,
    pub error: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ApplyOutcome {
    Applied,
    Rejected,
}

/// The public key a control plane serves at `GET /v1/sync/key`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SyncKey {
    pub key_id: String,
    pub public_key: String,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn snapshot() -> Snapshot {
        Snapshot {
            epoch: "e1".into(),
            revision: 3,
            created_unix: 1,
            apps: vec![SnapshotApp {
                tenant: TenantId::try_from("acme".to_string()).unwrap(),
                name: AppName::try_from("hello".to_string()).unwrap(),
                hosts: vec![HostPattern::try_from("hello.test".to_string()).unwrap()],
                version: 1,
                source_sha256: "a".repeat(64),
                artifact: ArtifactRef {
                    sha256: "b".repeat(64),
                    size: 10,
                    engine: "e".into(),
                },
                config: BTreeMap::new(),
                limits: AppLimits::default(),
                https: AppHttps::default(),
                compression: AppCompression::default(),
                secrets: None,
                outbound: AppOutbound::default(),
                kv: Vec::new(),
                kv_limits: KvLimits::DEFAULT,
            }],
            origins: Vec::new(),
            purges: Vec::new(),
            certificates: Vec::new(),
            acme_challenges: Vec::new(),
            tails: Vec::new(),
        }
    }

    #[test]
    fn a_purge_names_exactly_one_valid_target() {
        let parse = PurgeRequest::from_json;
        assert!(matches!(
            parse(json!({ "url": "/a?b=1" })),
            Ok(PurgeRequest {
                target: PurgeTarget::Url { .. },
                soft: false
            })
        ));
        assert!(matches!(
            parse(json!({ "key": "k", "soft": true })),
            Ok(PurgeRequest {
                target: PurgeTarget::Key { .. },
                soft: true
            })
        ));
        assert!(matches!(
            parse(json!({ "all": true })),
            Ok(PurgeRequest {
                target: PurgeTarget::All,
                ..
            })
        ));
        assert!(matches!(parse(json!({})), Err(PurgeRequestError::NoTarget)));
        assert!(matches!(
            parse(json!({ "url": "/a", "key": "k" })),
            Err(PurgeRequestError::TwoTargets)
        ));
        assert!(matches!(
            parse(json!({ "all": false })),
            Err(PurgeRequestError::AllFalse)
        ));
        assert!(matches!(
            parse(json!({ "url": "/a", "extra": 1 })),
            Err(PurgeRequestError::Shape(_))
        ));
        assert!(matches!(
            parse(json!({ "key": "two words" })),
            Err(PurgeRequestError::Target(_))
        ));
        assert!(matches!(
            parse(json!([null, null, true, false])),
            Err(PurgeRequestError::NotObject)
        ));
    }

    #[test]
    fn purge_targets_are_validated_and_travel_flat() {
        for ok in [
            PurgeTarget::Url {
                url: "/a?b=1".into(),
            },
            PurgeTarget::Url {
                url: "https://shop.test/a".into(),
            },
            PurgeTarget::Key {
                key: "product-7".into(),
            },
            PurgeTarget::All,
        ] {
            assert_eq!(ok.validate(), Ok(()), "{ok:?}");
        }
        for bad in [
            PurgeTarget::Url {
                url: "ftp://x/a".into(),
            },
            PurgeTarget::Url { url: "a/b".into() },
            PurgeTarget::Url {
                url: format!("/{}", "a".repeat(MAX_PURGE_URL_BYTES)),
            },
            PurgeTarget::Key { key: String::new() },
            PurgeTarget::Key {
                key: "two words".into(),
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        let purge = Purge {
            id: 4,
            tenant: TenantId::try_from("acme".to_string()).unwrap(),
            app: AppName::try_from("shop".to_string()).unwrap(),
            target: PurgeTarget::Key { key: "k".into() },
            soft: true,
            created_unix: 1,
        };
        let json = serde_json::to_value(&purge).unwrap();
        assert_eq!(json["kind"], "key");
        assert_eq!(json["key"], "k");
        assert_eq!(serde_json::from_value::<Purge>(json).unwrap(), purge);
    }

    #[test]
    fn a_signed_snapshot_round_trips_and_tampering_is_caught() {
        let key = SigningKey::from_pkcs8(&SigningKey::generate_pkcs8().unwrap()).unwrap();
        let signed = SignedSnapshot::sign(&snapshot(), &key).unwrap();
        let wire = serde_json::to_string(&signed).unwrap();
        let back: SignedSnapshot = serde_json::from_str(&wire).unwrap();
        assert_eq!(back.verify(&key.verifying_key()).unwrap(), snapshot());

        let mut tampered = back.clone();
        tampered.payload = tampered.payload.replace("hello.test", "evil.test");
        assert!(matches!(
            tampered.verify(&key.verifying_key()),
            Err(SnapshotError::BadSignature { .. })
        ));
        let other = SigningKey::from_pkcs8(&SigningKey::generate_pkcs8().unwrap()).unwrap();
        assert!(back.verify(&other.verifying_key()).is_err());
    }
}
