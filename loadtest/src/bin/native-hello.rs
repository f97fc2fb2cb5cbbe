//! `native-hello`: the ceiling for the hello benchmarks — a plain hyper
//! server (hyper-util auto, h1 + h2) answering "Hello from the edge!" with
//! no WebAssembly at all, optionally over TLS with a self-signed
//! certificate.
//!
//!   native-hello --listen 127.0.0.1:18940 [--tls] [--cache-control VALUE]
//!
//! With `--cache-control`, every answer carries that header: the origin for
//! the cache benchmark (scenario c).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:18940")]
    listen: SocketAddr,
    /// Serve HTTPS (ALPN h2 and http/1.1) with a self-signed certificate
    /// for localhost.
    #[arg(long)]
    tls: bool,
    /// A `Cache-Control` value to send with every answer.
    #[arg(long)]
    cache_control: Option<hyper::header::HeaderValue>,
    /// Answer with this many bytes (`x` repeated, the path first, so every
    /// URL has its own content) instead of the greeting: a working set of
    /// many distinct objects for the cache benchmarks.
    #[arg(long)]
    body_bytes: Option<usize>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(serve(args))
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let tls = if args.tls {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()])?;
        let key = rustls_pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    } else {
        None
    };
    println!("native-hello: listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let tls = tls.clone();
        let cache_control = args.cache_control.clone();
        let body_bytes = args.body_bytes;
        tokio::spawn(async move {
            let cache_control = cache_control.clone();
            let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let body = match body_bytes {
                    None => Bytes::from_static(b"Hello from the edge!\n"),
                    Some(n) => {
                        let mut body = req.uri().path().as_bytes().to_vec();
                        body.resize(n.max(body.len()), b'x');
                        Bytes::from(body)
                    }
                };
                let mut response = hyper::Response::new(Full::new(body));
                if let Some(value) = &cache_control {
                    response
                        .headers_mut()
                        .insert(hyper::header::CACHE_CONTROL, value.clone());
                }
                async move { Ok::<_, std::convert::Infallible>(response) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let _ = match tls {
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(stream) => {
                        builder
                            .serve_connection(TokioIo::new(stream), service)
                            .await
                    }
                    Err(_) => return,
                },
                None => {
                    builder
                        .serve_connection(TokioIo::new(stream), service)
                        .await
                }
            };
        });
    }
}
