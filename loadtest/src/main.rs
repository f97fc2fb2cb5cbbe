//! `edge-load URL`: load-test one URL and print what was measured.
//!
//!   edge-load http://127.0.0.1:8080/ -c 32 -d 10s
//!   edge-load https://hello.localhost:8443/ --connect 127.0.0.1:8443 --h2 --insecure
//!   edge-load http://127.0.0.1:8080/ --rate 5000 -c 64 --json out.json

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use edge_load::{LoadConfig, Mode, Protocol, Report};

#[derive(Parser)]
#[command(
    name = "edge-load",
    version,
    about = "HTTP load generator (h1/h2, TLS, closed/open loop)"
)]
struct Args {
    /// Target URL: http[s]://host[:port]/path
    url: http::Uri,
    /// Connections (one worker each).
    #[arg(short = 'c', long, default_value_t = 32)]
    connections: usize,
    /// How long to run.
    #[arg(short = 'd', long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Use HTTP/2 (over TLS: ALPN h2; plaintext: prior knowledge).
    #[arg(long)]
    h2: bool,
    /// Open loop: requests due at this many per second (latency counted from
    /// when each was due). Without it: closed loop.
    #[arg(long)]
    rate: Option<f64>,
    /// A new connection (and a full TLS handshake: no session resumption)
    /// for every request.
    #[arg(long)]
    new_conn: bool,
    /// Connect to this address instead of resolving the URL's host.
    #[arg(long)]
    connect: Option<SocketAddr>,
    /// Accept any TLS certificate (self-signed development certificates).
    #[arg(long)]
    insecure: bool,
    /// Name of this run in the output.
    #[arg(long, default_value = "run")]
    label: String,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Print a progress line every this often.
    #[arg(long, value_parser = humantime::parse_duration)]
    progress: Option<Duration>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let https = match args.url.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => bail!("the URL must start with http:// or https://"),
    };
    let host = args.url.host().context("the URL has no host")?.to_string();
    let port = args.url.port_u16().unwrap_or(if https { 443 } else { 80 });
    let addr = match args.connect {
        Some(addr) => addr,
        None => tokio::net::lookup_host((host.as_str(), port))
            .await
            .with_context(|| format!("cannot resolve {host}"))?
            .next()
            .with_context(|| format!("{host} has no address"))?,
    };
    let authority = match args.url.port_u16() {
        Some(port) => format!("{host}:{port}"),
        None => host.clone(),
    };
    let config = LoadConfig {
        addr,
        https,
        host: if https { host } else { authority },
        path: args
            .url
            .path_and_query()
            .map_or("/".to_string(), |p| p.as_str().to_string()),
        connections: args.connections,
        duration: args.duration,
        protocol: if args.h2 {
            Protocol::Http2
        } else {
            Protocol::Http1
        },
        mode: match args.rate {
            Some(rate) => Mode::Open { rate },
            None => Mode::Closed,
        },
        new_connection_per_request: args.new_conn,
        insecure: args.insecure,
        roots: rustls::RootCertStore::empty(),
        progress: args.progress,
    };
    let report = edge_load::run(config, &args.label).await?;
    println!("{}", Report::markdown_header());
    println!("{}", report.markdown_row());
    if !report.errors.is_empty() {
        println!("errors: {:?}", report.errors);
    }
    if let Some(path) = args.json {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(&path, json).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}
