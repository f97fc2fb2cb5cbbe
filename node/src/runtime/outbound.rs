//! Outbound HTTP from guests (`wasi:http/outgoing-handler`).
//!
//! Denied unless the app's allowlist names the destination (scheme, host or
//! `*.domain`, port). Names are resolved by the node, never by the guest, and
//! every address is classified: loopback, private, link-local (cloud metadata
//! included), CGNAT, unique-local, unspecified, multicast and the IPv6 forms
//! that embed such IPv4 addresses are refused unless the operator allowed that
//! exact address. Connections go only to a vetted address, through one
//! pooled client shared by every guest (HTTP/1.1 and h2, rustls), with
//! connect, first-byte and total timeouts clamped by the node's policy.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::TokioExecutor;
use prometheus::IntCounterVec;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody};

use crate::cache::layer::{CacheResult, EdgeCache, Lookup};
pub use crate::config::{AppOutbound, Destination, OutboundConfig};
use crate::hop::strip_hop_by_hop;

/// Why an address may not be connected to, if it may not.
pub fn forbidden_address(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b) {
        (0, _) => "unspecified",
        (127, _) => "loopback",
        (10, _) | (172, 16..=31) | (192, 168) => "private",
        (169, 254) => "link-local (cloud metadata)",
        (100, 64..=127) => "carrier-grade NAT",
        (192, 0) if c == 0 => "IETF protocol assignments",
        (198, 18..=19) => "benchmarking",
        (224..=239, _) => "multicast",
        (240..=255, _) => "reserved or broadcast",
        _ => return None,
    })
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    if ip.is_loopback() {
        return Some("loopback");
    }
    let segments = ip.segments();
    // IPv4-mapped (::ffff:a.b.c.d) and IPv4-compatible (::a.b.c.d).
    if let Some(v4) = ip.to_ipv4() {
        return forbidden_v4(v4).map(|_| "IPv4 address in IPv6 form");
    }
    // SIIT (::ffff:0:a.b.c.d) embeds it in the last 32 bits too.
    if segments[..6] == [0, 0, 0, 0, 0xffff, 0] {
        let v4 = Ipv4Addr::from((u32::from(segments[6]) << 16) | u32::from(segments[7]));
        return forbidden_v4(v4).map(|_| "IPv4 address in SIIT form");
    }
    // Teredo (2001::/32) tunnels to an obfuscated IPv4 address: refuse all.
    if segments[..2] == [0x2001, 0] {
        return Some("Teredo");
    }
    // Local-use NAT64 (64:ff9b:1::/48) may use any prefix length: refuse all.
    if segments[..3] == [0x64, 0xff9b, 1] {
        return Some("local-use NAT64");
    }
    // NAT64 (64:ff9b::/96) embeds the IPv4 address in the last 32 bits.
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let v4 = Ipv4Addr::from((u32::from(segments[6]) << 16) | u32::from(segments[7]));
        return forbidden_v4(v4).map(|_| "IPv4 address behind NAT64");
    }
    // 6to4 (2002::/16) embeds it in bits 16..48.
    if segments[0] == 0x2002 {
        let v4 = Ipv4Addr::from((u32::from(segments[1]) << 16) | u32::from(segments[2]));
        return forbidden_v4(v4).map(|_| "IPv4 address behind 6to4");
    }
    match segments[0] {
        s if s & 0xfe00 == 0xfc00 => Some("unique-local"),
        s if s & 0xffc0 == 0xfe80 => Some("link-local"),
        s if s & 0xffc0 == 0xfec0 => Some("site-local"),
        s if s & 0xff00 == 0xff00 => Some("multicast"),
        _ => None,
    }
}

/// The refusal a vetting resolver gives, found again in the client's error
/// chain to tell the guest its destination was prohibited.
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves only to prohibited addresses ({reason})")]
struct AddressProhibited {
    host: String,
    reason: &'static str,
}

/// Resolves names for the shared client: static hosts first, then DNS; keeps
/// only addresses that pass [`forbidden_address`] or that the operator
/// allowed, so the connector can only ever connect to a vetted address.
#[derive(Clone)]
struct VettingResolver {
    config: Arc<OutboundConfig>,
}

impl VettingResolver {
    async fn resolve(
        config: Arc<OutboundConfig>,
        host: String,
    ) -> std::io::Result<Vec<SocketAddr>> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let (candidates, from_operator): (Vec<IpAddr>, bool) = match config.hosts.get(&host) {
            Some(ip) => (vec![*ip], true),
            None => {
                // getaddrinfo cannot be cancelled, but the guest need not wait
                // for a slow resolver longer than it would for a connection.
                let lookup = tokio::net::lookup_host((host.as_str(), 0));
                let addrs = tokio::time::timeout(config.connect_timeout, lookup)
                    .await
                    .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
                (addrs.map(|addr| addr.ip()).collect(), false)
            }
        };
        let mut reason = "no addresses";
        let vetted: Vec<SocketAddr> = candidates
            .into_iter()
            .filter(|ip| match forbidden_address(*ip) {
                None => true,
                Some(_) if from_operator && config.allow_private_addresses.contains(ip) => true,
                Some(why) => {
                    reason = why;
                    false
                }
            })
            .map(|ip| SocketAddr::new(ip, 0))
            .collect();
        if vetted.is_empty() {
            return Err(std::io::Error::other(AddressProhibited { host, reason }));
        }
        Ok(vetted)
    }
}

impl tower_service::Service<Name> for VettingResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let config = self.config.clone();
        let host = name.as_str().to_string();
        Box::pin(async move { Ok(Self::resolve(config, host).await?.into_iter()) })
    }
}

type Connector = hyper_rustls::HttpsConnector<HttpConnector<VettingResolver>>;

/// The node's one outbound client and its policy.
pub struct OutboundClient {
    client: Client<Connector, WasiBody>,
    config: Arc<OutboundConfig>,
    /// The shared cache components' GETs go through, if the node has one.
    cache: Option<Arc<EdgeCache>>,
    /// `edge_cache_fetch_requests_total{tenant,app,result}`.
    cache_results: Option<IntCounterVec>,
    /// `edge_outbound_requests_total{tenant,app,result}`.
    results: IntCounterVec,
}

impl OutboundClient {
    pub fn new(mut config: OutboundConfig, results: IntCounterVec) -> Self {
        config.hosts = std::mem::take(&mut config.hosts)
            .into_iter()
            .map(|(name, ip)| (name.trim_end_matches('.').to_ascii_lowercase(), ip))
            .collect();
        let config = Arc::new(config);
        let mut http = HttpConnector::new_with_resolver(VettingResolver {
            config: config.clone(),
        });
        http.enforce_http(false);
        http.set_connect_timeout(Some(config.connect_timeout));
        http.set_nodelay(true);
        let roots =
            rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map(|builder| builder.with_root_certificates(roots).with_no_client_auth());
        let tls = match tls {
            Ok(tls) => tls,
            // The ring provider supports the default versions; keep a
            // working (if plaintext-only) client rather than fail start-up.
            Err(err) => {
                tracing::error!("outbound TLS unavailable: {err}");
                rustls::ClientConfig::builder()
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth()
            }
        };
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(32)
            // hyper reads ahead up to ~400 KiB per origin connection by
            // default, held for as long as the client behind it is slow:
            // 64 KiB still takes any sane response head and keeps a fast
            // origin streaming.
            .http1_max_buf_size(ORIGIN_READ_BUF_BYTES)
            .build(connector);
        Self {
            client,
            config,
            cache: None,
            cache_results: None,
            results,
        }
    }

    pub fn first_byte_timeout(&self) -> Duration {
        self.config.first_byte_timeout
    }

    /// Sends components' GETs through `cache`, counting how it answered in
    /// `results` (tenant, app, result).
    pub fn with_cache(
        mut self,
        cache: Option<Arc<EdgeCache>>,
        results: Option<IntCounterVec>,
    ) -> Self {
        self.cache = cache;
        self.cache_results = results;
        self
    }

    /// Whether an address literal may be connected to by a tenant's origin:
    /// public addresses, and the internal ones the operator allowed.
    pub fn address_allowed(&self, ip: IpAddr) -> bool {
        forbidden_address(ip).is_none() || self.config.allow_private_addresses.contains(&ip)
    }
}

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
            && forbidden_address(ip).is_some()
        {
            return Err((HttpError::DestinationIpProhibited, "denied-address"));
        }
        self.sent += 1;
        Ok(())
    }
}

/// Read-ahead buffer per HTTP/1 origin connection.
const ORIGIN_READ_BUF_BYTES: usize = 64 << 10;

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
            return Box::new(async move {
                let response =
                    fetch_through_cache(&client, &cache, &tenant, &app, request, first_byte)
                        .await?;
                Ok((
                    response,
                    Box::new(async { Ok(()) }) as Box<dyn Future<Output = _> + Send>,
                ))
            });
        }
        let unsafe_method = !request.method().is_safe();
        let target = request.uri().clone();
        Box::new(async move {
            let response = client
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
    client: &Arc<OutboundClient>,
    cache: &Arc<EdgeCache>,
    tenant: &Arc<str>,
    app: &Arc<str>,
    request: http::Request<WasiBody>,
    first_byte: Duration,
) -> Result<http::Response<WasiBody>, HttpError> {
    let (parts, body) = request.into_parts();
    // A GET's body is empty; let the guest finish writing it.
    drain_briefly(body).await;
    // Looked up without a body: the body type is not `Sync`.
    let request = http::Request::from_parts(parts, ());
    let key = EdgeCache::key(
        tenant,
        app,
        &fetch_scheme(request.uri()),
        &fetch_authority(request.uri()),
        &request,
    );
    let count = |result: CacheResult| {
        if let Some(results) = &client.cache_results {
            let label = result.label().to_ascii_lowercase();
            results
                .with_label_values(&[&**tenant, &**app, label.as_str()])
                .inc();
        }
    };
    match cache.lookup(key, &request).await {
        Lookup::Hit {
            response, result, ..
        } => {
            count(result);
            Ok(response)
        }
        Lookup::NotCached => Ok(crate::body::refusal(
            http::StatusCode::GATEWAY_TIMEOUT,
            crate::cache::result::NOT_CACHED_CODE,
            crate::cache::result::NOT_CACHED,
        )),
        Lookup::Refresh { response, refresh } => {
            count(CacheResult::Stale);
            let again = refresh.refresh_request(request.uri());
            let (client, cache) = (client.clone(), cache.clone());
            let (tenant, app) = (tenant.clone(), app.clone());
            tokio::spawn(async move {
                let result = client.send_vetted(again, first_byte, &tenant, &app).await;
                cache.finish_refresh(refresh, result).await;
            });
            Ok(response)
        }
        Lookup::Miss(pending) => {
            let mut request = request.map(|()| crate::body::full_body(Bytes::new()));
            pending.backend_headers(request.headers_mut());
            let method = request.method().clone();
            let result = client.send_vetted(request, first_byte, tenant, app).await;
            let (result, cache_result) = cache.complete(pending, &method, result);
            count(cache_result);
            result.map_err(|(code, _)| code)
        }
    }
}

impl OutboundClient {
    /// Sends a request whose destination the caller checked: strips
    /// hop-by-hop headers, vets the name's addresses, and bounds the wait
    /// for the headers (`first_byte`) and for the whole exchange (the node's
    /// total timeout). Counts the result for `tenant`'s `app`.
    pub async fn send_vetted(
        self: &Arc<Self>,
        mut request: http::Request<WasiBody>,
        first_byte: Duration,
        tenant: &str,
        app: &str,
    ) -> Result<http::Response<WasiBody>, (HttpError, &'static str)> {
        strip_hop_by_hop(request.headers_mut());
        let count = |result: &'static str| {
            self.results.with_label_values(&[tenant, app, result]).inc();
            result
        };
        let host = request.uri().host().unwrap_or("").to_ascii_lowercase();
        let total = self.config.total_timeout;
        // Vet the destination before sending, so a refusal reaches the
        // guest as a refusal (and not as a body stream broken by the
        // client). The connector vets again on connect, so a name that
        // resolves differently the second time gains nothing.
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        if literal.parse::<IpAddr>().is_err()
            && let Err(err) = VettingResolver::resolve(self.config.clone(), host).await
        {
            let prohibited = err.get_ref().is_some_and(|e| e.is::<AddressProhibited>());
            let code = if prohibited {
                HttpError::DestinationIpProhibited
            } else {
                HttpError::DnsError {
                    rcode: None,
                    info_code: None,
                }
            };
            let result = count(if prohibited {
                "denied-address"
            } else {
                "dns-error"
            });
            drain_briefly(request.into_body()).await;
            return Err((code, result));
        }
        let deadline = tokio::time::Instant::now() + total;
        let sent = tokio::time::timeout(first_byte.min(total), self.client.request(request));
        let response = match sent.await {
            Err(_) => return Err((HttpError::ConnectionReadTimeout, count("timeout"))),
            Ok(Err(err)) => {
                let (code, result) = classify_client_error(&err);
                return Err((code, count(result)));
            }
            Ok(Ok(response)) => response,
        };
        count("ok");
        let mut response = response.map(|body| {
            DeadlineBody {
                inner: body,
                deadline: Box::pin(tokio::time::sleep_until(deadline)),
            }
            .boxed_unsync()
        });
        strip_hop_by_hop(response.headers_mut());
        Ok(response)
    }
}

/// Reads and drops up to 64 KiB of a refused request's body, for at most a
/// second.
async fn drain_briefly(mut body: WasiBody) {
    let drain = async {
        let mut seen = 0usize;
        while seen < 64 << 10 {
            match body.frame().await {
                Some(Ok(frame)) => seen += frame.data_ref().map_or(0, |d| d.len()),
                _ => break,
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
}

fn classify_client_error(err: &hyper_util::client::legacy::Error) -> (HttpError, &'static str) {
    // The resolver's refusal travels inside an `io::Error`, whose `source()`
    // skips the error it wraps: look inside each one.
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(current) = source {
        let wrapped = current
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|inner| inner as &(dyn std::error::Error + 'static));
        if current.is::<AddressProhibited>() || wrapped.is_some_and(|e| e.is::<AddressProhibited>())
        {
            return (HttpError::DestinationIpProhibited, "denied-address");
        }
        // The body being sent failed (a client's malformed upload through
        // an origin route, a guest's broken stream): not the origin's fault.
        if current
            .downcast_ref::<hyper::Error>()
            .is_some_and(|e| e.is_user())
        {
            return (HttpError::HttpProtocolError, "request-body-error");
        }
        source = current.source();
    }
    if err.is_connect() {
        (HttpError::ConnectionRefused, "connect-error")
    } else {
        (HttpError::HttpProtocolError, "error")
    }
}

/// An origin's response body that ends in an error once the subrequest's
/// total time is up.
struct DeadlineBody {
    inner: hyper::body::Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, HttpError>>> {
        if self.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(HttpError::ConnectionReadTimeout)));
        }
        Pin::new(&mut self.inner)
            .poll_frame(cx)
            .map_err(HttpError::from)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forbidden(s: &str) -> bool {
        forbidden_address(s.parse().unwrap()).is_some()
    }

    #[test]
    fn private_and_special_addresses_are_refused() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "127.255.0.9",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.254",
            "224.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::10.0.0.1",
            "2002:a00:1::",
            "::ffff:0:a00:1",
            "64:ff9b:1::a00:1",
            "2001:0:4136:e378::1",
            "fec0::1",
        ] {
            assert!(forbidden(ip), "{ip} must be refused");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "192.169.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::8.8.8.8",
        ] {
            assert!(!forbidden(ip), "{ip} must be allowed");
        }
    }

    fn dest(s: &str) -> Destination {
        Destination::try_from(s.to_string()).unwrap()
    }

    #[test]
    fn destinations_match_scheme_host_and_port() {
        let api = dest("https://API.example.com");
        assert!(api.matches("https", "api.example.com", 443));
        assert!(!api.matches("http", "api.example.com", 443));
        assert!(!api.matches("https", "api.example.com", 8443));
        assert!(!api.matches("https", "evil.api.example.com", 443));
        let wild = dest("http://*.example.org:8080");
        assert!(wild.matches("http", "a.example.org", 8080));
        assert!(!wild.matches("http", "example.org", 8080));
        assert!(!wild.matches("http", "a.example.org", 80));
        for bad in [
            "example.com",
            "ftp://example.com",
            "https://exa mple.com",
            "https://a.b:x",
        ] {
            assert!(Destination::try_from(bad.to_string()).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn names_resolving_to_private_addresses_are_refused_before_connecting() {
        let config = Arc::new(OutboundConfig {
            hosts: [
                ("internal.test".to_string(), "10.0.0.7".parse().unwrap()),
                (
                    "metadata.test".to_string(),
                    "169.254.169.254".parse().unwrap(),
                ),
                ("origin.test".to_string(), "127.0.0.1".parse().unwrap()),
            ]
            .into(),
            allow_private_addresses: vec!["127.0.0.1".parse().unwrap()],
            ..OutboundConfig::default()
        });
        for host in ["internal.test", "metadata.test"] {
            let err = VettingResolver::resolve(config.clone(), host.into())
                .await
                .expect_err("refused");
            assert!(err.get_ref().is_some_and(|e| e.is::<AddressProhibited>()));
        }
        // Names match whatever their case or trailing dot.
        let ok = VettingResolver::resolve(config, "ORIGIN.test.".into())
            .await
            .unwrap();
        assert_eq!(ok, vec!["127.0.0.1:0".parse().unwrap()]);
    }
}
