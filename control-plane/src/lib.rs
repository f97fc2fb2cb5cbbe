//! The control plane: tenants upload components through a JWT-authenticated
//! API; uploads are validated and precompiled with the engine configuration
//! nodes use; every change bumps a revision that nodes long-poll for and
//! receive as a signed snapshot.
//!
//! [`ControlPlane::start`] opens the data directory (keys, SQLite metadata,
//! blobs) or the PostgreSQL metadata store it is given, binds the listener
//! and serves [`api`]. [`migrate`] copies a store to another backend.

pub mod acme;
pub mod admin;
pub mod api;
pub mod auth;
pub mod certs;
pub mod compile;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod gc;
pub mod keys;
pub mod metrics;
pub mod migrate;
pub mod seal;
pub mod server;
pub mod settings;
pub mod store;
pub mod sync;
pub mod uploads;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use edge_common::CompileSettings;
use edge_common::signing::SigningKey;

use crate::api::ApiState;
use crate::auth::Auth;
use crate::compile::Compiler;
use crate::keys::{KekSource, KeySource};
use crate::settings::{AcmeConfig, ApiSettings};
use crate::store::fs::FsBlobStore;
use crate::store::location::MetaLocation;
use crate::store::s3::{S3BlobStore, S3Config, S3OpenError};
use crate::store::{BlobStore, MetaStore, StoreError};

/// Everything `edge-cp serve` needs.
#[derive(Debug, Clone)]
pub struct CpConfig {
    pub data_dir: PathBuf,
    /// The signing keys: under `data_dir` by default, or a keys directory
    /// every replica shares.
    pub keys: KeySource,
    /// The key-encryption keyring sealing tenants' TLS keys at rest: the
    /// keys directory's `kek` by default.
    pub kek: KekSource,
    /// The ACME CA tenants' certificates are issued by; none by default
    /// (certificates are then only uploaded).
    pub acme: Option<AcmeConfig>,
    /// The metadata store: SQLite in `data_dir` by default, or a
    /// PostgreSQL database every replica shares.
    pub metadata: MetaLocation,
    pub listen: SocketAddr,
    /// PEM certificate chain and key for HTTPS; `None` serves plaintext,
    /// which is refused on anything but a loopback address.
    pub tls: Option<(PathBuf, PathBuf)>,
    pub api: ApiSettings,
    /// Client connections: caps and deadlines.
    pub connections: server::ConnectionSettings,
    /// Compilations run at once.
    pub compile_parallelism: usize,
    /// The admin listener (`/metrics`, `/healthz`, `/readyz`); none by
    /// default.
    pub admin: Option<SocketAddr>,
    /// Where blobs (sources, compiled artifacts) live.
    pub blobs: BlobsConfig,
}

/// Where the blob store is: `--blobs`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum BlobsConfig {
    /// `DATA_DIR/blobs` ([`FsBlobStore`]).
    #[default]
    DataDir,
    /// An S3-compatible bucket ([`S3BlobStore`]), shared by replicas.
    S3(S3Config),
}

impl CpConfig {
    pub fn new(data_dir: impl Into<PathBuf>, listen: SocketAddr) -> Self {
        let data_dir = data_dir.into();
        Self {
            keys: KeySource::DataDir(data_dir.clone()),
            kek: KekSource::KeysDir,
            acme: None,
            metadata: MetaLocation::Sqlite {
                data_dir: data_dir.clone(),
            },
            data_dir,
            listen,
            tls: None,
            api: ApiSettings::default(),
            connections: server::ConnectionSettings::default(),
            compile_parallelism: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            admin: None,
            blobs: BlobsConfig::DataDir,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CpError {
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Key(#[from] keys::KeyFileError),
    #[error(transparent)]
    Keyring(#[from] keys::CheckError),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("blob store: {0}")]
    S3Blobs(#[from] S3OpenError),
    #[error("cannot set up the metrics registry: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("cannot create the compiler engine: {0:#}")]
    Engine(wasmtime::Error),
    #[error(transparent)]
    Server(#[from] server::ServerError),
    #[error("signing key: {0}")]
    SigningKey(#[from] edge_common::signing::KeyError),
}

pub struct ControlPlane;

impl ControlPlane {
    pub async fn start(config: CpConfig) -> Result<server::ServerHandle, CpError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| CpError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let auth = open_auth(&config.keys)?;
        let sync_key = SigningKey::from_pkcs8(&config.keys.sync_key()?)?;
        let kek = Arc::new(config.kek.load(&config.keys)?);
        let store: Arc<dyn MetaStore> = config.metadata.open().await?;
        keys::check_keyring(&kek, store.as_ref()).await?;
        let blobs: Arc<dyn BlobStore> = match &config.blobs {
            BlobsConfig::DataDir => Arc::new(FsBlobStore::open(&config.data_dir)?),
            BlobsConfig::S3(s3) => Arc::new(S3BlobStore::open(s3).await?),
        };
        // Every backend's calls are timed and its failures counted.
        let metrics = Arc::new(metrics::CpMetrics::new()?);
        let store: Arc<dyn MetaStore> = Arc::new(store::instrumented::InstrumentedMeta::new(
            store,
            metrics.store.clone(),
        ));
        let blobs: Arc<dyn BlobStore> = Arc::new(store::instrumented::InstrumentedBlobs::new(
            blobs,
            metrics.store.clone(),
        ));
        let compiler = Compiler::new(&CompileSettings::default(), config.compile_parallelism)
            .map_err(CpError::Engine)?;
        let revision = store.revision().await?;
        tracing::info!(
            revision,
            // Shown with any password as ***.
            metadata = %config.metadata,
            engine = compiler.engine_hash(),
            sync_key = %sync_key.verifying_key().to_hex(),
            kek = %kek.current_id(),
            acme = config.acme.as_ref().map_or("off", |a| a.directory.as_str()),
            "control plane state opened"
        );
        let settings = &config.api;
        let hub = sync::SyncHub::new(store.clone(), sync_key, revision);
        // The key-value watch starts at the head, so the first long polls
        // wait for a newer commit rather than for any.
        let kv_head = store.kv_head().await?.seq;
        hub.notify_kv(kv_head);
        metrics
            .kv_seq
            .set(i64::try_from(kv_head).unwrap_or(i64::MAX));
        if let store::location::MetaLocation::Postgres(url) = &config.metadata {
            hub.follow_replicas(url.config().clone());
        }
        let acme_wake = Arc::new(tokio::sync::Notify::new());
        let state = Arc::new(ApiState {
            hub,
            gc: gc::BlobGc::start(
                store.clone(),
                blobs.clone(),
                settings.blob_gc_grace,
                settings.blob_gc_interval,
            ),
            store,
            blobs,
            auth,
            compiler,
            settings: settings.clone(),
            uploads: uploads::UploadSlots::new(
                settings.max_concurrent_uploads,
                settings.upload_slots_per_tenant,
            ),
            metrics,
            kek,
            acme: config.acme.clone(),
            acme_wake: acme_wake.clone(),
            log_rates: Default::default(),
        });
        if let Some(acme) = &config.acme {
            acme::spawn(acme.clone(), Arc::downgrade(&state), acme_wake);
        }
        api::spawn_log_sweeper(Arc::downgrade(&state));
        api::spawn_kv_pruner(Arc::downgrade(&state));
        let admin = match config.admin {
            Some(addr) => Some(admin::bind(addr).await?),
            None => None,
        };
        let handle = server::serve(
            config.listen,
            config.tls.as_ref(),
            state.clone(),
            config.connections.clone(),
        )
        .await?;
        Ok(match admin {
            Some((listener, addr)) => handle.with_admin(addr, admin::spawn(listener, state)),
            None => handle,
        })
    }
}

/// The token authority of `keys` (with the key rotated out, if kept).
pub fn open_auth(keys: &KeySource) -> Result<Auth, CpError> {
    let current = keys.token_key()?;
    let previous = keys.previous_token_key()?;
    Ok(Auth::with_previous(&current, previous.as_deref())?)
}

/// The hex public key nodes pin to verify snapshots.
pub fn sync_public_key(keys: &KeySource) -> Result<String, CpError> {
    Ok(SigningKey::from_pkcs8(&keys.sync_key()?)?
        .verifying_key()
        .to_hex())
}
