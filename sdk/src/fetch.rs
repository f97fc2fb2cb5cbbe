//! Outbound HTTP: requests to the destinations the app's `outbound`
//! allow-list names (anything else is refused by the node with
//! `HttpRequestDenied`), with streamed bodies both ways and timeouts.
//!
//! ```no_run
//! use std::time::Duration;
//! use edge_sdk::fetch::Fetch;
//! use edge_sdk::{Body, http};
//!
//! let request = http::Request::get("https://api.example.com/v1/prices")
//!     .header("accept", "application/json")
//!     .body(Body::Empty)
//!     .expect("a valid request");
//! let response = Fetch::new(request)
//!     .timeout(Duration::from_secs(2))
//!     .send()
//!     .expect("the origin answered");
//! let status = response.status();
//! let body = response.into_body().bytes(1 << 20).expect("a body under 1 MiB");
//! # let _ = (status, body);
//! ```

use std::time::Duration;

use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, Fields, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
};

use crate::{Body, IncomingBody};

/// Why an outbound request failed.
#[derive(Debug)]
pub enum FetchError {
    /// The request could not be expressed in wasi:http (a header the host
    /// refuses, a URL without a host).
    Invalid(String),
    /// The host or the network refused or failed it: `HttpRequestDenied`
    /// (not on the allow-list), `DestinationIpProhibited`,
    /// `ConnectionTimeout`, ...
    Http(ErrorCode),
    /// Writing the request body failed.
    Body(String),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Invalid(msg) => write!(f, "invalid outbound request: {msg}"),
            FetchError::Http(code) => write!(f, "outbound request failed: {code:?}"),
            FetchError::Body(msg) => write!(f, "writing the outbound request body: {msg}"),
        }
    }
}

impl std::error::Error for FetchError {}

/// An outbound request with its options; [`Fetch::send`] sends it.
pub struct Fetch {
    request: http::Request<Body>,
    connect_timeout: Option<Duration>,
    first_byte_timeout: Option<Duration>,
    between_bytes_timeout: Option<Duration>,
}

/// Sends `request` with the node's default timeouts (the app's wall time
/// bounds it in any case).
pub fn fetch(request: http::Request<Body>) -> Result<http::Response<IncomingBody>, FetchError> {
    Fetch::new(request).send()
}

impl Fetch {
    pub fn new(request: http::Request<Body>) -> Self {
        Fetch {
            request,
            connect_timeout: None,
            first_byte_timeout: None,
            between_bytes_timeout: None,
        }
    }

    /// Gives up if connecting, the response head, or any pause between
    /// body chunks takes longer than `timeout`.
    pub fn timeout(self, timeout: Duration) -> Self {
        self.connect_timeout(timeout)
            .first_byte_timeout(timeout)
            .between_bytes_timeout(timeout)
    }

    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    pub fn first_byte_timeout(mut self, timeout: Duration) -> Self {
        self.first_byte_timeout = Some(timeout);
        self
    }

    pub fn between_bytes_timeout(mut self, timeout: Duration) -> Self {
        self.between_bytes_timeout = Some(timeout);
        self
    }

    /// Sends the request and waits for the response head; the body is
    /// read as it arrives ([`IncomingBody`]).
    pub fn send(self) -> Result<http::Response<IncomingBody>, FetchError> {
        let (parts, body) = self.request.into_parts();
        let entries: Vec<(String, Vec<u8>)> = parts
            .headers
            .iter()
            .map(|(name, value)| (name.as_str().to_string(), value.as_bytes().to_vec()))
            .collect();
        let headers = Fields::from_list(&entries)
            .map_err(|e| FetchError::Invalid(format!("header refused by the host: {e:?}")))?;
        let request = OutgoingRequest::new(headers);
        let method = match parts.method.as_str() {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            "PATCH" => Method::Patch,
            other => Method::Other(other.to_string()),
        };
        let invalid = |what: &str| FetchError::Invalid(what.to_string());
        request
            .set_method(&method)
            .map_err(|()| invalid("method"))?;
        let scheme = match parts.uri.scheme_str() {
            Some("http") => Scheme::Http,
            Some("https") | None => Scheme::Https,
            Some(other) => Scheme::Other(other.to_string()),
        };
        request
            .set_scheme(Some(&scheme))
            .map_err(|()| invalid("scheme"))?;
        let authority = parts
            .uri
            .authority()
            .ok_or_else(|| invalid("the URL has no host"))?;
        request
            .set_authority(Some(authority.as_str()))
            .map_err(|()| invalid("authority"))?;
        let path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        request
            .set_path_with_query(Some(path))
            .map_err(|()| invalid("path"))?;

        let options = RequestOptions::new();
        let nanos = |d: Duration| d.as_nanos().min(u64::MAX as u128) as u64;
        // A host that does not support a timeout says so; the app's wall
        // time still bounds the request.
        let _ = options.set_connect_timeout(self.connect_timeout.map(nanos));
        let _ = options.set_first_byte_timeout(self.first_byte_timeout.map(nanos));
        let _ = options.set_between_bytes_timeout(self.between_bytes_timeout.map(nanos));

        let outgoing = request.body().map_err(|()| invalid("body already taken"))?;
        // Sent before the body is written: the host streams the body to
        // the origin as it is written, so a large one is never held whole.
        let pending = outgoing_handler::handle(request, Some(options)).map_err(FetchError::Http)?;
        let written = match outgoing.write() {
            Ok(mut stream) => {
                let written = crate::serve::write_body(&mut stream, body);
                drop(stream);
                written
            }
            Err(()) => Err("body stream already taken".to_string()),
        };
        match written {
            Ok(()) => OutgoingBody::finish(outgoing, None)
                .map_err(|code| FetchError::Body(format!("{code:?}")))?,
            // Dropped unfinished: the origin sees a broken body, not a short one.
            Err(msg) => return Err(FetchError::Body(msg)),
        }

        pending.subscribe().block();
        let response = match pending.get() {
            Some(Ok(Ok(response))) => response,
            Some(Ok(Err(code))) => return Err(FetchError::Http(code)),
            Some(Err(())) | None => {
                return Err(FetchError::Invalid("the response was already taken".into()));
            }
        };
        let mut builder = http::Response::builder().status(response.status());
        for (name, value) in response.headers().entries() {
            builder = builder.header(name, value);
        }
        let body = response.consume().ok();
        builder
            .body(IncomingBody::from_response(body, response))
            .map_err(|e| FetchError::Invalid(format!("response head: {e}")))
    }
}
