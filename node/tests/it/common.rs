//! Test harness: real nodes on 127.0.0.1 with test certificates, and real
//! HTTP clients that resolve the apps' hostnames to them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use edge_node::config::{
    AppCompression, AppConfig, AppHttps, AppLimits, AppOutbound, CertificateConfig, HttpConfig,
    ListenConfig, NodeConfig, OutboundConfig, RuntimeConfig, TlsConfig,
};
use edge_node::names::HostPattern;
use edge_node::{Node, NodeHandle};
use tempfile::TempDir;

/// An app for [`TestNodeBuilder::app`].
pub struct TestApp {
    name: String,
    tenant: String,
    hosts: Vec<String>,
    path_prefix: String,
    component: String,
    origin: Option<String>,
    forward_override_headers: bool,
    env: BTreeMap<String, String>,
    limits: AppLimits,
    outbound: AppOutbound,
    https: AppHttps,
    compression: AppCompression,
}

pub fn app(name: &str, component: &str) -> TestApp {
    TestApp {
        name: name.into(),
        tenant: "acme".into(),
        hosts: vec![format!("{name}.test")],
        path_prefix: "/".into(),
        component: component.into(),
        origin: None,
        forward_override_headers: false,
        env: BTreeMap::new(),
        limits: AppLimits::default(),
        outbound: AppOutbound::default(),
        https: AppHttps::default(),
        compression: AppCompression::default(),
    }
}

/// An app that forwards to `origin` (no component).
pub fn origin_app(name: &str, origin: &str) -> TestApp {
    TestApp {
        origin: Some(origin.into()),
        ..app(name, "")
    }
}

impl TestApp {
    pub fn tenant(mut self, tenant: &str) -> Self {
        self.tenant = tenant.into();
        self
    }
    pub fn hosts(mut self, hosts: &[&str]) -> Self {
        self.hosts = hosts.iter().map(|h| h.to_string()).collect();
        self
    }
    pub fn path_prefix(mut self, prefix: &str) -> Self {
        self.path_prefix = prefix.into();
        self
    }
    /// Lets the app call these destinations (`http://host:port`).
    pub fn outbound(mut self, allow: &[&str], max_subrequests: Option<u32>) -> Self {
        self.outbound = AppOutbound {
            allow: allow
                .iter()
                .map(|d| d.to_string().try_into().expect("destination"))
                .collect(),
            max_subrequests,
        };
        self
    }
    pub fn limits(mut self, limits: AppLimits) -> Self {
        self.limits = limits;
        self
    }
    /// Forwards method-override and underscored headers to the origin.
    pub fn forward_override_headers(mut self) -> Self {
        self.forward_override_headers = true;
        self
    }
    /// The app's HTTPS options (redirect, HSTS).
    pub fn https(mut self, redirect: bool, hsts: Option<&str>) -> Self {
        self.https = AppHttps {
            redirect,
            hsts: hsts.map(str::to_string),
        };
        self
    }
    /// The app's compression at the edge (`[apps.compression]`).
    pub fn compression(mut self, compression: AppCompression) -> Self {
        self.compression = compression;
        self
    }
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.insert(key.into(), value.into());
        self
    }
}

/// A certificate the test generated and the client trusts.
pub struct TestCert {
    pub pem: String,
}

pub struct TestNodeBuilder {
    apps: Vec<TestApp>,
    https: bool,
    http: bool,
    runtime: RuntimeConfig,
    http_config: HttpConfig,
    outbound: OutboundConfig,
    cache: bool,
    cache_capacity: Option<u64>,
    purge_token: Option<String>,
    proxy_protocol: bool,
    /// Last changes to `[cache]` (the disk tier's tests).
    cache_change: Option<CacheChange>,
    /// The node's `[compression]`.
    compression: edge_node::config::CompressionConfig,
}

/// A change to the node's `[cache]` settings ([`TestNodeBuilder::cache`]).
type CacheChange = Box<dyn FnOnce(&mut edge_node::config::CacheConfig) + Send>;

impl TestNodeBuilder {
    /// Both client listeners expect a PROXY protocol header.
    pub fn proxy_protocol(mut self) -> Self {
        self.proxy_protocol = true;
        self
    }
    pub fn app(mut self, app: TestApp) -> Self {
        self.apps.push(app);
        self
    }
    /// Also listen on plaintext HTTP.
    pub fn plaintext(mut self) -> Self {
        self.http = true;
        self
    }
    /// No shared cache: for tests of what the app itself does under many
    /// identical concurrent requests (the cache would collapse them).
    pub fn without_cache(mut self) -> Self {
        self.cache = false;
        self
    }

    /// A cache of `bytes` (entries up to a quarter of it).
    pub fn cache_capacity(mut self, bytes: u64) -> Self {
        self.cache_capacity = Some(bytes);
        self
    }

    /// Changes the node's `[cache]` settings (after `cache_capacity`).
    pub fn cache(
        mut self,
        change: impl FnOnce(&mut edge_node::config::CacheConfig) + Send + 'static,
    ) -> Self {
        self.cache_change = Some(Box::new(change));
        self
    }

    /// Enables `POST /cache/purge` on the admin listener with this token.
    pub fn purge_token(mut self, token: &str) -> Self {
        self.purge_token = Some(token.into());
        self
    }

    pub fn without_https(mut self) -> Self {
        self.https = false;
        self
    }
    /// Size of the instance pool (default 256 in tests).
    pub fn instance_slots(mut self, slots: u32) -> Self {
        self.runtime.instance_slots = slots;
        self
    }
    /// Changes the node's `[outbound]` settings.
    pub fn outbound(mut self, change: impl FnOnce(&mut OutboundConfig)) -> Self {
        change(&mut self.outbound);
        self
    }
    /// Changes the node's `[compression]` settings.
    pub fn compression(
        mut self,
        change: impl FnOnce(&mut edge_node::config::CompressionConfig),
    ) -> Self {
        change(&mut self.compression);
        self
    }
    /// Changes the node's `[http]` settings.
    pub fn http(mut self, change: impl FnOnce(&mut HttpConfig)) -> Self {
        change(&mut self.http_config);
        self
    }
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.http_config.shutdown_grace = grace;
        self
    }

    pub async fn start(self) -> TestNode {
        let dir = tempfile::tempdir().expect("temp dir");
        // One certificate per app, for its hostnames: SNI must pick the right one.
        let mut certs = Vec::new();
        let mut cert_configs = Vec::new();
        for (i, app) in self.apps.iter().enumerate() {
            let generated = rcgen::generate_simple_self_signed(app.hosts.clone()).expect("rcgen");
            let cert_path = dir.path().join(format!("cert{i}.pem"));
            let key_path = dir.path().join(format!("key{i}.pem"));
            std::fs::write(&cert_path, generated.cert.pem()).expect("write cert");
            std::fs::write(&key_path, generated.signing_key.serialize_pem()).expect("write key");
            certs.push(TestCert {
                pem: generated.cert.pem(),
            });
            cert_configs.push(CertificateConfig {
                hosts: app.hosts.iter().map(|h| host_pattern(h)).collect(),
                cert_path,
                key_path,
                default: false,
            });
        }
        let loopback: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let config = NodeConfig {
            listen: ListenConfig {
                https: self.https.then_some(loopback),
                http: self.http.then_some(loopback),
                admin: Some(loopback),
                https_proxy_protocol: self.proxy_protocol,
                http_proxy_protocol: self.proxy_protocol,
            },
            tls: self.https.then_some(TlsConfig::Files {
                certificates: cert_configs,
            }),
            runtime: self.runtime,
            compile: Default::default(),
            http: self.http_config,
            outbound: self.outbound,
            apps: self
                .apps
                .iter()
                .map(|a| AppConfig {
                    name: a.name.clone().try_into().expect("app name"),
                    tenant: a.tenant.clone().try_into().expect("tenant"),
                    hosts: a.hosts.iter().map(|h| host_pattern(h)).collect(),
                    path_prefix: a.path_prefix.clone(),
                    component: a.origin.is_none().then(|| PathBuf::from(&a.component)),
                    origin: a.origin.clone().map(|o| o.try_into().expect("origin URL")),
                    forward_override_headers: a.forward_override_headers,
                    env: a.env.clone(),
                    limits: a.limits.clone(),
                    outbound: a.outbound.clone(),
                    https: a.https.clone(),
                    compression: a.compression,
                })
                .collect(),
            control_plane: None,
            cache: {
                let mut cache = edge_node::config::CacheConfig {
                    enabled: self.cache,
                    purge_token: self.purge_token.clone(),
                    ..Default::default()
                };
                if let Some(capacity) = self.cache_capacity {
                    cache.capacity_bytes = capacity;
                    cache.max_entry_bytes = (capacity / 4) as usize;
                }
                if let Some(change) = self.cache_change {
                    change(&mut cache);
                }
                cache
            },
            compression: self.compression,
            log: Default::default(),
            kv: Default::default(),
        };
        let handle = Node::start(config).await.expect("node starts");
        TestNode {
            handle: Some(handle),
            certs,
            hosts: self.apps.iter().flat_map(|a| a.hosts.clone()).collect(),
            _dir: dir,
        }
    }
}

fn host_pattern(h: &str) -> HostPattern {
    HostPattern::try_from(h.to_string()).expect("host pattern")
}

pub struct TestNode {
    handle: Option<NodeHandle>,
    pub certs: Vec<TestCert>,
    hosts: Vec<String>,
    _dir: TempDir,
}

impl TestNode {
    pub fn builder() -> TestNodeBuilder {
        TestNodeBuilder {
            apps: Vec::new(),
            https: true,
            http: false,
            runtime: RuntimeConfig {
                // Room for the 200-concurrent-requests test, small enough that
                // parallel tests don't reserve terabytes of address space each.
                instance_slots: 256,
                ..RuntimeConfig::default()
            },
            http_config: HttpConfig::default(),
            outbound: OutboundConfig::default(),
            cache: true,
            cache_capacity: None,
            purge_token: None,
            proxy_protocol: false,
            cache_change: None,
            compression: Default::default(),
        }
    }

    pub fn handle(&self) -> &NodeHandle {
        self.handle.as_ref().expect("node running")
    }

    pub fn https_addr(&self) -> SocketAddr {
        self.handle().https_addr.expect("https listener")
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.handle().http_addr.expect("http listener")
    }

    pub fn url(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.https_addr().port())
    }

    pub fn http_url(&self, host: &str, path: &str) -> String {
        format!("http://{host}:{}{path}", self.http_addr().port())
    }

    fn client_builder(&self) -> reqwest::ClientBuilder {
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .tls_built_in_root_certs(false);
        for cert in &self.certs {
            builder = builder.add_root_certificate(
                reqwest::Certificate::from_pem(cert.pem.as_bytes()).expect("test cert"),
            );
        }
        for host in &self.hosts {
            if let Some(https) = self.handle().https_addr {
                builder = builder.resolve(host, https);
            }
        }
        builder
    }

    /// A client that negotiates the protocol by ALPN (h2 with this node).
    pub fn client(&self) -> reqwest::Client {
        self.client_builder().build().expect("client")
    }

    /// `GET https://{host}{path}` with [`TestNode::client`].
    pub async fn get(&self, host: &str, path: &str) -> reqwest::Response {
        self.client()
            .get(self.url(host, path))
            .send()
            .await
            .unwrap()
    }

    /// A client that does not follow redirects (they are answers), speaking
    /// HTTP/2 (negotiated by ALPN) or, without `http2`, HTTP/1.1 only.
    pub fn client_without_redirects(&self, http2: bool) -> reqwest::Client {
        let builder = self
            .client_builder()
            .redirect(reqwest::redirect::Policy::none());
        let builder = if http2 { builder } else { builder.http1_only() };
        builder.build().expect("client")
    }

    /// A client that speaks HTTP/1.1 only.
    pub fn http1_client(&self) -> reqwest::Client {
        self.client_builder().http1_only().build().expect("client")
    }

    /// A client resolving every app host to the plaintext listener.
    pub fn plaintext_client(&self) -> reqwest::Client {
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60));
        for host in &self.hosts {
            builder = builder.resolve(host, self.http_addr());
        }
        builder.build().expect("client")
    }

    /// POSTs `body` to the admin listener's `/cache/purge` with `token`:
    /// status, `x-edge-error`, body.
    pub async fn admin_purge(&self, token: Option<&str>, body: &str) -> (u16, String, String) {
        let admin = self.handle().admin_addr.expect("admin listener");
        let mut request = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client")
            .post(format!("http://{admin}/cache/purge"))
            .body(body.to_string());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("purge answer");
        let status = response.status().as_u16();
        let code = response
            .headers()
            .get("x-edge-error")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        (status, code, response.text().await.expect("purge body"))
    }

    /// The Prometheus text from the admin listener.
    pub async fn metrics_text(&self) -> String {
        let admin = self.handle().admin_addr.expect("admin listener");
        reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client")
            .get(format!("http://{admin}/metrics"))
            .send()
            .await
            .expect("metrics answer")
            .text()
            .await
            .expect("metrics body")
    }

    /// Stops the node gracefully and waits for it.
    pub async fn shutdown(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.shutdown().await;
        }
    }

    pub fn take_handle(&mut self) -> NodeHandle {
        self.handle.take().expect("node running")
    }
}

/// The value of one sample line in Prometheus text, e.g.
/// `metric_value(text, "edge_requests_total", &[("app", "hello"), ("status", "2xx")])`.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = match series.split_once('{') {
                Some((m, rest)) => (m, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            (metric == name).then_some((rest.to_string(), value))
        })
        .find(|(rest, _)| {
            labels
                .iter()
                .all(|(k, v)| rest.split(',').any(|pair| pair == format!("{k}=\"{v}\"")))
        })
        .and_then(|(_, value)| value.parse().ok())
}

/// Polls `check` until it returns true or 30 s pass (a deadline, not a
/// performance assertion: it only turns a hang into a failure).
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// A keep-alive HTTP/1.1 connection that has completed one request (`GET
/// path` for `host`) and now sits idle.
pub async fn idle_keep_alive_connection(
    addr: SocketAddr,
    host: &str,
    path: &str,
) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut buf = [0u8; 4096];
    let n = stream.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    stream
}

/// Asserts the server has already closed `stream`: a non-blocking read sees
/// end-of-stream now, rather than after some idle timeout.
pub fn assert_closed_by_server(stream: tokio::net::TcpStream) {
    let mut stream = stream.into_std().unwrap();
    stream.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 4096];
    // The rest of the last response (a body that came in a later segment
    // than the headers) may still be unread: what must follow it is the end.
    loop {
        match std::io::Read::read(&mut stream, &mut buf) {
            Ok(0) => return,
            Ok(_) => continue,
            Err(err) => panic!("connection still open after shutdown ({err})"),
        }
    }
}

/// An origin server on 127.0.0.1 for outbound tests: answers `origin says
/// hi` (after sleeping on `/slow`) and counts the requests it receives.
pub struct TestOrigin {
    pub addr: SocketAddr,
    hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl TestOrigin {
    pub async fn start() -> Self {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = hits.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let counter = counter.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| {
                            counter.fetch_add(1, Ordering::SeqCst);
                            async move {
                                // Read the request to its end, as origins do,
                                // so the connection stays usable.
                                let slow = req.uri().path() == "/slow";
                                let _ = http_body_util::BodyExt::collect(req.into_body()).await;
                                if slow {
                                    tokio::time::sleep(Duration::from_secs(10)).await;
                                }
                                Ok::<_, std::convert::Infallible>(http::Response::new(
                                    http_body_util::Full::new(bytes::Bytes::from_static(
                                        b"origin says hi",
                                    )),
                                ))
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        TestOrigin { addr, hits, task }
    }

    pub fn hits(&self) -> usize {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for TestOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Waits until `app` has exactly `n` requests in flight on `node`.
pub async fn wait_in_flight(node: &TestNode, app: &str, n: f64) {
    eventually(&format!("{n} requests of {app} in flight"), || async {
        let text = node.metrics_text().await;
        metric_value(&text, "edge_requests_in_flight", &[("app", app)]) == Some(n)
    })
    .await;
}

/// Reads a response body to its end: the bytes received, and whether the
/// stream ended in an error (a cut-off body) rather than cleanly.
pub async fn read_body(response: reqwest::Response) -> (usize, bool) {
    use futures::StreamExt;
    let mut received = 0;
    let mut body = response.bytes_stream();
    while let Some(part) = body.next().await {
        match part {
            Ok(bytes) => received += bytes.len(),
            Err(_) => return (received, true),
        }
    }
    (received, false)
}
