//! Guest SDK for edge components.
//!
//! A component is a function from an [`http::Request`] to an [`http::Response`],
//! exported with [`handler!`]:
//!
//! ```ignore
//! use edge_sdk::{Body, Request, Response};
//!
//! fn hello(_req: Request) -> Response {
//!     Response::new(Body::from("hello from the edge\n"))
//! }
//!
//! edge_sdk::handler!(hello);
//! ```
//!
//! Build with `cargo build --release --target wasm32-wasip2`; the `.wasm` in
//! `target/wasm32-wasip2/release/` is the component to deploy.
//!
//! What the platform gives a component: the request (headers, streamed body),
//! its app's config values ([`config`]), the key-value stores its tenant
//! linked to it ([`kv`]), outbound HTTP to the destinations its app allows
//! ([`fetch`]), a clock, randomness, and stdout/stderr, which the node logs
//! line by line with the app name and request id ([`log`] writes
//! structured lines). No filesystem and no sockets.
//!
//! Around the handler: a [`router`] (method and path patterns with
//! parameters), caching headers ([`cache`]: `Cache-Control`,
//! `CDN-Cache-Control`, `Surrogate-Key`) and, with the `json` feature,
//! JSON bodies ([`json`]). Async handlers: write the component with
//! [`wstd`](https://docs.rs/wstd) (`#[wstd::http_server]`); the router and
//! the cache builders work on any `http` types.

mod body;
pub mod cache;
pub mod client;
pub mod config;
pub mod fetch;
#[cfg(feature = "json")]
pub mod json;
pub mod kv;
pub mod log;
pub mod random;
pub mod router;
mod serve;

pub use body::{Body, BodyError, IncomingBody};
pub use client::{TlsInfo, client_addr, tls_info};
pub use http;

/// The request a handler receives: `http` types with a streaming body.
pub type Request = http::Request<IncomingBody>;
/// The response a handler returns.
pub type Response = http::Response<Body>;

/// What a handler may return: a [`Response`], or a `Result` whose error
/// becomes a `500` with the error's message logged to stderr.
pub trait IntoResponse {
    fn into_response(self) -> Response;
}

impl IntoResponse for Response {
    fn into_response(self) -> Response {
        self
    }
}

impl<E: std::fmt::Display> IntoResponse for Result<Response, E> {
    fn into_response(self) -> Response {
        self.unwrap_or_else(|err| {
            eprintln!("handler error: {err}");
            let mut resp = Response::new(Body::from("internal error in component\n"));
            *resp.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
            resp
        })
    }
}

/// Exports `fn(Request) -> impl IntoResponse` as the component's
/// `wasi:http/incoming-handler`.
#[macro_export]
macro_rules! handler {
    ($handler:path) => {
        struct __EdgeSdkHandler;

        impl $crate::__private::wasip2::exports::http::incoming_handler::Guest for __EdgeSdkHandler {
            fn handle(
                request: $crate::__private::wasip2::http::types::IncomingRequest,
                response_out: $crate::__private::wasip2::http::types::ResponseOutparam,
            ) {
                $crate::__private::serve(request, response_out, |req| {
                    $crate::IntoResponse::into_response($handler(req))
                })
            }
        }

        $crate::__private::wasip2::http::proxy::export!(
            __EdgeSdkHandler with_types_in $crate::__private::wasip2
        );
    };
}

#[doc(hidden)]
pub mod __private {
    pub use crate::serve::serve;
    pub use wasip2;
}
