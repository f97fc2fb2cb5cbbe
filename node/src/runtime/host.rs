//! Per-request host state (`T` in `Store<T>`) and the interfaces the node
//! gives a guest: wasi:http, wasi:io, wasi:clocks, wasi:random, wasi:cli
//! (environment = the app's config values, stdout/stderr = logs, exit) and
//! wasi:config/store@0.2.0-rc.1 (the app's config values and secrets,
//! built once per app load; a request holds only an `Arc` to them), and
//! wasi:keyvalue@0.2.0-draft with edge:keyvalue/cas (`crate::kv::host`).
//!
//! wasi:filesystem and wasi:sockets are linked too, because language
//! runtimes (componentize-py's CPython, ComponentizeJS's StarlingMonkey,
//! wasi-libc) import them whether or not the app uses them, but they give
//! nothing: no directory is preopened, so the guest sees an empty
//! filesystem, and every socket use is refused by policy (access denied)
//! before any real socket exists. Outbound HTTP, through
//! [`OutboundPolicy`], stays the only way out.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use wasmtime::component::{Linker, ResourceTable};

use wasmtime::Engine;
use wasmtime_wasi::cli::WasiCliView;
use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView};
use wasmtime_wasi::p2::bindings::{cli, filesystem, random, sockets};
use wasmtime_wasi::sockets::{WasiSockets, WasiSocketsView};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_config::{WasiConfig, WasiConfigVariables};
use wasmtime_wasi_http::{
    Error as HttpError, RequestOptions, WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks,
    WasiHttpView,
};

use super::guest_log::{GuestLog, LogContext};
use super::limits::{CpuTicks, InstanceLimits};
use crate::outbound::{OutboundPolicy, SendRequestFuture};

/// The one linker of the node.
pub fn linker(engine: &Engine) -> wasmtime::Result<Linker<Host>> {
    let mut linker = Linker::new(engine);
    // wasi:http/proxy: http, io, clocks, random, stdio.
    wasmtime_wasi_http::p2::add_to_linker_async(&mut linker)?;
    // What Rust std (and most toolchains) import on top of the proxy world.
    type Cli = wasmtime_wasi::cli::WasiCli;
    type Random = wasmtime_wasi::random::WasiRandom;
    let l = &mut linker;
    cli::environment::add_to_linker::<Host, Cli>(l, Host::cli)?;
    cli::exit::add_to_linker::<Host, Cli>(l, Host::cli)?;
    cli::terminal_input::add_to_linker::<Host, Cli>(l, Host::cli)?;
    cli::terminal_output::add_to_linker::<Host, Cli>(l, Host::cli)?;
    cli::terminal_stdin::add_to_linker::<Host, Cli>(l, Host::cli)?;
    cli::terminal_stdout::add_to_linker::<Host, Cli>(l, Host::cli)?;
    cli::terminal_stderr::add_to_linker::<Host, Cli>(l, Host::cli)?;
    random::insecure::add_to_linker::<Host, Random>(l, |h| h.wasi.random())?;
    random::insecure_seed::add_to_linker::<Host, Random>(l, |h| h.wasi.random())?;
    // What language runtimes import and apps need not use: an empty
    // filesystem and sockets that refuse (see `Host::new` for the policy).
    filesystem::types::add_to_linker::<Host, WasiFilesystem>(l, Host::filesystem)?;
    filesystem::preopens::add_to_linker::<Host, WasiFilesystem>(l, Host::filesystem)?;
    sockets::network::add_to_linker::<Host, WasiSockets>(l, &Default::default(), Host::sockets)?;
    sockets::instance_network::add_to_linker::<Host, WasiSockets>(l, Host::sockets)?;
    sockets::tcp::add_to_linker::<Host, WasiSockets>(l, Host::sockets)?;
    sockets::tcp_create_socket::add_to_linker::<Host, WasiSockets>(l, Host::sockets)?;
    sockets::udp::add_to_linker::<Host, WasiSockets>(l, Host::sockets)?;
    sockets::udp_create_socket::add_to_linker::<Host, WasiSockets>(l, Host::sockets)?;
    sockets::ip_name_lookup::add_to_linker::<Host, WasiSockets>(l, Host::sockets)?;
    // WASI 0.3: wasi:http's `service` imports, and wasi:cli, clocks,
    // random, filesystem and sockets at 0.3, under the same `WasiCtx`
    // policy as their 0.2 counterparts (nothing preopened, sockets refused).
    wasmtime_wasi_http::p3::add_to_linker(l)?;
    wasmtime_wasi::p3::add_to_linker(l)?;
    // wasi:config/store: `get`/`get-all` over the app's variables.
    wasmtime_wasi_config::add_to_linker(l, |h: &mut Host| WasiConfig::new(&h.config))?;
    // wasi:keyvalue (0.2.0-draft) and edge:keyvalue/cas: the app's stores.
    crate::kv::host::add_to_linker(l, |h: &mut Host| crate::kv::host::KvHost {
        table: &mut h.table,
        request: &mut h.kv,
    })?;
    Ok(linker)
}

/// Bound on one header or trailer map a guest builds, in host memory.
const MAX_FIELDS_BYTES: usize = 128 << 10;

/// State of one request's store.
pub struct Host {
    table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: OutboundPolicy,
    /// What wasi:config serves: the app's config values and secrets.
    config: Arc<WasiConfigVariables>,
    /// The app's key-value stores and this request's op count.
    kv: crate::kv::host::KvRequest,
    pub(super) limits: InstanceLimits,
    /// Epoch ticks of CPU charged to this request.
    pub(super) cpu_ticks: u64,
}

/// What a request's host state is built from.
pub struct HostSetup<'a> {
    pub env: &'a [(String, String)],
    /// The app's wasi:config variables (config values and secrets).
    pub config: Arc<WasiConfigVariables>,
    /// The stores the app may open (`None`: none, no control plane).
    pub kv: Option<Arc<crate::kv::AppKv>>,
    pub log: LogContext,
    pub max_memory_bytes: usize,
    pub max_table_elements: usize,
    pub max_resources: usize,
    pub outbound: OutboundPolicy,
    /// Set when the guest hits its memory or table limit.
    pub limit_hit: Arc<AtomicBool>,
}

impl CpuTicks for Host {
    fn cpu_ticks(&mut self) -> &mut u64 {
        &mut self.cpu_ticks
    }
}

impl Host {
    pub fn new(setup: HostSetup<'_>) -> Self {
        let mut wasi = WasiCtxBuilder::new();
        // Only the app's own config values: nothing of the node's environment.
        wasi.envs(setup.env);
        let (stdout, stderr) = GuestLog::pair(setup.log);
        wasi.stdout(stdout);
        wasi.stderr(stderr);
        // wasmtime's defaults already refuse every socket use and preopen
        // nothing; spelled out so a change of default cannot open a hole.
        // Creating a TCP or UDP socket fails with access-denied before an
        // OS socket exists, and name lookups are refused the same way.
        wasi.allow_tcp(false);
        wasi.allow_udp(false);
        wasi.allow_ip_name_lookup(false);
        wasi.socket_addr_check(|_, _| Box::pin(async { false }));
        let mut table = ResourceTable::new();
        table.set_max_capacity(setup.max_resources);
        let mut http = WasiHttpCtx::new();
        // Per header/trailer map, in host memory: generous for real headers
        // (proxies limit them to 8-64 KiB), bounded for hostile ones.
        http.set_field_size_limit(MAX_FIELDS_BYTES);
        Host {
            table,
            wasi: wasi.build(),
            http,
            hooks: setup.outbound,
            config: setup.config,
            kv: crate::kv::host::KvRequest {
                app: setup.kv,
                ops: 0,
            },
            limits: InstanceLimits {
                max_memory_bytes: setup.max_memory_bytes,
                max_table_elements: setup.max_table_elements,
                hit: setup.limit_hit,
                peak_memory_bytes: 0,
            },
            cpu_ticks: 0,
        }
    }
}

impl WasiView for Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for Host {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

impl WasiHttpHooks for OutboundPolicy {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> SendRequestFuture {
        self.send(request, options)
    }

    /// The most a WASI 0.3 guest's body write is copied into host memory
    /// at once (wasmtime's default is 1 MiB): with the one-chunk channel
    /// behind it, each p3 body buffers at most about two of these
    /// (GHSA-x84v-gj2h-g759 was this copy being guest-sized).
    fn p3_outgoing_body_chunk_size(&mut self) -> usize {
        P3_BODY_CHUNK_BYTES
    }
}

/// See [`WasiHttpHooks::p3_outgoing_body_chunk_size`] for [`OutboundPolicy`].
const P3_BODY_CHUNK_BYTES: usize = 64 << 10;
