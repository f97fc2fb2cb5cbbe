//! A whole metadata store as plain rows ([`StoreDump`]): what
//! [`MetaStore::dump`](super::MetaStore::dump) reads in one transaction and
//! [`MetaStore::restore`](super::MetaStore::restore) writes into an empty
//! store, on any backend. `edge-cp migrate-store` moves a store from one
//! backend to another with it.
//!
//! Rows are typed (validated names, limits and config as values, not the
//! JSON text a backend keeps them in), so a dump compares equal across
//! backends and a hand-edited one that breaks a rule is refused before
//! anything is written ([`StoreDump::check`]).

use std::collections::{BTreeMap, BTreeSet};

use edge_common::AppLimits;
use edge_common::names::{AppName, HostPattern, TenantId};
use edge_common::sync::{AcmeChallenge, AppError, AppHttps, Purge};
use serde::{Deserialize, Serialize};

use edge_common::api::SetTenantLimits;
use edge_common::outbound::{AppOutbound, Destination};

use super::kv_rows::{KvDropRow, KvEntryRow, KvLinkRow, KvStoreRow};
use super::{CertMaterial, CertRecord, CertSource, StoreError, StoreResult};

/// The dump format this build writes and reads.
pub const DUMP_FORMAT: u32 = 1;

/// Every table of a metadata store, each in its key's order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreDump {
    /// [`DUMP_FORMAT`] when written; a restore refuses any other.
    pub format: u32,
    /// The store's epoch. A restore keeps it: the restored store is the
    /// same state at the same revision, so nodes carry on with it (see
    /// [`StoreDump::renew_epoch`] for a store that goes back in time).
    pub epoch: String,
    pub revision: u64,
    /// The last purge id handed out (kept purges may end below it: never
    /// below, though, as ids are never reused).
    pub purge_counter: u64,
    pub tenants: Vec<TenantRow>,
    pub apps: Vec<AppRow>,
    pub hosts: Vec<HostRow>,
    pub versions: Vec<VersionRow>,
    pub deployments: Vec<DeploymentRow>,
    pub artifacts: Vec<ArtifactRow>,
    pub purges: Vec<Purge>,
    pub nodes: Vec<NodeRow>,
    /// The last certificate id handed out (kept certificates may end below
    /// it, never above: ids are never reused). Dumps made before
    /// certificates existed have none of the certificate fields.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub certificate_counter: u64,
    /// By id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<CertificateRow>,
    /// By certificate, each certificate's in their stored order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acme_challenges: Vec<AcmeChallengeRow>,
    /// By directory.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acme_accounts: Vec<AcmeAccountRow>,
    /// App secrets, sealed (restoring needs the same key-encryption
    /// key), by tenant, app and name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretRow>,
    /// Each app's secrets bundle record, by tenant and app.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_bundles: Vec<SecretBundleRow>,
    /// Apps' outbound policies, by tenant and app.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub app_outbound: Vec<AppOutboundRow>,
    /// Tenants' own outbound caps, by tenant.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tenant_limits: Vec<TenantLimitsRow>,
    /// Live-log tails, by id (short-lived: carried so that a dump is the
    /// whole store; a restored one expires as any other).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log_tails: Vec<LogTailRow>,
    /// Buffered live-log lines, by seq.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log_lines: Vec<LogLineRow>,
    /// The last live-log seq handed out.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub log_seq: u64,
    /// How far each app's live-log lines were pruned, by tenant and app.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log_pruned: Vec<LogPrunedRow>,
    /// Key-value stores (issue 16), by id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kv_stores: Vec<KvStoreRow>,
    /// Their links to apps, by tenant, app and store.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kv_links: Vec<KvLinkRow>,
    /// Their entries and tombstones, by store and key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kv_entries: Vec<KvEntryRow>,
    /// Dropped stores not pruned yet, by seq.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kv_drops: Vec<KvDropRow>,
    /// The last key-value seq handed out.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub kv_seq: u64,
    /// The key-value prune mark.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub kv_pruned: u64,
}

/// How far an app's live-log lines were pruned (`log_pruned`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogPrunedRow {
    pub tenant: TenantId,
    pub app: AppName,
    pub seq: u64,
    pub lines: u64,
}

/// A live-log tail (`log_tails`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogTailRow {
    pub id: String,
    pub tenant: TenantId,
    pub app: AppName,
    pub filters: Option<String>,
    pub expires_unix: u64,
    pub created_unix: u64,
}

/// A buffered live-log line (`log_lines`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogLineRow {
    pub seq: u64,
    pub tenant: TenantId,
    pub app: AppName,
    pub node: String,
    pub at_unix_ms: u64,
    pub kind: String,
    pub json: String,
}

impl From<super::LogLineRecord> for LogLineRow {
    fn from(r: super::LogLineRecord) -> Self {
        Self {
            seq: r.seq,
            tenant: r.tenant,
            app: r.app,
            node: r.node,
            at_unix_ms: r.at_unix_ms,
            kind: r.kind,
            json: r.json,
        }
    }
}

/// An app's outbound policy (`app_outbound`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppOutboundRow {
    pub tenant: TenantId,
    pub app: AppName,
    pub allow: Vec<Destination>,
    pub max_subrequests: Option<u32>,
}

impl AppOutboundRow {
    /// A row as a backend reads it (names as stored text).
    pub(crate) fn new(tenant: String, app: String, policy: AppOutbound) -> StoreResult<Self> {
        Ok(Self {
            tenant: stored_name(tenant)?,
            app: stored_name(app)?,
            allow: policy.allow,
            max_subrequests: policy.max_subrequests,
        })
    }

    pub fn policy(&self) -> AppOutbound {
        AppOutbound {
            allow: self.allow.clone(),
            max_subrequests: self.max_subrequests,
        }
    }
}

/// A tenant's own outbound caps (`tenant_limits`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantLimitsRow {
    pub tenant: TenantId,
    pub max_outbound_destinations: Option<u32>,
    pub max_subrequests: Option<u32>,
    /// The key-value limits (issue 16); dumps made before have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_max_key_bytes: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_max_value_bytes: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_max_keys_per_store: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_max_tenant_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_max_ops_per_request: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_max_stores: Option<u32>,
}

impl TenantLimitsRow {
    pub(crate) fn new(tenant: String, limits: SetTenantLimits) -> StoreResult<Self> {
        Ok(Self {
            tenant: stored_name(tenant)?,
            max_outbound_destinations: limits.max_outbound_destinations,
            max_subrequests: limits.max_subrequests,
            kv_max_key_bytes: limits.kv_max_key_bytes,
            kv_max_value_bytes: limits.kv_max_value_bytes,
            kv_max_keys_per_store: limits.kv_max_keys_per_store,
            kv_max_tenant_bytes: limits.kv_max_tenant_bytes,
            kv_max_ops_per_request: limits.kv_max_ops_per_request,
            kv_max_stores: limits.kv_max_stores,
        })
    }

    pub fn limits(&self) -> SetTenantLimits {
        SetTenantLimits {
            max_outbound_destinations: self.max_outbound_destinations,
            max_subrequests: self.max_subrequests,
            kv_max_key_bytes: self.kv_max_key_bytes,
            kv_max_value_bytes: self.kv_max_value_bytes,
            kv_max_keys_per_store: self.kv_max_keys_per_store,
            kv_max_tenant_bytes: self.kv_max_tenant_bytes,
            kv_max_ops_per_request: self.kv_max_ops_per_request,
            kv_max_stores: self.kv_max_stores,
        }
    }
}

fn stored_name<T: TryFrom<String, Error = String>>(s: String) -> StoreResult<T> {
    T::try_from(s).map_err(|e| StoreError::Backend(format!("stored value is invalid: {e}")))
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantRow {
    pub id: TenantId,
    pub created_unix: u64,
    pub storage_quota_bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppRow {
    pub tenant: TenantId,
    pub name: AppName,
    pub active_version: Option<u64>,
    pub origin: Option<String>,
    pub forward_override_headers: bool,
    pub config: BTreeMap<String, String>,
    pub limits: AppLimits,
    #[serde(default, skip_serializing_if = "AppHttps::is_default")]
    pub https: AppHttps,
    /// Compression at the edge (migration V8; older dumps have none).
    #[serde(
        default,
        skip_serializing_if = "edge_common::sync::AppCompression::is_default"
    )]
    pub compression: edge_common::sync::AppCompression,
    pub created_unix: u64,
    pub updated_revision: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostRow {
    pub host: HostPattern,
    pub tenant: TenantId,
    pub app: AppName,
    /// Its place among the app's hostnames.
    pub position: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionRow {
    pub tenant: TenantId,
    pub app: AppName,
    pub version: u64,
    pub source_sha256: String,
    pub source_size: u64,
    pub artifact_sha256: String,
    pub artifact_size: u64,
    pub engine: String,
    pub created_unix: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentRow {
    /// Orders an app's deployments (oldest first).
    pub id: u64,
    pub tenant: TenantId,
    pub app: AppName,
    pub version: u64,
    pub revision: u64,
    pub created_unix: u64,
}

/// A compile record: the artifact built from a source for an engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactRow {
    pub source_sha256: String,
    pub engine: String,
    pub artifact_sha256: String,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeRow {
    pub node: String,
    pub applied_revision: Option<u64>,
    pub rejected_revision: Option<u64>,
    pub last_error: Option<String>,
    pub app_errors: Vec<AppError>,
    pub engine: String,
    pub last_seen_unix: u64,
}

/// A certificate: its key only sealed (a dump holds no private key in the
/// clear, and restoring needs the same key-encryption key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateRow {
    pub id: u64,
    pub tenant: TenantId,
    pub app: AppName,
    pub hosts: Vec<HostPattern>,
    pub source: CertSource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub material: Option<CertMaterialRow>,
    pub last_error: Option<String>,
    pub attempts: u32,
    pub next_attempt_unix: Option<u64>,
    /// A forced renewal not taken yet (absent from dumps made before
    /// leases were kept apart: false). A lease is not dumped: it belongs
    /// to a replica of the store dumped, so a restored certificate is free.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub renew_requested: bool,
    pub created_unix: u64,
    pub updated_unix: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertMaterialRow {
    pub chain_pem: String,
    /// Hex.
    #[serde(with = "hex_bytes")]
    pub sealed_key: Vec<u8>,
    pub bundle_sha256: String,
    pub bundle_size: u64,
    pub issuer: String,
    pub not_before_unix: u64,
    pub not_after_unix: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeChallengeRow {
    pub certificate: u64,
    pub host: String,
    pub token: String,
    pub key_authorization: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeAccountRow {
    pub directory: String,
    /// The sealed credentials, hex.
    #[serde(with = "hex_bytes")]
    pub sealed: Vec<u8>,
}

/// An app secret: its value only sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRow {
    pub tenant: TenantId,
    pub app: AppName,
    pub name: String,
    /// Hex.
    #[serde(with = "hex_bytes")]
    pub sealed: Vec<u8>,
    pub created_unix: u64,
    pub updated_unix: u64,
}

/// An app's secrets bundle record (`secret_rows::SecretBundleRecord`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretBundleRow {
    pub tenant: TenantId,
    pub app: AppName,
    pub salt: String,
    pub sha256: String,
    pub size: u64,
}

impl From<super::SecretRecord> for SecretRow {
    fn from(s: super::SecretRecord) -> Self {
        Self {
            tenant: s.tenant,
            app: s.app,
            name: s.name,
            sealed: s.sealed,
            created_unix: s.created_unix,
            updated_unix: s.updated_unix,
        }
    }
}

impl From<SecretRow> for super::SecretRecord {
    fn from(s: SecretRow) -> Self {
        Self {
            tenant: s.tenant,
            app: s.app,
            name: s.name,
            sealed: s.sealed,
            created_unix: s.created_unix,
            updated_unix: s.updated_unix,
        }
    }
}

impl SecretBundleRow {
    pub fn new(tenant: TenantId, app: AppName, b: super::SecretBundleRecord) -> Self {
        Self {
            tenant,
            app,
            salt: b.salt,
            sha256: b.sha256,
            size: b.size,
        }
    }

    pub fn parts(&self) -> (TenantId, AppName, super::SecretBundleRecord) {
        (
            self.tenant.clone(),
            self.app.clone(),
            super::SecretBundleRecord {
                salt: self.salt.clone(),
                sha256: self.sha256.clone(),
                size: self.size,
            },
        )
    }
}

impl From<CertRecord> for CertificateRow {
    fn from(c: CertRecord) -> Self {
        Self {
            id: c.id,
            tenant: c.tenant,
            app: c.app,
            hosts: c.hosts,
            source: c.source,
            material: c.material.map(|m| CertMaterialRow {
                chain_pem: m.chain_pem,
                sealed_key: m.sealed_key,
                bundle_sha256: m.bundle_sha256,
                bundle_size: m.bundle_size,
                issuer: m.issuer,
                not_before_unix: m.not_before_unix,
                not_after_unix: m.not_after_unix,
            }),
            last_error: c.last_error,
            attempts: c.attempts,
            next_attempt_unix: c.next_attempt_unix,
            renew_requested: c.renew_requested,
            created_unix: c.created_unix,
            updated_unix: c.updated_unix,
        }
    }
}

impl From<CertificateRow> for CertRecord {
    fn from(c: CertificateRow) -> Self {
        Self {
            id: c.id,
            tenant: c.tenant,
            app: c.app,
            hosts: c.hosts,
            source: c.source,
            material: c.material.map(|m| CertMaterial {
                chain_pem: m.chain_pem,
                sealed_key: m.sealed_key,
                bundle_sha256: m.bundle_sha256,
                bundle_size: m.bundle_size,
                issuer: m.issuer,
                not_before_unix: m.not_before_unix,
                not_after_unix: m.not_after_unix,
            }),
            last_error: c.last_error,
            attempts: c.attempts,
            next_attempt_unix: c.next_attempt_unix,
            lease_until_unix: None,
            renew_requested: c.renew_requested,
            created_unix: c.created_unix,
            updated_unix: c.updated_unix,
        }
    }
}

impl AcmeChallengeRow {
    pub fn challenge(&self) -> AcmeChallenge {
        AcmeChallenge {
            host: self.host.clone(),
            token: self.token.clone(),
            key_authorization: self.key_authorization.clone(),
        }
    }
}

/// Bytes as a lowercase hex string (sealed keys are small; hex keeps a
/// dump readable JSON without another encoding crate).
mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&edge_common::signing::to_hex(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        if text.len() % 2 != 0 {
            return Err(D::Error::custom("hex: an odd number of digits"));
        }
        (0..text.len())
            .step_by(2)
            .map(|i| {
                text.get(i..i + 2)
                    .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                    .ok_or_else(|| D::Error::custom("hex: not a hex digit"))
            })
            .collect()
    }
}

/// Why a restore was refused; nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    /// The target already holds metadata.
    #[error(
        "the target store is not empty ({what}); restore only into a new, empty store (a new database or data directory)"
    )]
    NotEmpty { what: String },
    /// The dump breaks a rule of the store.
    #[error("the dump is invalid: {0}")]
    Invalid(String),
}

/// The largest number a store keeps (SQL integers are signed 64-bit).
const MAX_STORED: u64 = i64::MAX as u64;

impl StoreDump {
    /// What an empty store dumps as (with its epoch).
    pub fn empty(epoch: String) -> Self {
        Self {
            format: DUMP_FORMAT,
            epoch,
            revision: 0,
            purge_counter: 0,
            tenants: vec![],
            apps: vec![],
            hosts: vec![],
            versions: vec![],
            deployments: vec![],
            artifacts: vec![],
            purges: vec![],
            nodes: vec![],
            certificate_counter: 0,
            certificates: vec![],
            acme_challenges: vec![],
            acme_accounts: vec![],
            secrets: vec![],
            secret_bundles: vec![],
            app_outbound: vec![],
            tenant_limits: vec![],
            log_tails: vec![],
            log_lines: vec![],
            log_seq: 0,
            log_pruned: vec![],
            kv_stores: vec![],
            kv_links: vec![],
            kv_entries: vec![],
            kv_drops: vec![],
            kv_seq: 0,
            kv_pruned: 0,
        }
    }

    /// The key-value part, as the backends write it.
    pub(crate) fn kv(&self) -> super::KvDump {
        super::KvDump {
            stores: self.kv_stores.clone(),
            links: self.kv_links.clone(),
            entries: self.kv_entries.clone(),
            drops: self.kv_drops.clone(),
            head: super::KvHead {
                seq: self.kv_seq,
                pruned: self.kv_pruned,
            },
        }
    }

    /// Sets the key-value part from what a backend read.
    pub(crate) fn set_kv(&mut self, kv: super::KvDump) {
        self.kv_stores = kv.stores;
        self.kv_links = kv.links;
        self.kv_entries = kv.entries;
        self.kv_drops = kv.drops;
        self.kv_seq = kv.head.seq;
        self.kv_pruned = kv.head.pruned;
    }

    /// Whether nothing was ever stored (the epoch aside).
    pub fn is_empty(&self) -> bool {
        self.what_is_stored().is_none()
    }

    /// What the store holds, in words, or `None` if nothing.
    pub fn what_is_stored(&self) -> Option<String> {
        let counts = [
            (self.tenants.len(), "tenants"),
            (self.apps.len(), "apps"),
            (self.hosts.len(), "hostnames"),
            (self.versions.len(), "versions"),
            (self.deployments.len(), "deployments"),
            (self.artifacts.len(), "artifact records"),
            (self.purges.len(), "purges"),
            (self.nodes.len(), "nodes"),
            (self.certificates.len(), "certificates"),
            (self.acme_challenges.len(), "ACME challenges"),
            (self.acme_accounts.len(), "ACME accounts"),
            (self.secrets.len(), "secrets"),
            (self.secret_bundles.len(), "secret bundles"),
            (self.app_outbound.len(), "outbound policies"),
            (self.tenant_limits.len(), "tenant limits"),
            (self.log_tails.len(), "log tails"),
            (self.log_lines.len(), "log lines"),
            (self.log_pruned.len(), "log prune marks"),
            (self.kv_stores.len(), "key-value stores"),
            (self.kv_links.len(), "key-value links"),
            (self.kv_entries.len(), "key-value entries"),
            (self.kv_drops.len(), "key-value drops"),
        ];
        let mut parts: Vec<String> = counts
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, what)| format!("{n} {what}"))
            .collect();
        if self.revision > 0 {
            parts.push(format!("revision {}", self.revision));
        }
        if self.purge_counter > 0 {
            parts.push(format!("{} purge ids handed out", self.purge_counter));
        }
        if self.certificate_counter > 0 {
            parts.push(format!(
                "{} certificate ids handed out",
                self.certificate_counter
            ));
        }
        (!parts.is_empty()).then(|| parts.join(", "))
    }

    /// A new random epoch, for restoring a dump older than what nodes have
    /// seen (a backup): with the old epoch they would ignore revisions up
    /// to the ones they already applied.
    pub fn renew_epoch(&mut self) -> Result<(), super::StoreError> {
        self.epoch = new_epoch()?;
        Ok(())
    }

    /// Refuses a dump a store could not have made: another format, a
    /// number SQL cannot hold, a row without the row it belongs to, a key
    /// twice, an active version that does not exist, a purge or
    /// certificate id above its counter. Both backends check it before
    /// writing anything.
    pub fn check(&self) -> Result<(), RestoreError> {
        let invalid = |m: String| Err(RestoreError::Invalid(m));
        if self.format != DUMP_FORMAT {
            return invalid(format!(
                "format {} (this edge-cp reads format {DUMP_FORMAT})",
                self.format
            ));
        }
        if self.epoch.is_empty() || self.epoch.len() > 128 {
            return invalid("the epoch must be 1 to 128 bytes".into());
        }
        let mut numbers = vec![
            ("revision", self.revision),
            ("purge_counter", self.purge_counter),
        ];
        let mut tenants = BTreeSet::new();
        for t in &self.tenants {
            if !tenants.insert(&t.id) {
                return invalid(format!("tenant {} twice", t.id));
            }
            numbers.push(("tenants.created_unix", t.created_unix));
            numbers.extend(
                t.storage_quota_bytes
                    .map(|q| ("tenants.storage_quota_bytes", q)),
            );
        }
        let mut apps = BTreeMap::new();
        for a in &self.apps {
            if !tenants.contains(&a.tenant) {
                return invalid(format!("app {} of unknown tenant {}", a.name, a.tenant));
            }
            if apps.insert((&a.tenant, &a.name), a).is_some() {
                return invalid(format!("app {} of tenant {} twice", a.name, a.tenant));
            }
            if a.origin.is_some() && a.active_version.is_some() {
                return invalid(format!("origin app {} has an active version", a.name));
            }
            if a.updated_revision > self.revision {
                return invalid(format!("app {} changed after the revision", a.name));
            }
            numbers.extend([
                ("apps.created_unix", a.created_unix),
                ("apps.updated_revision", a.updated_revision),
            ]);
            numbers.extend(a.active_version.map(|v| ("apps.active_version", v)));
        }
        let mut hosts = BTreeSet::new();
        for h in &self.hosts {
            if !apps.contains_key(&(&h.tenant, &h.app)) {
                return invalid(format!("hostname {} of unknown app {}", h.host, h.app));
            }
            if !hosts.insert(h.host.to_string()) {
                return invalid(format!("hostname {} twice", h.host));
            }
            numbers.push(("hosts.position", h.position));
        }
        let mut versions = BTreeSet::new();
        for v in &self.versions {
            match apps.get(&(&v.tenant, &v.app)) {
                None => return invalid(format!("version {} of unknown app {}", v.version, v.app)),
                Some(app) if app.origin.is_some() => {
                    return invalid(format!("origin app {} has versions", v.app));
                }
                Some(_) => {}
            }
            if !versions.insert((&v.tenant, &v.app, v.version)) {
                return invalid(format!("version {} of app {} twice", v.version, v.app));
            }
            numbers.extend([
                ("versions.version", v.version),
                ("versions.source_size", v.source_size),
                ("versions.artifact_size", v.artifact_size),
                ("versions.created_unix", v.created_unix),
            ]);
        }
        for a in &self.apps {
            if let Some(v) = a.active_version
                && !versions.contains(&(&a.tenant, &a.name, v))
            {
                return invalid(format!("app {}: active version {v} is missing", a.name));
            }
        }
        let mut deployment_ids = BTreeSet::new();
        for d in &self.deployments {
            if !deployment_ids.insert(d.id) {
                return invalid(format!("deployment {} twice", d.id));
            }
            if d.revision > self.revision {
                return invalid(format!("deployment {} after the revision", d.id));
            }
            numbers.extend([
                ("deployments.id", d.id),
                ("deployments.version", d.version),
                ("deployments.created_unix", d.created_unix),
            ]);
        }
        let mut artifacts = BTreeSet::new();
        for a in &self.artifacts {
            if !artifacts.insert((&a.source_sha256, &a.engine)) {
                return invalid(format!("artifact record of {} twice", a.source_sha256));
            }
            numbers.push(("artifacts.size", a.size));
        }
        let mut last_purge = 0;
        for p in &self.purges {
            if p.id <= last_purge || p.id > self.purge_counter {
                return invalid(format!(
                    "purge {} out of order or above the purge counter",
                    p.id
                ));
            }
            last_purge = p.id;
            numbers.push(("purges.created_unix", p.created_unix));
        }
        let mut nodes = BTreeSet::new();
        for n in &self.nodes {
            if !nodes.insert(&n.node) {
                return invalid(format!("node {} twice", n.node));
            }
            numbers.push(("nodes.last_seen_unix", n.last_seen_unix));
            numbers.extend(n.applied_revision.map(|r| ("nodes.applied_revision", r)));
            numbers.extend(n.rejected_revision.map(|r| ("nodes.rejected_revision", r)));
        }
        numbers.push(("certificate_counter", self.certificate_counter));
        let mut certificates = BTreeSet::new();
        for c in &self.certificates {
            if c.id == 0 || c.id > self.certificate_counter {
                return invalid(format!(
                    "certificate {} is 0 or above the certificate counter",
                    c.id
                ));
            }
            if !certificates.insert(c.id) {
                return invalid(format!("certificate {} twice", c.id));
            }
            if !apps.contains_key(&(&c.tenant, &c.app)) {
                return invalid(format!("certificate {} of unknown app {}", c.id, c.app));
            }
            numbers.extend([
                ("certificates.created_unix", c.created_unix),
                ("certificates.updated_unix", c.updated_unix),
            ]);
            numbers.extend(
                c.next_attempt_unix
                    .map(|n| ("certificates.next_attempt_unix", n)),
            );
            if let Some(m) = &c.material {
                numbers.extend([
                    ("certificates.bundle_size", m.bundle_size),
                    ("certificates.not_before_unix", m.not_before_unix),
                    ("certificates.not_after_unix", m.not_after_unix),
                ]);
            }
        }
        for ch in &self.acme_challenges {
            if !certificates.contains(&ch.certificate) {
                return invalid(format!(
                    "ACME challenge {} of unknown certificate {}",
                    ch.token, ch.certificate
                ));
            }
        }
        let mut directories = BTreeSet::new();
        for a in &self.acme_accounts {
            if !directories.insert(&a.directory) {
                return invalid(format!("ACME account of {} twice", a.directory));
            }
        }
        let mut policies = BTreeSet::new();
        for p in &self.app_outbound {
            match apps.get(&(&p.tenant, &p.app)) {
                None => return invalid(format!("outbound policy of unknown app {}", p.app)),
                Some(app) if app.origin.is_some() => {
                    return invalid(format!("origin app {} has an outbound policy", p.app));
                }
                Some(_) => {}
            }
            if !policies.insert((&p.tenant, &p.app)) {
                return invalid(format!("outbound policy of app {} twice", p.app));
            }
        }
        // Key-value stores: of known tenants, names once per tenant; links
        // of known apps to known stores; entries and drops of stores that
        // are (or, for a drop, are not) there, none above the counter.
        let mut kv_ids = BTreeSet::new();
        let mut kv_names = BTreeSet::new();
        for s in &self.kv_stores {
            if !tenants.contains(&s.tenant) {
                return invalid(format!("key-value store {} of unknown tenant", s.name));
            }
            if !kv_ids.insert(s.id.as_str()) || !kv_names.insert((&s.tenant, s.name.as_str())) {
                return invalid(format!("key-value store {} twice", s.name));
            }
        }
        for l in &self.kv_links {
            if !apps.contains_key(&(&l.tenant, &l.app)) || !kv_ids.contains(l.store.as_str()) {
                return invalid(format!("key-value link of unknown app {} or store", l.app));
            }
        }
        for e in &self.kv_entries {
            if !kv_ids.contains(e.store.as_str()) || e.seq > self.kv_seq {
                return invalid(format!("key-value entry {} of unknown store or seq", e.key));
            }
        }
        for d in &self.kv_drops {
            if kv_ids.contains(d.store.as_str()) || d.seq > self.kv_seq {
                return invalid(format!(
                    "key-value drop of live store {} or over the seq",
                    d.store
                ));
            }
        }
        if self.kv_pruned > self.kv_seq {
            return invalid("the key-value prune mark is over the seq".into());
        }
        let mut limited = BTreeSet::new();
        for l in &self.tenant_limits {
            if !tenants.contains(&l.tenant) {
                return invalid(format!("limits of unknown tenant {}", l.tenant));
            }
            if !limited.insert(&l.tenant) {
                return invalid(format!("limits of tenant {} twice", l.tenant));
            }
        }
        // Secrets: of a component app, once each; a bundle exactly for
        // each app that has secrets.
        let mut secrets = BTreeSet::new();
        for s in &self.secrets {
            match apps.get(&(&s.tenant, &s.app)) {
                None => return invalid(format!("secret {} of unknown app {}", s.name, s.app)),
                Some(app) if app.origin.is_some() => {
                    return invalid(format!("origin app {} has secrets", s.app));
                }
                Some(_) => {}
            }
            if !edge_common::secrets::is_valid_key(&s.name) {
                return invalid(format!("secret name {:?} of app {}", s.name, s.app));
            }
            if !secrets.insert((&s.tenant, &s.app, &s.name)) {
                return invalid(format!("secret {} of app {} twice", s.name, s.app));
            }
            numbers.extend([
                ("secrets.created_unix", s.created_unix),
                ("secrets.updated_unix", s.updated_unix),
            ]);
        }
        let with_secrets: BTreeSet<_> = secrets.iter().map(|(t, a, _)| (*t, *a)).collect();
        let mut bundles = BTreeSet::new();
        for b in &self.secret_bundles {
            if !with_secrets.contains(&(&b.tenant, &b.app)) {
                return invalid(format!("secrets bundle of app {} without secrets", b.app));
            }
            if !bundles.insert((&b.tenant, &b.app)) {
                return invalid(format!("secrets bundle of app {} twice", b.app));
            }
            numbers.push(("secret_bundles.size", b.size));
        }
        if let Some((t, a)) = with_secrets.iter().find(|k| !bundles.contains(*k)) {
            return invalid(format!("secrets of app {a} of tenant {t} without a bundle"));
        }
        if let Some((field, value)) = numbers.iter().find(|(_, v)| *v > MAX_STORED) {
            return invalid(format!("{field} {value} is over {MAX_STORED}"));
        }
        Ok(())
    }
}

/// A random name for a new store (or a renewed one).
pub(crate) fn new_epoch() -> Result<String, super::StoreError> {
    Ok(super::random_id::random_id()?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A dump as a control plane wrote it before certificates existed.
    const BEFORE_CERTIFICATES: &str = r#"{
        "format": 1, "epoch": "e1", "revision": 3, "purge_counter": 0,
        "tenants": [{"id": "acme", "created_unix": 1, "storage_quota_bytes": null}],
        "apps": [{"tenant": "acme", "name": "web", "active_version": null, "origin": null,
                  "forward_override_headers": false, "config": {}, "limits": {},
                  "created_unix": 1, "updated_revision": 3}],
        "hosts": [{"host": "web.test", "tenant": "acme", "app": "web", "position": 0}],
        "versions": [], "deployments": [], "artifacts": [], "purges": [], "nodes": []
    }"#;

    #[test]
    fn a_dump_from_before_certificates_still_reads_and_checks() {
        let dump: StoreDump = serde_json::from_str(BEFORE_CERTIFICATES).unwrap();
        dump.check().unwrap();
        assert_eq!(dump.apps[0].https, AppHttps::default());
        assert_eq!(dump.certificate_counter, 0);
        assert!(dump.certificates.is_empty() && dump.acme_challenges.is_empty());
        assert!(dump.acme_accounts.is_empty());
    }

    fn with_certificate() -> StoreDump {
        let mut dump: StoreDump = serde_json::from_str(BEFORE_CERTIFICATES).unwrap();
        dump.certificate_counter = 4;
        dump.certificates.push(CertificateRow {
            id: 3,
            tenant: "acme".parse().unwrap(),
            app: "web".parse().unwrap(),
            hosts: vec![HostPattern::try_from("web.test".to_string()).unwrap()],
            source: CertSource::Uploaded,
            material: Some(CertMaterialRow {
                chain_pem: "chain".into(),
                sealed_key: vec![0, 1, 0xab, 0xff],
                bundle_sha256: "ab".repeat(32),
                bundle_size: 10,
                issuer: "CN=ca".into(),
                not_before_unix: 1,
                not_after_unix: 2,
            }),
            last_error: None,
            attempts: 0,
            next_attempt_unix: None,
            renew_requested: false,
            created_unix: 1,
            updated_unix: 1,
        });
        dump.acme_accounts.push(AcmeAccountRow {
            directory: "https://ca.test/dir".into(),
            sealed: vec![7, 0x80],
        });
        dump
    }

    #[test]
    fn sealed_bytes_travel_as_hex_and_come_back_the_same() {
        let dump = with_certificate();
        dump.check().unwrap();
        let text = serde_json::to_string(&dump).unwrap();
        assert!(text.contains(r#""sealed_key":"0001abff""#), "{text}");
        assert!(text.contains(r#""sealed":"0780""#), "{text}");
        assert!(text.contains(r#""source":"uploaded""#), "{text}");
        let back: StoreDump = serde_json::from_str(&text).unwrap();
        assert_eq!(back, dump);
    }

    #[test]
    fn malformed_sealed_bytes_are_refused_when_read() {
        let text = serde_json::to_string(&with_certificate()).unwrap();
        for (bad, why) in [(r#""0001abf""#, "odd"), (r#""0001abzz""#, "not a hex")] {
            let broken = text.replace(r#""0001abff""#, bad);
            let error = serde_json::from_str::<StoreDump>(&broken).unwrap_err();
            assert!(error.to_string().contains(why), "{error}");
        }
    }

    #[test]
    fn a_certificate_of_another_tenants_app_is_invalid() {
        let mut dump = with_certificate();
        dump.tenants.push(TenantRow {
            id: "other".parse().unwrap(),
            created_unix: 1,
            storage_quota_bytes: None,
        });
        dump.certificates[0].tenant = "other".parse().unwrap();
        match dump.check() {
            Err(RestoreError::Invalid(why)) => assert!(why.contains("unknown app"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
}
