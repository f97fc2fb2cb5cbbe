//! `edge-load`: the load generator behind the benchmarks in `loadtest/`.
//!
//! N workers, each on its own connection (HTTP/1.1 or h2, plaintext or TLS),
//! send `GET`s for a fixed duration and record every latency in an HDR
//! histogram (1 µs to 60 s, 3 significant digits).
//!
//! - Closed loop: each worker sends its next request when the previous one
//!   is answered (like wrk).
//! - Open loop: requests are due at a fixed rate; a worker takes the next
//!   due slot and latency is measured from when the request was *due*, not
//!   when it was sent, so a stalled server shows up as latency instead of
//!   being hidden by the load generator slowing down (coordinated omission).

pub mod chart;
mod connect;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

pub use connect::tls_config;
use connect::{Connector, Sender};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Http1,
    Http2,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "loop")]
pub enum Mode {
    /// Each connection sends its next request when the last one is answered.
    Closed,
    /// Requests are due at `rate` per second across all connections.
    Open { rate: f64 },
}

/// One load run.
#[derive(Clone)]
pub struct LoadConfig {
    /// Where to connect.
    pub addr: SocketAddr,
    /// `http` or `https`.
    pub https: bool,
    /// The `Host` header (and TLS SNI name).
    pub host: String,
    /// Path and query of every request.
    pub path: String,
    pub connections: usize,
    pub duration: Duration,
    pub protocol: Protocol,
    pub mode: Mode,
    /// Open a new connection (and TLS session) for every request.
    pub new_connection_per_request: bool,
    /// Accept any server certificate (development certificates).
    pub insecure: bool,
    /// Extra trusted roots for https targets.
    pub roots: rustls::RootCertStore,
    /// Print a progress line to stderr this often; `None` for quiet.
    pub progress: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("TLS: {0}")]
    Tls(std::io::Error),
    #[error("HTTP handshake: {0}")]
    Handshake(hyper::Error),
    #[error("configuration: {0}")]
    Config(String),
}

impl LoadError {
    fn kind(&self) -> &'static str {
        match self {
            LoadError::Connect(_) => "connect",
            LoadError::Tls(_) => "tls",
            LoadError::Handshake(_) => "handshake",
            LoadError::Config(_) => "config",
        }
    }
}

/// Latency percentiles, in milliseconds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

/// What a run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub label: String,
    pub protocol: Protocol,
    pub mode: Mode,
    pub connections: usize,
    pub duration_secs: f64,
    /// Requests answered (any status).
    pub requests: u64,
    pub requests_per_sec: f64,
    pub latency_ms: Latency,
    /// Responses by status code.
    pub statuses: BTreeMap<u16, u64>,
    /// Failures by kind: connect, tls, handshake, request, body.
    pub errors: BTreeMap<String, u64>,
}

impl Report {
    /// Requests that failed or answered with a non-2xx status.
    pub fn failures(&self) -> u64 {
        let non_2xx: u64 = self
            .statuses
            .iter()
            .filter(|(status, _)| !(200..300).contains(*status))
            .map(|(_, n)| n)
            .sum();
        non_2xx + self.errors.values().sum::<u64>()
    }

    pub fn markdown_header() -> &'static str {
        "| run | req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | failures |\n|---|---:|---:|---:|---:|---:|---:|---:|"
    }

    pub fn markdown_row(&self) -> String {
        let l = &self.latency_ms;
        format!(
            "| {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} |",
            self.label,
            self.requests_per_sec,
            l.p50,
            l.p90,
            l.p99,
            l.p999,
            l.max,
            self.failures()
        )
    }
}

/// What one worker recorded.
struct Tally {
    latency_us: Histogram<u64>,
    statuses: BTreeMap<u16, u64>,
    errors: BTreeMap<String, u64>,
}

impl Tally {
    fn new() -> Result<Self, LoadError> {
        Ok(Self {
            latency_us: Histogram::new_with_bounds(1, 60_000_000, 3)
                .map_err(|e| LoadError::Config(e.to_string()))?,
            statuses: BTreeMap::new(),
            errors: BTreeMap::new(),
        })
    }

    fn error(&mut self, kind: &str) {
        *self.errors.entry(kind.to_string()).or_default() += 1;
    }

    fn merge(&mut self, other: Tally) {
        let _ = self.latency_us.add(&other.latency_us);
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
        for (kind, n) in other.errors {
            *self.errors.entry(kind).or_default() += n;
        }
    }
}

/// Runs one load test and reports what it measured.
pub async fn run(config: LoadConfig, label: &str) -> Result<Report, LoadError> {
    if config.connections == 0 {
        return Err(LoadError::Config("connections must be at least 1".into()));
    }
    if let Mode::Open { rate } = config.mode
        && !(rate.is_finite() && rate > 0.0)
    {
        return Err(LoadError::Config("rate must be a positive number".into()));
    }
    let tls = if config.https {
        let alpn: &[u8] = match config.protocol {
            Protocol::Http1 => b"http/1.1",
            Protocol::Http2 => b"h2",
        };
        let name = rustls_pki_types::ServerName::try_from(config.host.clone())
            .map_err(|e| LoadError::Config(format!("TLS name {}: {e}", config.host)))?;
        Some((
            tls_config(config.roots.clone(), config.insecure, alpn, false)?,
            name,
        ))
    } else {
        None
    };
    let connector = Connector {
        addr: config.addr,
        protocol: config.protocol,
        tls,
    };
    let started = Instant::now();
    let deadline = started + config.duration;
    let next_slot = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let progress = config.progress.map(|every| {
        let done = done.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval_at(started + every, every);
            loop {
                ticker.tick().await;
                let n = done.load(Ordering::Relaxed);
                let secs = started.elapsed().as_secs_f64();
                eprintln!(
                    "edge-load: {secs:.0}s, {n} requests, {:.0} req/s",
                    n as f64 / secs
                );
            }
        })
    });

    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..config.connections {
        let worker = Worker {
            config: config.clone(),
            connector: connector.clone(),
            started,
            deadline,
            next_slot: next_slot.clone(),
            done: done.clone(),
            tally: Tally::new()?,
        };
        workers.spawn(worker.run());
    }
    let mut total = Tally::new()?;
    while let Some(tally) = workers.join_next().await {
        match tally {
            Ok(tally) => total.merge(tally),
            Err(_) => total.error("worker-panic"),
        }
    }
    if let Some(progress) = progress {
        progress.abort();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let h = &total.latency_us;
    let ms = |us: u64| us as f64 / 1000.0;
    let requests = h.len();
    Ok(Report {
        label: label.to_string(),
        protocol: config.protocol,
        mode: config.mode,
        connections: config.connections,
        duration_secs: elapsed,
        requests,
        requests_per_sec: requests as f64 / elapsed,
        latency_ms: Latency {
            p50: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            mean: h.mean() / 1000.0,
        },
        statuses: total.statuses,
        errors: total.errors,
    })
}

struct Worker {
    config: LoadConfig,
    connector: Connector,
    started: Instant,
    deadline: Instant,
    next_slot: Arc<AtomicU64>,
    done: Arc<AtomicU64>,
    tally: Tally,
}

impl Worker {
    async fn run(mut self) -> Tally {
        let mut sender: Option<Sender> = None;
        loop {
            // When this request counts from: now (closed loop) or when it was
            // due (open loop).
            let due = match self.config.mode {
                Mode::Closed => Instant::now(),
                Mode::Open { rate } => {
                    let slot = self.next_slot.fetch_add(1, Ordering::Relaxed);
                    let due = self.started + Duration::from_secs_f64(slot as f64 / rate);
                    if due >= self.deadline {
                        break;
                    }
                    tokio::time::sleep_until(due).await;
                    due
                }
            };
            if Instant::now() >= self.deadline {
                break;
            }
            if sender.is_none() || self.config.new_connection_per_request {
                match self.connector.connect().await {
                    Ok(connected) => sender = Some(connected),
                    Err(err) => {
                        self.tally.error(err.kind());
                        // Don't spin on a refusing server.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                }
            }
            let Some(current) = sender.as_mut() else {
                continue;
            };
            match self.request(current).await {
                Ok(status) => {
                    let micros = due.elapsed().as_micros().min(u128::from(u64::MAX)) as u64;
                    self.tally.latency_us.saturating_record(micros.max(1));
                    *self.tally.statuses.entry(status).or_default() += 1;
                    self.done.fetch_add(1, Ordering::Relaxed);
                }
                Err(kind) => {
                    self.tally.error(kind);
                    sender = None;
                }
            }
        }
        self.tally
    }

    /// One request, body read to the end; the status, or the failure kind.
    async fn request(&self, sender: &mut Sender) -> Result<u16, &'static str> {
        let uri = match self.config.protocol {
            // h2 carries the authority in the URI; HTTP/1.1 in the Host header.
            Protocol::Http2 => format!(
                "{}://{}{}",
                if self.config.https { "https" } else { "http" },
                self.config.host,
                self.config.path
            ),
            Protocol::Http1 => self.config.path.clone(),
        };
        let mut request = http::Request::get(uri);
        if self.config.protocol == Protocol::Http1 {
            request = request.header(http::header::HOST, &self.config.host);
        }
        let request = request.body(Empty::<Bytes>::new()).map_err(|_| "request")?;
        let response = sender.send(request).await.map_err(|_| "request")?;
        let status = response.status().as_u16();
        response.into_body().collect().await.map_err(|_| "body")?;
        Ok(status)
    }
}
