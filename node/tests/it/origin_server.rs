//! A scripted origin for cache tests: a small HTTP/1.1 server on 127.0.0.1
//! whose answer for each path is set (and changed) by the test, and which
//! records what it was sent.
//!
//! - Every answer's body is the scripted body followed by `#N`, N being
//!   the number of requests that path has received so far (this one
//!   included): the body tells which origin execution produced it.
//! - A GET or HEAD whose `If-None-Match` matches the scripted `ETag` (or
//!   whose `If-Modified-Since` is not older than the scripted
//!   `Last-Modified`) is answered `304` with the scripted headers and no
//!   body, for a scripted `200` (toggle with [`Script::unconditional`]).
//! - A GET with `Range: bytes=A-B` (or `A-`, `-N`) of a scripted `200` is
//!   answered `206` with that slice of the body; with several ranges, a
//!   `206` `multipart/byteranges`; with an `If-Range` that is not the
//!   scripted `ETag` (strong) or `Last-Modified`, the whole `200`.
//! - [`Script::fail`] closes the connection without answering;
//!   [`Script::delay`] waits before answering.
//! - An unscripted path is answered `404`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};

/// How the origin answers one path.
#[derive(Debug, Clone)]
pub struct Script {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
    delay: Option<Duration>,
    fail: bool,
    conditional: bool,
}

impl Script {
    /// `200` with `body` (plus `#N`).
    pub fn ok(body: &str) -> Self {
        Script {
            status: 200,
            headers: Vec::new(),
            body: body.into(),
            delay: None,
            fail: false,
            conditional: true,
        }
    }

    pub fn status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// Adds a response header (repeatable).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// `Cache-Control: value`.
    pub fn cc(self, value: &str) -> Self {
        self.header("cache-control", value)
    }

    /// Waits this long before answering (or failing).
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Reads the request, then closes the connection without an answer.
    pub fn fail() -> Self {
        Script {
            fail: true,
            ..Script::ok("")
        }
    }

    /// Never answers conditional requests with 304.
    pub fn unconditional(mut self) -> Self {
        self.conditional = false;
        self
    }

    fn scripted(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One request as the origin received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: Method,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap_or("<binary>").to_string())
    }
}

#[derive(Default)]
struct State {
    scripts: HashMap<String, Script>,
    /// Requests per path.
    requests: HashMap<String, usize>,
    /// Requests per (path, method).
    methods: HashMap<(String, Method), usize>,
    /// Answers with a body (not 304, not failed) per path.
    full: HashMap<String, usize>,
    /// 304 answers per path.
    not_modified: HashMap<String, usize>,
    last: HashMap<String, Received>,
}

/// See the module documentation.
pub struct ScriptedOrigin {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    open: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl ScriptedOrigin {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = open.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let state = shared.clone();
                let _open = OpenConnection::new(&counted);
                tokio::spawn(async move {
                    let _open = _open;
                    let service = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        async move { answer(&state, req).await }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        ScriptedOrigin {
            addr,
            state,
            open,
            task,
        }
    }

    /// Connections from the node open now.
    pub fn open_connections(&self) -> usize {
        self.open.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Sets (or replaces) the answer for `path` (the query is ignored).
    pub fn script(&self, path: &str, script: Script) {
        self.lock().scripts.insert(path.into(), script);
    }

    /// Requests `path` received, whatever their method or answer.
    pub fn requests(&self, path: &str) -> usize {
        self.lock().requests.get(path).copied().unwrap_or(0)
    }

    /// Requests with `method` that `path` received.
    pub fn method_requests(&self, path: &str, method: Method) -> usize {
        self.lock()
            .methods
            .get(&(path.to_string(), method))
            .copied()
            .unwrap_or(0)
    }

    /// Answers with a body (200, 206, ...: not 304, not failed) for `path`.
    pub fn full_responses(&self, path: &str) -> usize {
        self.lock().full.get(path).copied().unwrap_or(0)
    }

    /// 304 answers for `path`.
    pub fn not_modified(&self, path: &str) -> usize {
        self.lock().not_modified.get(path).copied().unwrap_or(0)
    }

    /// The last request `path` received.
    pub fn last(&self, path: &str) -> Received {
        self.lock()
            .last
            .get(path)
            .cloned()
            .unwrap_or_else(|| panic!("the origin received no request for {path}"))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Counts a connection as open while its task lives.
struct OpenConnection(Arc<std::sync::atomic::AtomicUsize>);

impl OpenConnection {
    fn new(count: &Arc<std::sync::atomic::AtomicUsize>) -> Self {
        count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        OpenConnection(count.clone())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for ScriptedOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    state: &Mutex<State>,
    request: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let (parts, body) = request.into_parts();
    // Read the request to its end, as origins do.
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let path = parts.uri.path().to_string();
    let (n, script) = {
        let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
        let n = {
            let count = state.requests.entry(path.clone()).or_default();
            *count += 1;
            *count
        };
        *state
            .methods
            .entry((path.clone(), parts.method.clone()))
            .or_default() += 1;
        state.last.insert(
            path.clone(),
            Received {
                method: parts.method.clone(),
                headers: parts.headers.clone(),
                body,
            },
        );
        (n, state.scripts.get(&path).cloned())
    };
    let script = script.unwrap_or_else(|| Script::ok("no script for this path").status(404));
    if let Some(delay) = script.delay {
        tokio::time::sleep(delay).await;
    }
    if script.fail {
        // An error from the service makes hyper close the connection
        // without writing a response.
        return Err(std::io::Error::other("scripted failure"));
    }
    let mut headers = HeaderMap::new();
    for (name, value) in &script.headers {
        headers.append(
            HeaderName::from_bytes(name.as_bytes()).expect("scripted header name"),
            HeaderValue::from_str(value).expect("scripted header value"),
        );
    }
    let get_or_head = parts.method == Method::GET || parts.method == Method::HEAD;
    if script.conditional
        && script.status == 200
        && get_or_head
        && not_modified(&script, &parts.headers)
    {
        let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
        *state.not_modified.entry(path).or_default() += 1;
        drop(state);
        return Ok(respond(StatusCode::NOT_MODIFIED, headers, Bytes::new()));
    }
    let full = format!("{}#{n}", script.body);
    let mut status = StatusCode::from_u16(script.status).expect("scripted status");
    let mut body = Bytes::from(full);
    if script.status == 200
        && parts.method == Method::GET
        && if_range_holds(&script, &parts.headers)
        && let Some(ranges) = parts
            .headers
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| byte_ranges(v, body.len()))
    {
        let len = body.len();
        if let [(start, end)] = ranges.as_slice() {
            headers.insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes {start}-{end}/{len}")).unwrap(),
            );
            body = body.slice(*start..=*end);
        } else {
            let content_type = headers.get(header::CONTENT_TYPE).cloned();
            let mut multipart = Vec::new();
            for (start, end) in &ranges {
                multipart.extend_from_slice(b"\r\n--origin-boundary\r\n");
                if let Some(value) = &content_type {
                    multipart.extend_from_slice(b"Content-Type: ");
                    multipart.extend_from_slice(value.as_bytes());
                    multipart.extend_from_slice(b"\r\n");
                }
                multipart.extend_from_slice(
                    format!("Content-Range: bytes {start}-{end}/{len}\r\n\r\n").as_bytes(),
                );
                multipart.extend_from_slice(&body[*start..=*end]);
            }
            multipart.extend_from_slice(b"\r\n--origin-boundary--\r\n");
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("multipart/byteranges; boundary=origin-boundary"),
            );
            body = Bytes::from(multipart);
        }
        status = StatusCode::PARTIAL_CONTENT;
    }
    *state
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .full
        .entry(path)
        .or_default() += 1;
    Ok(respond(status, headers, body))
}

fn respond(status: StatusCode, headers: HeaderMap, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// RFC 9110 §13.1: `If-None-Match` (weak comparison) wins over
/// `If-Modified-Since`.
fn not_modified(script: &Script, request: &HeaderMap) -> bool {
    if let Some(inm) = request.get(header::IF_NONE_MATCH) {
        let Some(etag) = script.scripted("etag") else {
            return false;
        };
        let weak = |t: &str| t.trim().trim_start_matches("W/").to_string();
        let inm = inm.to_str().unwrap_or("");
        return inm.trim() == "*" || inm.split(',').any(|t| weak(t) == weak(etag));
    }
    let date = |v: Option<&str>| v.and_then(|v| httpdate::parse_http_date(v).ok());
    match (
        date(
            request
                .get(header::IF_MODIFIED_SINCE)
                .and_then(|v| v.to_str().ok()),
        ),
        date(script.scripted("last-modified")),
    ) {
        (Some(since), Some(modified)) => modified <= since,
        _ => false,
    }
}

/// `bytes=A-B`, `bytes=A-` or `bytes=-N`, comma-separated, within a body
/// of `len` bytes (inclusive ends); `None` if any is not one of those.
fn byte_ranges(value: &str, len: usize) -> Option<Vec<(usize, usize)>> {
    let last = len.checked_sub(1)?;
    let mut ranges = Vec::new();
    for spec in value.strip_prefix("bytes=")?.split(',') {
        let (start, end) = spec.trim().split_once('-')?;
        let range = match (start.trim(), end.trim()) {
            ("", suffix) => (
                len.checked_sub(suffix.parse::<usize>().ok()?.min(len))?,
                last,
            ),
            (start, "") => (start.parse().ok()?, last),
            (start, end) => (start.parse().ok()?, end.parse::<usize>().ok()?.min(last)),
        };
        if range.0 > range.1 {
            return None;
        }
        ranges.push(range);
    }
    Some(ranges)
}

/// `If-Range` (RFC 9110 §13.1.5), if sent: the scripted strong `ETag`, or
/// the scripted `Last-Modified` exactly.
fn if_range_holds(script: &Script, request: &HeaderMap) -> bool {
    let Some(value) = request.get(header::IF_RANGE).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    if value.starts_with('"') || value.starts_with("W/") {
        return script
            .scripted("etag")
            .is_some_and(|etag| !etag.starts_with("W/") && etag == value);
    }
    script.scripted("last-modified") == Some(value)
}

/// An HTTP date `offset` from now (negative: in the past).
pub fn http_date(offset_secs: i64) -> String {
    let now = SystemTime::now();
    let at = if offset_secs >= 0 {
        now + Duration::from_secs(offset_secs.unsigned_abs())
    } else {
        now - Duration::from_secs(offset_secs.unsigned_abs())
    };
    httpdate::fmt_http_date(at)
}
