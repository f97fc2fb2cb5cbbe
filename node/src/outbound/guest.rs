//! A guest's outbound HTTP (`wasi:http/outgoing-handler`): the app's
//! allowlist and subrequest budget, then the shared client; a GET goes
//! through the shared cache in the app's own part of it.

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody};

use super::client::{OutboundClient, drain_briefly};
use crate::cache::layer::{CacheResult, EdgeCache};
use crate::cache::serve::{CacheBackend, ServeError};
use crate::config::AppOutbound;

/// What one request's guest may do outbound: the `WasiHttpHooks` of its store.
pub struct OutboundPolicy {
    client: Arc<OutboundClient>,
    app: Arc<AppOutbound>,
    tenant: Arc<str>,
    app_name: Arc<str>,
    sent: u32,
}

impl OutboundPolicy {
    pub fn new(
        client: Arc<OutboundClient>,
        app: Arc<AppOutbound>,
        tenant: Arc<str>,
        app_name: Arc<str>,
    ) -> Self {
        Self {
            client,
            app,
            tenant,
            app_name,
            sent: 0,
        }
    }

    fn count(&self, result: &'static str) {
        self.client
            .results
            .with_label_values(&[&self.tenant, &self.app_name, result])
            .inc();
    }

    /// Checks the request against the app's policy: the error to give the
    /// guest if it may not be sent.
    fn check(&mut self, uri: &http::Uri) -> Result<(), (HttpError, &'static str)> {
        if self.sent >= self.app.max_subrequests() {
            return Err((HttpError::HttpRequestDenied, "subrequest-limit"));
        }
        let scheme = uri.scheme_str().unwrap_or("");
        let host = uri.host().unwrap_or("").to_ascii_lowercase();
        let default_port = if scheme == "https" { 443 } else { 80 };
        let port = uri.port_u16().unwrap_or(default_port);
        if !self.app.allows(scheme, &host, port) {
            return Err((HttpError::HttpRequestDenied, "denied-destination"));
        }
        // The connector does not resolve address literals, so they are
        // vetted here; internal ones are reachable only through an operator's
        // `hosts` name.
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = literal.parse::<IpAddr>()
            && self.client.guest_literal_refusal(ip).is_some()
        {
            return Err((HttpError::DestinationIpProhibited, "denied-address"));
        }
        self.sent += 1;
        Ok(())
    }
}

pub type SendRequestFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                ),
                HttpError,
            >,
        > + Send,
>;

impl OutboundPolicy {
    pub fn send(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> SendRequestFuture {
        if let Err((err, result)) = self.check(request.uri()) {
            self.count(result);
            tracing::debug!(
                tenant = %self.tenant, app = %self.app_name, uri = %request.uri(),
                "outbound request refused: {result}"
            );
            // Take (a bounded part of) the body the guest is writing before
            // refusing, so that it learns why from the response instead of
            // from a broken body stream.
            let body = request.into_body();
            return Box::new(async move {
                drain_briefly(body).await;
                Err(err)
            });
        }
        let config = &self.client.config;
        let first_byte = options
            .as_ref()
            .and_then(|o| o.first_byte_timeout)
            .map_or(config.first_byte_timeout, |t| {
                t.min(config.first_byte_timeout)
            });
        let client = self.client.clone();
        let (tenant, app) = (self.tenant.clone(), self.app_name.clone());
        let cacheable = request.method() == http::Method::GET;
        if let (Some(cache), true) = (client.cache.clone(), cacheable) {
            let backend = FetchBackend {
                client,
                tenant,
                app,
                first_byte,
            };
            return Box::new(async move {
                let response = fetch_through_cache(&cache, backend, request).await?;
                Ok((
                    response,
                    Box::new(async { Ok(()) }) as Box<dyn Future<Output = _> + Send>,
                ))
            });
        }
        let unsafe_method = !request.method().is_safe();
        let target = request.uri().clone();
        // A POST's answer may become the GET answer for its URL (RFC 9111
        // §4); its Vary is keyed by this request's headers.
        let post_request = (request.method() == http::Method::POST && client.cache.is_some())
            .then(|| (request.headers().clone(), std::time::SystemTime::now()));
        Box::new(async move {
            let mut response = client
                .send_vetted(request, first_byte, &tenant, &app)
                .await
                .map_err(|(code, _)| code)?;
            // RFC 9111 §4.4: a successful unsafe request makes what the
            // app fetched from that URL (and its Location) stale.
            if let Some(cache) = &client.cache
                && unsafe_method
                && (response.status().is_success() || response.status().is_redirection())
            {
                let scheme = fetch_scheme(&target);
                let authority = fetch_authority(&target);
                let path = target.path_and_query().map_or("/", |p| p.as_str());
                cache.invalidate(&tenant, &app, &scheme, &authority, path, response.headers());
                if let Some((headers, request_time)) = post_request {
                    let key = crate::cache::store::CacheKey::new(
                        &tenant, &app, &scheme, &authority, path,
                    );
                    response = cache.store_post_answer(key, headers, request_time, response);
                }
            }
            Ok((
                response,
                Box::new(async { Ok(()) }) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}

/// The cache-key scheme of a component's fetch: `fetch+http(s)`, apart
/// from what the app itself answers for the same URL.
fn fetch_scheme(uri: &http::Uri) -> String {
    format!("fetch+{}", uri.scheme_str().unwrap_or("http"))
}

fn fetch_authority(uri: &http::Uri) -> String {
    uri.authority()
        .map(|a| a.as_str().to_ascii_lowercase())
        .unwrap_or_default()
}

/// A component's GET through the shared cache, in the app's own part of
/// it (keys `fetch+SCHEME`, so they never mix with what the app itself
/// answers): hits never leave the node, misses collapse, stale entries are
/// revalidated, and stale-while-revalidate refreshes in the background.
async fn fetch_through_cache(
    cache: &Arc<EdgeCache>,
    backend: FetchBackend,
    request: http::Request<WasiBody>,
) -> Result<http::Response<WasiBody>, HttpError> {
    let (parts, body) = request.into_parts();
    // A GET's body is empty; let the guest finish writing it.
    drain_briefly(body).await;
    let request = http::Request::from_parts(parts, ());
    let key = EdgeCache::key(
        &backend.tenant,
        &backend.app,
        &fetch_scheme(request.uri()),
        &fetch_authority(request.uri()),
        &request,
    );
    match cache.serve(key, request, &backend).await {
        Ok((response, _)) => Ok(response),
        Err(ServeError::NotCached) => Ok(crate::body::refusal(
            http::StatusCode::GATEWAY_TIMEOUT,
            crate::cache::result::NOT_CACHED_CODE,
            crate::cache::result::NOT_CACHED,
        )),
        Err(ServeError::Backend((code, _))) => Err(code),
    }
}

/// The origin behind a component's cached fetch.
#[derive(Clone)]
struct FetchBackend {
    client: Arc<OutboundClient>,
    tenant: Arc<str>,
    app: Arc<str>,
    first_byte: Duration,
}

impl CacheBackend for FetchBackend {
    type Error = (HttpError, &'static str);
    type Detached = FetchBackend;

    async fn send(
        &self,
        request: http::Request<WasiBody>,
    ) -> Result<http::Response<WasiBody>, Self::Error> {
        self.client
            .send_vetted(request, self.first_byte, &self.tenant, &self.app)
            .await
    }

    /// `edge_cache_fetch_requests_total{tenant,app,result}`.
    fn record(&self, result: CacheResult, _collapsed: bool) {
        if let Some(results) = &self.client.cache_results {
            let label = result.label().to_ascii_lowercase();
            results
                .with_label_values(&[&*self.tenant, &*self.app, label.as_str()])
                .inc();
        }
    }

    fn detach(&self) -> FetchBackend {
        self.clone()
    }
}
