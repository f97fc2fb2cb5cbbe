//! One request through a component: a fresh `Store`, an instance from the
//! pool, `wasi:http/incoming-handler.handle`, and the response handed back as
//! soon as the guest sets it while the guest keeps streaming the body.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use wasmtime::Store;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use super::Runtime;
use super::guest_log::{GuestLogLimits, LogContext};
use super::host::{Host, HostSetup};
use crate::RequestId;
use crate::app::App;

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
    Other,
}

impl TrapKind {
    pub fn of(err: &wasmtime::Error) -> TrapKind {
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
}

impl Runtime {
    /// Runs `app`'s component for one request.
    pub async fn invoke<B>(
        &self,
        app: &Arc<App>,
        request: http::Request<B>,
        scheme: Scheme,
        request_id: RequestId,
    ) -> Result<http::Response<HyperOutgoingBody>, GuestError>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let settings = &self.settings;
        let host = Host::new(HostSetup {
            env: &app.env,
            log: LogContext {
                tenant: app.log_tenant.clone(),
                app: app.log_name.clone(),
                request_id,
                limits: GuestLogLimits {
                    line_bytes: settings.guest_log_line_bytes,
                    bytes_per_request: settings.guest_log_bytes_per_request,
                },
            },
            max_memory_bytes: settings.max_memory_bytes as usize,
        });
        let mut store = Store::new(self.engine(), host);
        store.limiter(|host| &mut host.limits);
        // Every epoch tick, a running guest yields to the executor so that a
        // busy guest shares the tokio workers with everyone else.
        store.epoch_deadline_async_yield_and_update(1);

        let (sender, receiver) = tokio::sync::oneshot::channel();
        let mut http = store.data_mut().http();
        let request = http
            .new_incoming_request(scheme, request)
            .map_err(GuestError::Host)?;
        let response_out = http
            .new_response_outparam(sender)
            .map_err(GuestError::Host)?;

        let app = app.clone();
        // The guest runs in its own task: after it sets the response it keeps
        // running to write the body, while this function returns the response
        // to hyper.
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let proxy = app
                .component
                .instantiate_async(&mut store)
                .await
                .map_err(TaskError::Instantiate)?;
            app.metrics
                .instantiate_duration
                .observe(started.elapsed().as_secs_f64());
            let result = proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, request, response_out)
                .await;
            result.map_err(|err| {
                let kind = TrapKind::of(&err);
                app.metrics.trap(kind.label());
                tracing::warn!(
                    tenant = %app.tenant,
                    app = %app.name,
                    %request_id,
                    kind = kind.label(),
                    "guest trapped: {err:?}",
                );
                TaskError::Trap(kind, err)
            })
        });

        match receiver.await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(code)) => Err(GuestError::ErrorCode(code)),
            // The guest dropped the response-outparam: find out why.
            Err(_) => match task.await? {
                Ok(()) => Err(GuestError::NoResponse),
                Err(TaskError::Trap(kind, source)) => Err(GuestError::Trap { kind, source }),
                Err(TaskError::Instantiate(err)) => {
                    if err
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
