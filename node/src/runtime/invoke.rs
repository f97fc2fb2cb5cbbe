//! One request through a component: a fresh `Store`, an instance from the
//! pool, the guest's handler (`wasi:http/incoming-handler.handle` for WASI
//! 0.2, `wasi:http/handler.handle` for WASI 0.3), and the response handed
//! back as soon as the guest has one while the guest keeps streaming the
//! body.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use wasmtime::Store;
use wasmtime::component::Resource;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::p2::types::{HostIncomingRequest, HostResponseOutparam};
use wasmtime_wasi_http::p3::bindings::ServicePre;
use wasmtime_wasi_http::{Error as HttpError, WasiHttpView};

use super::guest_log::{GuestLogLimits, LogContext};
use super::host::{Host, HostSetup};
use super::limits::{LimitExceeded, enforce_cpu_budget};
use super::{LoadedComponent, Runtime};
use crate::config::{AppLimits, AppOutbound};
use crate::metrics::AppMetrics;
use crate::outbound::OutboundPolicy;
use crate::request_id::RequestId;

/// What the runtime needs of an app to run one of its requests. The app
/// itself (`App`, in the `app` module) stands above the runtime (it holds a
/// loaded component), so the runtime names only this.
pub trait GuestApp: Send + Sync + 'static {
    fn component(&self) -> Option<&super::LoadedComponent>;
    /// The app's config values: the guest's whole environment.
    fn env(&self) -> &[(String, String)];
    /// What the guest reads through wasi:config: config values and
    /// secrets, built when the app was loaded.
    fn config_store(&self) -> &Arc<wasmtime_wasi_config::WasiConfigVariables>;
    fn limits(&self) -> &AppLimits;
    fn outbound(&self) -> &Arc<AppOutbound>;
    /// The tenant's and the app's names, as logs and metrics carry them.
    fn names(&self) -> (&Arc<str>, &Arc<str>);
    fn metrics(&self) -> &AppMetrics;
    /// The key-value stores the app may open (none by default).
    fn kv(&self) -> Option<&Arc<crate::kv::AppKv>> {
        None
    }
}

/// How a guest failed to produce a response.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    #[error("the guest trapped ({kind}): {source:#}")]
    Trap {
        kind: TrapKind,
        source: wasmtime::Error,
    },
    #[error("the guest returned without setting a response")]
    NoResponse,
    #[error("the guest used more than its {0:?} of CPU time")]
    CpuTimeExceeded(Duration),
    #[error("the request took longer than its {0:?} wall-time limit")]
    WallTimeExceeded(Duration),
    #[error("the guest hit its memory or table limit")]
    MemoryLimitExceeded,
    #[error("the guest answered with error code {0:?}")]
    ErrorCode(HttpError),
    #[error("no free instance slot: {0:#}")]
    PoolExhausted(wasmtime::Error),
    #[error("instantiation failed: {0:#}")]
    Instantiate(wasmtime::Error),
    #[error("host error preparing the request: {0:#}")]
    Host(wasmtime::Error),
    #[error("the guest task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// The response a guest set, while it may still be writing the body.
pub struct GuestResponse {
    pub response: http::Response<HyperOutgoingBody>,
    /// Set if the guest fails before finishing the body, so the body can
    /// end in an error rather than look complete.
    pub guest_failed: Arc<AtomicBool>,
    /// Resolves (sent or dropped) once the guest's task is over and the
    /// request's admission permits are released.
    pub guest_done: tokio::sync::oneshot::Receiver<()>,
}

/// What kind of trap ended a guest: the `kind` label of `edge_guest_traps_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrapKind {
    /// `unreachable`: how a Rust panic ends on wasm32-wasip2.
    Unreachable,
    StackOverflow,
    MemoryOutOfBounds,
    /// An epoch deadline interrupted it.
    Interrupt,
    /// It called `wasi:cli/exit`.
    Exit,
    /// Its CPU budget ran out.
    CpuTime,
    /// It ran into its memory or table limit (and trapped on the failure).
    MemoryLimit,
    Other,
}

impl TrapKind {
    /// Classifies a trap; `limit_hit` says whether the guest was refused
    /// memory or table growth during the request.
    pub fn of(err: &wasmtime::Error, limit_hit: bool) -> TrapKind {
        if err.downcast_ref::<LimitExceeded>().is_some() {
            return TrapKind::CpuTime;
        }
        if limit_hit {
            return TrapKind::MemoryLimit;
        }
        if let Some(trap) = err.downcast_ref::<wasmtime::Trap>() {
            return match trap {
                wasmtime::Trap::UnreachableCodeReached => TrapKind::Unreachable,
                wasmtime::Trap::StackOverflow => TrapKind::StackOverflow,
                wasmtime::Trap::MemoryOutOfBounds => TrapKind::MemoryOutOfBounds,
                wasmtime::Trap::Interrupt => TrapKind::Interrupt,
                _ => TrapKind::Other,
            };
        }
        if err.downcast_ref::<wasmtime_wasi::I32Exit>().is_some() {
            return TrapKind::Exit;
        }
        TrapKind::Other
    }

    pub fn label(self) -> &'static str {
        match self {
            TrapKind::Unreachable => "unreachable",
            TrapKind::StackOverflow => "stack-overflow",
            TrapKind::MemoryOutOfBounds => "memory-out-of-bounds",
            TrapKind::Interrupt => "interrupt",
            TrapKind::Exit => "exit",
            TrapKind::CpuTime => "cpu-time-exceeded",
            TrapKind::MemoryLimit => "memory-limit-exceeded",
            TrapKind::Other => "other",
        }
    }
}

impl std::fmt::Display for TrapKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// How the guest task ended.
enum TaskError {
    Instantiate(wasmtime::Error),
    Trap(TrapKind, wasmtime::Error),
    WallTime,
}

impl Runtime {
    /// Runs `app`'s component for one request, which must be over by
    /// `deadline` (the app's wall-time limit), response body included.
    pub async fn invoke<A: GuestApp, B>(
        &self,
        app: &Arc<A>,
        request: http::Request<B>,
        scheme: Scheme,
        request_id: RequestId,
        deadline: Instant,
        hold: Arc<dyn std::any::Any + Send + Sync>,
    ) -> Result<GuestResponse, GuestError>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let Some(component) = app.component().cloned() else {
            return Err(GuestError::Host(wasmtime::format_err!(
                "app {} has no component",
                app.names().1
            )));
        };
        let settings = &self.settings;
        let limits = app.limits();
        let (tenant, app_name) = app.names();
        let limit_hit = Arc::new(AtomicBool::new(false));
        let host = Host::new(HostSetup {
            env: app.env(),
            config: app.config_store().clone(),
            kv: app.kv().cloned(),
            log: LogContext {
                tenant: tenant.clone(),
                app: app_name.clone(),
                request_id,
                // Decided once per request by the dispatcher, which looked
                // the app up (nothing there for an untailed app).
                tail: request
                    .extensions()
                    .get::<crate::logs::Tailed>()
                    .map(|t| t.0.clone()),
                limits: GuestLogLimits {
                    line_bytes: settings.guest_log_line_bytes,
                    bytes_per_request: settings.guest_log_bytes_per_request,
                },
            },
            max_memory_bytes: limits.max_memory_bytes as usize,
            max_table_elements: limits.max_table_elements as usize,
            max_resources: settings.max_resources_per_request as usize,
            outbound: OutboundPolicy::new(
                self.outbound.clone(),
                app.outbound().clone(),
                tenant.clone(),
                app_name.clone(),
            ),
            limit_hit: limit_hit.clone(),
        });
        let mut store = Store::new(self.engine(), host);
        store.limiter(|host| &mut host.limits);
        store.set_hostcall_fuel(settings.hostcall_fuel_bytes as usize);
        // Handles a guest holds in the component model's own tables (WASI
        // 0.3 streams, futures and tasks among them): the same bound as
        // resources in the host's table.
        let max_resources = settings.max_resources_per_request as usize;
        store.set_max_component_handles(max_resources);
        if let Some(table) = store.concurrent_resource_table() {
            table.set_max_capacity(max_resources);
        }
        let tick = settings.epoch_tick;
        enforce_cpu_budget(&mut store, &self.ticker.ticks, tick, limits.cpu_time);

        // The response, or the guest's error code, as soon as the guest has
        // one; the sender is dropped if the guest ends without either.
        let (sender, receiver) = tokio::sync::oneshot::channel::<ResponseResult>();
        let call = match component {
            LoadedComponent::P2(pre) => {
                let mut http = store.data_mut().http();
                let request = http
                    .new_incoming_request(scheme, request)
                    .map_err(GuestError::Host)?;
                let response_out = http
                    .new_response_outparam_from_callback(move |result| {
                        let _ = sender.send(result.map_err(HttpError::from));
                    })
                    .map_err(GuestError::Host)?;
                Call::P2 {
                    pre,
                    request,
                    response_out,
                }
            }
            LoadedComponent::P3(pre) => {
                let (request, request_io) = p3_request(&mut store, scheme, request)?;
                Call::P3 {
                    pre,
                    request,
                    request_io: Box::pin(request_io),
                    sender,
                }
            }
        };

        let app = app.clone();
        let task_limit_hit = limit_hit.clone();
        let guest_failed = Arc::new(AtomicBool::new(false));
        let task_failed = guest_failed.clone();
        let (done, guest_done) = tokio::sync::oneshot::channel::<()>();
        // The epoch ticks (CPU budget, yields) while the task lives.
        let ticking = self.ticker.running();
        // The guest runs in its own task: after it sets the response it keeps
        // running to write the body, while this function returns the response
        // to hyper.
        let task = tokio::spawn(async move {
            let run = async {
                let started = std::time::Instant::now();
                // A start function can trap or run out of budget too: that
                // is the guest's doing, not the node's.
                let instantiate_error = |err: wasmtime::Error| {
                    let limit_hit = task_limit_hit.load(Ordering::Relaxed);
                    let trapped = err.downcast_ref::<wasmtime::Trap>().is_some()
                        || err.downcast_ref::<LimitExceeded>().is_some();
                    if trapped || limit_hit {
                        TaskError::Trap(TrapKind::of(&err, limit_hit), err)
                    } else {
                        TaskError::Instantiate(err)
                    }
                };
                let trap = |err: wasmtime::Error| {
                    let kind = TrapKind::of(&err, task_limit_hit.load(Ordering::Relaxed));
                    TaskError::Trap(kind, err)
                };
                let observe_instantiation = || {
                    app.metrics()
                        .instantiate_duration
                        .observe(started.elapsed().as_secs_f64());
                };
                match call {
                    Call::P2 {
                        pre,
                        request,
                        response_out,
                    } => {
                        let proxy = pre
                            .instantiate_async(&mut store)
                            .await
                            .map_err(instantiate_error)?;
                        observe_instantiation();
                        proxy
                            .wasi_http_incoming_handler()
                            .call_handle(&mut store, request, response_out)
                            .await
                            .or_else(exited_cleanly)
                            .map_err(trap)
                    }
                    Call::P3 {
                        pre,
                        request,
                        request_io,
                        sender,
                    } => {
                        let service = pre
                            .instantiate_async(&mut store)
                            .await
                            .map_err(instantiate_error)?;
                        observe_instantiation();
                        run_p3(&mut store, service, request, request_io, sender)
                            .await
                            .or_else(exited_cleanly)
                            .map_err(trap)
                    }
                }
            };
            let result = match tokio::time::timeout_at(deadline, run).await {
                Ok(result) => result,
                Err(_) => Err(TaskError::WallTime),
            };
            let cpu = tick.saturating_mul(store.data().cpu_ticks.try_into().unwrap_or(u32::MAX));
            app.metrics().cpu_time.observe(cpu.as_secs_f64());
            app.metrics()
                .memory_peak
                .observe(store.data().limits.peak_memory_bytes as f64);
            if let Err(err) = &result {
                task_failed.store(true, Ordering::Release);
                report(&*app, request_id, err);
            }
            // The instance goes back to the pool before the request's
            // admission permits are released, so a request admitted next
            // finds a free slot. The permits are held here, for as long as
            // the guest runs (bounded by the wall-time deadline), not by the
            // response body, which a client that stops reading could keep
            // alive forever.
            drop(store);
            drop(hold);
            drop(ticking);
            // Only now may the response end for its client (its next
            // request finds the slot free).
            drop(done);
            result
        });

        // If the client goes away before the guest answers, hyper drops this
        // future: stop the guest too, rather than let it run for nobody.
        let mut task = AbortOnDrop(Some(task));
        match receiver.await {
            Ok(Ok(response)) => {
                // From here the guest writes the body; it is bounded by the
                // wall-time deadline and stops when the client stops reading.
                task.detach();
                Ok(GuestResponse {
                    response,
                    guest_failed,
                    guest_done,
                })
            }
            Ok(Err(code)) => Err(GuestError::ErrorCode(code)),
            // The guest dropped the response-outparam: find out why.
            Err(_) => match task.join().await? {
                Ok(()) => Err(GuestError::NoResponse),
                Err(TaskError::WallTime) => Err(GuestError::WallTimeExceeded(limits.wall_time)),
                Err(TaskError::Trap(TrapKind::CpuTime, _)) => {
                    Err(GuestError::CpuTimeExceeded(limits.cpu_time))
                }
                Err(TaskError::Trap(TrapKind::MemoryLimit, _)) => {
                    Err(GuestError::MemoryLimitExceeded)
                }
                Err(TaskError::Trap(kind, source)) => Err(GuestError::Trap { kind, source }),
                Err(TaskError::Instantiate(err)) => {
                    if limit_hit.load(Ordering::Relaxed) {
                        Err(GuestError::MemoryLimitExceeded)
                    } else if err
                        .downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
                        .is_some()
                    {
                        Err(GuestError::PoolExhausted(err))
                    } else {
                        Err(GuestError::Instantiate(err))
                    }
                }
            },
        }
    }
}

/// What the guest answered: a response whose body it may still be
/// writing, or its error code.
type ResponseResult = Result<http::Response<HyperOutgoingBody>, HttpError>;

/// One prepared call into a guest, per WASI world.
enum Call {
    P2 {
        pre: ProxyPre<Host>,
        request: Resource<HostIncomingRequest>,
        response_out: Resource<HostResponseOutparam>,
    },
    P3 {
        pre: ServicePre<Host>,
        request: wasmtime_wasi_http::p3::Request,
        /// Reports to the host body's reader how the guest's read of the
        /// request body ended.
        request_io: std::pin::Pin<Box<dyn Future<Output = Result<(), HttpError>> + Send>>,
        sender: tokio::sync::oneshot::Sender<ResponseResult>,
    },
}

/// `exit(0)` after answering is a normal end.
fn exited_cleanly(err: wasmtime::Error) -> wasmtime::Result<()> {
    match err.downcast_ref::<wasmtime_wasi::I32Exit>() {
        Some(wasmtime_wasi::I32Exit(0)) => Ok(()),
        _ => Err(err),
    }
}

/// The request as a WASI 0.3 guest receives it. The scheme and authority
/// are given explicitly: a request hyper received is in origin form (no
/// authority in its URI), and `Host` is a header wasi:http forbids guests
/// to see, so without this a 0.3 guest would not know which host it was
/// asked for (0.2's `new_incoming_request` falls back to `Host` itself).
fn p3_request<B>(
    store: &mut Store<Host>,
    scheme: Scheme,
    request: http::Request<B>,
) -> Result<
    (
        wasmtime_wasi_http::p3::Request,
        impl Future<Output = Result<(), HttpError>> + Send + 'static,
    ),
    GuestError,
>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<HttpError>,
{
    let (parts, body) = request.into_parts();
    let authority = match parts.uri.authority() {
        Some(authority) => Some(authority.clone()),
        None => parts
            .headers
            .get(http::header::HOST)
            .and_then(|host| http::uri::Authority::try_from(host.as_bytes()).ok()),
    };
    let scheme = match scheme {
        Scheme::Http => http::uri::Scheme::HTTP,
        Scheme::Https => http::uri::Scheme::HTTPS,
        Scheme::Other(other) => other
            .parse()
            .map_err(|e| GuestError::Host(wasmtime::format_err!("scheme {other:?}: {e}")))?,
    };
    let hooks = store.data_mut().http().hooks;
    let headers = wasmtime_wasi_http::FieldMap::new_immutable(hooks, parts.headers);
    Ok(wasmtime_wasi_http::p3::Request::new(
        parts.method,
        Some(scheme),
        authority,
        parts.uri.path_and_query().cloned(),
        headers,
        None,
        body,
    ))
}

/// Calls a WASI 0.3 guest's `handle` and sends its response on `sender` as
/// soon as it returns, then keeps the store's event loop running until the
/// guest's tasks are done: a 0.3 guest writes its body from a task that
/// outlives `handle`, and its bytes move only while the loop is polled.
/// The caller's wall-time deadline bounds all of it.
async fn run_p3(
    store: &mut Store<Host>,
    service: wasmtime_wasi_http::p3::bindings::Service,
    request: wasmtime_wasi_http::p3::Request,
    request_io: impl Future<Output = Result<(), HttpError>> + Send + 'static,
    sender: tokio::sync::oneshot::Sender<ResponseResult>,
) -> wasmtime::Result<()> {
    store
        .run_concurrent(async move |accessor| -> wasmtime::Result<()> {
            match service.handle(accessor, request).await? {
                Ok(response) => {
                    let response =
                        accessor.with(|mut store| response.into_http(&mut store, request_io))?;
                    let _ = sender.send(Ok(response));
                }
                Err(code) => {
                    let _ = sender.send(Err(code.into()));
                }
            }
            std::future::poll_fn(|cx| accessor.poll_no_interesting_tasks(cx)).await;
            Ok(())
        })
        .await?
}

/// A spawned guest task that is aborted if its handle is dropped.
struct AbortOnDrop<T>(Option<tokio::task::JoinHandle<T>>);

impl<T> AbortOnDrop<T> {
    fn detach(&mut self) {
        self.0 = None;
    }

    async fn join(&mut self) -> Result<T, tokio::task::JoinError> {
        let Some(handle) = self.0.as_mut() else {
            unreachable!("join after detach");
        };
        let result = handle.await;
        self.0 = None;
        result
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
            handle.abort();
        }
    }
}

/// Logs and counts how a guest task failed, whether or not the response had
/// already started (in which case the client sees a cut-off body).
fn report<A: GuestApp>(app: &A, request_id: RequestId, err: &TaskError) {
    match err {
        TaskError::Trap(kind, err) => {
            app.metrics().trap(kind.label());
            match kind {
                TrapKind::CpuTime => app.metrics().limit_rejection("cpu-time-exceeded"),
                TrapKind::MemoryLimit => app.metrics().limit_rejection("memory-limit-exceeded"),
                _ => {}
            }
            tracing::warn!(
                tenant = %app.names().0,
                app = %app.names().1,
                %request_id,
                kind = kind.label(),
                "guest trapped: {err:?}",
            );
        }
        TaskError::WallTime => {
            app.metrics().limit_rejection("wall-time-exceeded");
            tracing::info!(
                tenant = %app.names().0,
                app = %app.names().1,
                %request_id,
                limit = ?app.limits().wall_time,
                "request over its wall-time limit; guest stopped",
            );
        }
        // Answered as 503 by the caller, which logs it.
        TaskError::Instantiate(_) => {}
    }
}
