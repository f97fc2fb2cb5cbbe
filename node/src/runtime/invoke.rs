//! One request through a component: a fresh `Store`, an instance from the
//! pool, `wasi:http/incoming-handler.handle`, and the response handed back as
//! soon as the guest sets it while the guest keeps streaming the body.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use wasmtime::Store;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use super::Runtime;
use super::guest_log::{GuestLogLimits, LogContext};
use super::host::{Host, HostSetup};
use super::limits::{LimitExceeded, enforce_cpu_budget};
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
    ErrorCode(ErrorCode),
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
        if app.component().is_none() {
            return Err(GuestError::Host(wasmtime::format_err!(
                "app {} has no component",
                app.names().1
            )));
        }
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
        let tick = settings.epoch_tick;
        enforce_cpu_budget(&mut store, &self.ticker.ticks, tick, limits.cpu_time);

        let (sender, receiver) = tokio::sync::oneshot::channel();
        let mut http = store.data_mut().http();
        let request = http
            .new_incoming_request(scheme, request)
            .map_err(GuestError::Host)?;
        let response_out = http
            .new_response_outparam(sender)
            .map_err(GuestError::Host)?;

        let app = app.clone();
        let task_limit_hit = limit_hit.clone();
        let guest_failed = Arc::new(AtomicBool::new(false));
        let task_failed = guest_failed.clone();
        // The epoch ticks (CPU budget, yields) while the task lives.
        let ticking = self.ticker.running();
        // The guest runs in its own task: after it sets the response it keeps
        // running to write the body, while this function returns the response
        // to hyper.
        let task = tokio::spawn(async move {
            let run = async {
                let started = std::time::Instant::now();
                let component = app.component().ok_or_else(|| {
                    TaskError::Instantiate(wasmtime::format_err!("the app has no component"))
                })?;
                let proxy = component
                    .instantiate_async(&mut store)
                    .await
                    .map_err(|err| {
                        // A start function can trap or run out of budget
                        // too: that is the guest's doing, not the node's.
                        let limit_hit = task_limit_hit.load(Ordering::Relaxed);
                        let trapped = err.downcast_ref::<wasmtime::Trap>().is_some()
                            || err.downcast_ref::<LimitExceeded>().is_some();
                        if trapped || limit_hit {
                            TaskError::Trap(TrapKind::of(&err, limit_hit), err)
                        } else {
                            TaskError::Instantiate(err)
                        }
                    })?;
                app.metrics()
                    .instantiate_duration
                    .observe(started.elapsed().as_secs_f64());
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, request, response_out)
                    .await
                    .or_else(|err| match err.downcast_ref::<wasmtime_wasi::I32Exit>() {
                        // `exit(0)` after answering is a normal end.
                        Some(wasmtime_wasi::I32Exit(0)) => Ok(()),
                        _ => Err(err),
                    })
                    .map_err(|err| {
                        let kind = TrapKind::of(&err, task_limit_hit.load(Ordering::Relaxed));
                        TaskError::Trap(kind, err)
                    })
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
