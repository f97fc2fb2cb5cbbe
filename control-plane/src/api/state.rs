//! What every handler works with: the stores, the token authority, the
//! compiler, the sync hub and the API's limits.

use std::sync::Arc;

use crate::auth::Auth;
use crate::compile::Compiler;
use crate::gc::BlobGc;
use crate::metrics::CpMetrics;
use crate::seal::Keyring;
use crate::settings::{AcmeConfig, ApiSettings};
use crate::store::{BlobStore, MetaStore};
use crate::sync::SyncHub;
use crate::uploads::UploadSlots;

pub struct ApiState {
    pub store: Arc<dyn MetaStore>,
    pub blobs: Arc<dyn BlobStore>,
    pub auth: Auth,
    pub compiler: Compiler,
    pub hub: SyncHub,
    pub settings: ApiSettings,
    /// Uploads being received at once, in all and per tenant
    /// (`settings.max_concurrent_uploads`, `upload_slots_per_tenant`):
    /// each is held in memory (up to `max_upload_bytes`) until compiled
    /// and stored.
    pub uploads: Arc<UploadSlots>,
    /// Deletes blobs no version references; woken after deletions.
    pub gc: BlobGc,
    /// What the admin listener's `/metrics` serves.
    pub metrics: Arc<CpMetrics>,
    /// Seals tenants' TLS private keys (and the ACME account) at rest, and
    /// opens them for nodes.
    pub kek: Arc<Keyring>,
    /// The ACME CA, if one is configured (else ACME requests are refused
    /// with `acme-not-configured`).
    pub acme: Option<AcmeConfig>,
    /// Wakes the ACME worker (`crate::acme`): a certificate was requested
    /// or a renewal forced.
    pub acme_wake: Arc<tokio::sync::Notify>,
    /// Live logs' per-tenant rates on this replica (follower starts,
    /// lines posted).
    pub log_rates: super::log_rates::LogRates,
}
