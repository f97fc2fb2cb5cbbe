//! Origin routes: an app that is a plain reverse proxy to an origin URL, no
//! component, with the shared cache in front — a classic CDN property.
//! Every method passes through; the request goes out through the node's one
//! outbound client, so an origin on an internal address is reachable only
//! where the operator allowed it.

use std::sync::Arc;

use http::{HeaderValue, Request, Response, header};
use wasmtime_wasi_http::{Error as HttpError, WasiBody};

use crate::client::{ClientConn, strip_edge_headers, strip_forwarding};
use crate::outbound::OutboundClient;

pub use crate::config::OriginUrl;

/// An origin app's backend.
pub struct Origin {
    pub url: OriginUrl,
    /// Written by the operator (the node's config file): an address literal
    /// is trusted as it is. Origins from the control plane (tenants) may
    /// name internal addresses only where `[outbound]` allows them.
    pub operator_trusted: bool,
    /// Forward [`OVERRIDES`] and header names with `_` (off by default).
    pub forward_override_headers: bool,
}

/// Why an origin did not answer.
#[derive(Debug, thiserror::Error)]
pub enum OriginError {
    #[error("the origin's address is not allowed ({0})")]
    Prohibited(String),
    #[error("the origin did not answer in time")]
    Timeout,
    #[error("the origin could not be reached: {0}")]
    Unreachable(String),
}

/// Headers the edge sets for the origin; a client's own values would let it
/// change what the origin (and so the cache) answers without being part of
/// the cache key.
const X_FORWARDED_HOST: &str = "x-forwarded-host";
const X_FORWARDED_PROTO: &str = "x-forwarded-proto";
/// Forwarding headers the edge does not vouch for: a client could use them
/// to make the origin build other URLs without that being part of the
/// cache key. (`X-Forwarded-For` and `Forwarded` follow the trust rule of
/// `client.rs`.)
const UNVOUCHED: &[&str] = &[
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-server",
    "x-original-url",
    "x-rewrite-url",
    "x-real-ip",
];

/// Headers that make many frameworks answer a different method or scheme
/// than the request's, and so change the origin's answer without being
/// part of the cache key: one client could store, for everyone, the answer
/// to a DELETE or to an http:// redirect loop. Dropped unless the app sets
/// `forward_override_headers`.
const OVERRIDES: &[&str] = &[
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-forwarded-scheme",
];

/// Drops [`OVERRIDES`] and every header whose name contains `_`: CGI-style
/// servers map `X_Forwarded_Host` and `X-Forwarded-Host` to the same
/// variable, so the underscore spelling would slip past the edge's own
/// `X-Forwarded-*` (nginx drops such names by default for the same reason).
fn drop_override_headers(headers: &mut http::HeaderMap) {
    for name in OVERRIDES {
        headers.remove(*name);
    }
    let underscored: Vec<http::HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().contains('_'))
        .cloned()
        .collect();
    for name in underscored {
        headers.remove(name);
    }
}

impl Origin {
    /// Forwards `request` (received for `host` over `scheme`) to the origin.
    /// Dispatch removed its hop-by-hop and `Connection`-listed headers on
    /// entry, so nothing can remove the `X-Forwarded-*` headers set here.
    pub async fn forward(
        &self,
        client: &Arc<OutboundClient>,
        mut request: Request<WasiBody>,
        // Where the client sent it: the routed host, the scheme, and the
        // client's connection if any.
        (host, scheme, conn): (&str, &str, Option<&ClientConn>),
        tenant: &str,
        app: &str,
    ) -> Result<Response<WasiBody>, OriginError> {
        if let Some(ip) = self.url.address()
            && !client.origin_address_allowed(ip, self.operator_trusted)
        {
            return Err(OriginError::Prohibited(ip.to_string()));
        }
        let target = self
            .url
            .target(request.uri().path_and_query())
            .map_err(|err| OriginError::Unreachable(format!("bad target: {err}")))?;
        *request.uri_mut() = target;
        *request.version_mut() = http::Version::HTTP_11;
        let headers = request.headers_mut();
        for name in UNVOUCHED {
            headers.remove(*name);
        }
        // The client's address goes as X-Forwarded-For and Forwarded, never
        // as the headers components get.
        strip_edge_headers(headers);
        match conn {
            Some(conn) => conn.for_origin(headers, host),
            None => strip_forwarding(headers),
        }
        if !self.forward_override_headers {
            drop_override_headers(headers);
        }
        if let Ok(value) = HeaderValue::from_str(self.url.authority().as_str()) {
            headers.insert(header::HOST, value);
        }
        match HeaderValue::from_str(host) {
            Ok(value) => headers.insert(X_FORWARDED_HOST, value),
            Err(_) => headers.remove(X_FORWARDED_HOST),
        };
        headers.insert(
            X_FORWARDED_PROTO,
            HeaderValue::from_static(if scheme == "https" { "https" } else { "http" }),
        );
        let first_byte = client.first_byte_timeout();
        client
            .send_vetted(request, first_byte, tenant, app)
            .await
            .map_err(|(code, _)| match code {
                HttpError::DestinationIpProhibited => {
                    OriginError::Prohibited(self.url.authority().host().to_string())
                }
                HttpError::ConnectionReadTimeout | HttpError::ConnectionTimeout => {
                    OriginError::Timeout
                }
                other => OriginError::Unreachable(format!("{other:?}")),
            })
    }
}

#[cfg(test)]
mod tests {
    use http::uri::PathAndQuery;

    use super::*;

    fn url(s: &str) -> Result<OriginUrl, String> {
        OriginUrl::try_from(s.to_string())
    }

    #[test]
    fn origin_urls_are_checked_and_joined_with_the_request_path() {
        let origin = url("http://127.0.0.1:8080/base/").unwrap();
        let pq: PathAndQuery = "/a/b?c=1".parse().unwrap();
        assert_eq!(
            origin.target(Some(&pq)).unwrap().to_string(),
            "http://127.0.0.1:8080/base/a/b?c=1"
        );
        assert_eq!(origin.address(), Some("127.0.0.1".parse().unwrap()));
        let plain = url("https://origin.example").unwrap();
        assert_eq!(
            plain.target(None).unwrap().to_string(),
            "https://origin.example/"
        );
        assert_eq!(plain.address(), None);
        for bad in [
            "ftp://x",
            "/relative",
            "http://user:pw@x/",
            "http://x/?q=1",
            "http://x/#f",
            "not a url",
        ] {
            assert!(url(bad).is_err(), "{bad}");
        }
    }
}
