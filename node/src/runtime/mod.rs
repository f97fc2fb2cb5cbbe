//! The wasmtime runtime: one `Engine` with the pooling allocator, one
//! `Linker`, an epoch ticker thread, and a pre-instantiated component per
//! loaded app: WASI 0.2 (`ProxyPre`) or WASI 0.3 (`ServicePre`).
//! Per request only a `Store` is created and the component instantiated from
//! a warm pool slot (see [`invoke`]).

mod epoch;
mod guest_log;
mod host;
pub mod invoke;
pub mod limits;

use std::path::Path;
use std::sync::Arc;

use edge_common::world::HttpWorld;
use edge_common::{CompileSettings, compile_config};
use wasmtime::component::{Component, Linker};
use wasmtime::{Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p3::bindings::ServicePre;

use crate::config::{PagemapScan, RuntimeConfig};
pub use host::Host;
pub use invoke::{GuestApp, GuestError, GuestResponse};

/// A component compiled and linked, ready to instantiate per request.
#[derive(Clone)]
pub enum LoadedComponent {
    /// Exports `wasi:http/incoming-handler@0.2.x` (the `proxy` world).
    P2(ProxyPre<Host>),
    /// Exports `wasi:http/handler@0.3.x` (the `service` world).
    P3(ServicePre<Host>),
}

impl LoadedComponent {
    pub fn world(&self) -> HttpWorld {
        match self {
            LoadedComponent::P2(_) => HttpWorld::P2,
            LoadedComponent::P3(_) => HttpWorld::P3,
        }
    }
}

/// Why a component could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("the app has neither a component nor an origin")]
    NoBackend,
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("not a valid WebAssembly component: {0:#}")]
    Compile(wasmtime::Error),
    #[error(
        "the component imports {0}, which this node does not provide (it provides {summary}, WASI up to {major}.{minor}.{patch})",
        summary = edge_common::world::PROVIDED_SUMMARY,
        major = edge_common::world::WASI_VERSION.0,
        minor = edge_common::world::WASI_VERSION.1,
        patch = edge_common::world::WASI_VERSION.2
    )]
    UnsupportedImport(String),
    #[error("cannot load the precompiled artifact (compiled for another engine?): {0:#}")]
    Artifact(wasmtime::Error),
    #[error("cannot link the component: {0:#}")]
    Link(wasmtime::Error),
    #[error(
        "the component exports no HTTP handler (wasi:http/incoming-handler@0.2.x or wasi:http/handler@0.3.x)"
    )]
    NoHttpHandler,
    #[error("the component's HTTP handler does not have the expected type: {0:#}")]
    NotAProxy(wasmtime::Error),
    /// An app setting the node cannot serve (its HTTPS options); config
    /// validation names the field first.
    #[error("{0}")]
    Invalid(String),
}

/// Why the runtime could not start.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot create the wasmtime engine: {0:#}")]
    Engine(wasmtime::Error),
    #[error("cannot set up the linker: {0:#}")]
    Linker(wasmtime::Error),
    #[error("cannot start the epoch ticker thread: {0}")]
    Ticker(std::io::Error),
}

pub struct Runtime {
    engine: Engine,
    linker: Linker<Host>,
    pub(crate) settings: Arc<RuntimeConfig>,
    pub(crate) outbound: Arc<crate::outbound::OutboundClient>,
    ticker: epoch::EpochTicker,
}

impl Runtime {
    pub fn new(
        settings: &RuntimeConfig,
        compile: &CompileSettings,
        outbound: Arc<crate::outbound::OutboundClient>,
    ) -> Result<Self, RuntimeError> {
        let mut config = compile_config(compile);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling_config(
            settings,
        )));
        // Copy-on-write images of each module's initial memory: instantiation
        // maps the image instead of copying data segments.
        config.memory_init_cow(true);
        let engine = Engine::new(&config).map_err(RuntimeError::Engine)?;
        let linker = host::linker(&engine).map_err(RuntimeError::Linker)?;
        let ticker = epoch::EpochTicker::start(engine.clone(), settings.epoch_tick)
            .map_err(RuntimeError::Ticker)?;
        Ok(Self {
            engine,
            linker,
            settings: Arc::new(settings.clone()),
            outbound,
            ticker,
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compiles a `.wasm` component from disk and links it.
    pub fn load_file(&self, path: &Path) -> Result<LoadedComponent, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.display().to_string(),
            source,
        })?;
        self.load_bytes(&bytes)
    }

    /// Compiles component bytes and links them.
    pub fn load_bytes(&self, wasm: &[u8]) -> Result<LoadedComponent, LoadError> {
        let component = Component::new(&self.engine, wasm).map_err(LoadError::Compile)?;
        self.link(&component)
    }

    /// Loads a component precompiled by the control plane.
    ///
    /// Only call this with bytes whose SHA-256 is listed in a snapshot
    /// whose signature has been verified with the pinned control-plane key
    /// (the sync module does): deserializing is loading machine code, so
    /// bytes from anyone else would be arbitrary code execution. wasmtime
    /// itself refuses artifacts compiled for a different engine
    /// configuration or version.
    pub fn load_trusted_artifact(&self, artifact: &[u8]) -> Result<LoadedComponent, LoadError> {
        #[allow(unsafe_code)]
        // SAFETY: the caller guarantees the bytes were produced by our own
        // control plane's `Component::serialize` (signed digest, verified).
        let component = unsafe { Component::deserialize(&self.engine, artifact) }
            .map_err(LoadError::Artifact)?;
        self.link(&component)
    }

    fn link(&self, component: &Component) -> Result<LoadedComponent, LoadError> {
        // Checked up front so the error lists every offending import
        // instead of wasmtime's first failure.
        let missing = edge_common::world::unsupported_imports(component, &self.engine);
        if !missing.is_empty() {
            return Err(LoadError::UnsupportedImport(missing.join(", ")));
        }
        let pre = self
            .linker
            .instantiate_pre(component)
            .map_err(LoadError::Link)?;
        match edge_common::world::http_world(component, &self.engine) {
            Some(HttpWorld::P3) => ServicePre::new(pre)
                .map(LoadedComponent::P3)
                .map_err(LoadError::NotAProxy),
            Some(HttpWorld::P2) => ProxyPre::new(pre)
                .map(LoadedComponent::P2)
                .map_err(LoadError::NotAProxy),
            None => Err(LoadError::NoHttpHandler),
        }
    }
}

fn pooling_config(settings: &RuntimeConfig) -> PoolingAllocationConfig {
    let slots = settings.instance_slots;
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(slots);
    // A Rust component built by wit-component has its main module plus a few
    // shim/fixup modules: core instances, tables and memories per component
    // are small numbers, bounded here so one odd component cannot use up
    // the pool.
    pool.max_core_instances_per_component(16);
    pool.max_memories_per_component(2);
    pool.max_tables_per_component(8);
    pool.total_core_instances(slots.saturating_mul(6));
    pool.total_memories(slots.saturating_mul(2));
    pool.total_tables(slots.saturating_mul(6));
    pool.total_stacks(slots);
    pool.max_memory_size(settings.max_memory_bytes as usize);
    // Keep-resident + pagemap scan + batched decommit: a reused slot resets
    // only the pages the last request dirtied, and returns memory to the
    // kernel in batches instead of an madvise (and TLB shootdown) per request.
    // Measured with `wasmtime serve` on a 2-core VM: 11.7k → 26k req/s.
    pool.linear_memory_keep_resident(settings.keep_resident_memory_bytes as usize);
    pool.table_keep_resident(settings.keep_resident_table_bytes as usize);
    pool.async_stack_keep_resident(settings.keep_resident_stack_bytes as usize);
    pool.decommit_batch_size(settings.decommit_batch_size as usize);
    pool.pagemap_scan(match settings.pagemap_scan {
        PagemapScan::Auto => Enabled::Auto,
        PagemapScan::Yes => Enabled::Yes,
        PagemapScan::No => Enabled::No,
    });
    pool
}
