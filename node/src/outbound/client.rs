//! The node's one outbound HTTP client, shared by every guest and origin
//! route: HTTP/1.1 and h2 over rustls, pooled, connecting only to vetted
//! addresses, with connect, first-byte and total timeouts.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use prometheus::IntCounterVec;
use wasmtime_wasi_http::{Error as HttpError, WasiBody};

use super::vet::{AddressProhibited, VettingResolver, refusal};
use crate::cache::layer::EdgeCache;
use crate::config::OutboundConfig;
use crate::hop::strip_hop_by_hop;

type Connector = hyper_rustls::HttpsConnector<HttpConnector<VettingResolver>>;

/// The node's one outbound client and its policy.
pub struct OutboundClient {
    client: Client<Connector, WasiBody>,
    pub(super) config: Arc<OutboundConfig>,
    /// The shared cache components' GETs go through, if the node has one.
    pub(super) cache: Option<Arc<EdgeCache>>,
    /// `edge_cache_fetch_requests_total{tenant,app,result}`.
    pub(super) cache_results: Option<IntCounterVec>,
    /// `edge_outbound_requests_total{tenant,app,result}`.
    pub(super) results: IntCounterVec,
}

impl OutboundClient {
    pub fn new(mut config: OutboundConfig, results: IntCounterVec) -> Self {
        config.hosts = std::mem::take(&mut config.hosts)
            .into_iter()
            .map(|(name, entry)| (name.trim_end_matches('.').to_ascii_lowercase(), entry))
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

    /// Whether an origin's address literal may be connected to: for a
    /// tenant's origin, public addresses and the internal ones the operator
    /// allowed; for one the operator configured (`operator_trusted`), any
    /// address. `outbound.deny` holds for both.
    pub fn origin_address_allowed(&self, ip: IpAddr, operator_trusted: bool) -> bool {
        if operator_trusted {
            return !self.config.denies(ip);
        }
        refusal(&self.config, ip, true).is_none()
    }

    /// Why a guest may not connect to the address literal `ip`, if it may
    /// not: internal addresses are reachable only through an operator's
    /// `hosts` name, and `outbound.deny` holds for everyone.
    pub fn guest_literal_refusal(&self, ip: IpAddr) -> Option<&'static str> {
        refusal(&self.config, ip, false)
    }
}

/// Read-ahead buffer per HTTP/1 origin connection.
const ORIGIN_READ_BUF_BYTES: usize = 64 << 10;

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
            && let Err(err) =
                VettingResolver::resolve(self.config.clone(), host, Some(tenant)).await
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
pub(super) async fn drain_briefly(mut body: WasiBody) {
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
