//! Per-request cost of hello, in process (no sockets), in one run:
//!
//! - `invoke`: `Runtime::invoke` alone — a fresh `Store`, an instance from
//!   the warm pool, `incoming-handler.handle`, the body read to the end;
//! - `dispatch`: the node's whole request path on top of it (routing, size
//!   checks, admission, limits, metrics, response wrapping).
//!
//! - `dispatch_with_cache`: the same with the shared cache in front (hello
//!   is not cacheable, so this is the cost of the lookup and the pass).
//!
//! The ratio of the first two is what the node adds to wasmtime's own work.
//!
//!   cargo bench -p edge-node --bench request

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use edge_node::config::{AppConfig, HttpConfig, RuntimeConfig};
use edge_node::internals::{
    App, Dispatcher, Metrics, OutboundClient, RoutingTable, Runtime, Target,
};
use http_body_util::{BodyExt, Empty};
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;

fn setup() -> (Arc<Runtime>, Arc<App>, Arc<Dispatcher>, Arc<Dispatcher>) {
    let metrics = Metrics::new(prometheus::Registry::new()).expect("metrics");
    let outbound = Arc::new(OutboundClient::new(
        Default::default(),
        metrics.outbound_requests.clone(),
    ));
    let settings = RuntimeConfig {
        instance_slots: 64,
        ..RuntimeConfig::default()
    };
    let runtime =
        Arc::new(Runtime::new(&settings, &Default::default(), outbound).expect("runtime"));
    let config: AppConfig = toml::from_str(&format!(
        "name = \"hello\"\ntenant = \"bench\"\nhosts = [\"hello.bench\"]\ncomponent = {:?}\n",
        edge_fixtures::HELLO
    ))
    .expect("app config");
    let app = Arc::new(App::load(&config, &runtime, &metrics).expect("hello loads"));
    let table = RoutingTable::new([(config.hosts.as_slice(), "/", Target::App(app.clone()))]);
    let dispatcher = Dispatcher::new(
        runtime.clone(),
        table,
        metrics.clone(),
        &HttpConfig::default(),
    );
    let table = RoutingTable::new([(config.hosts.as_slice(), "/", Target::App(app.clone()))]);
    let cached = Dispatcher::new(runtime.clone(), table, metrics, &HttpConfig::default())
        .with_cache(Some(Arc::new(edge_node::internals::EdgeCache::new(
            &Default::default(),
            None,
        ))));
    (runtime, app, Arc::new(dispatcher), Arc::new(cached))
}

fn request() -> http::Request<Empty<Bytes>> {
    http::Request::get("http://hello.bench/")
        .header("host", "hello.bench")
        .body(Empty::new())
        .expect("request")
}

fn bench(c: &mut Criterion) {
    // Benchmarks measure the release configuration: no backtraces.
    if std::env::var_os("RUST_BACKTRACE").is_some() {
        eprintln!("note: unset RUST_BACKTRACE for meaningful figures");
    }
    // One thread: the guest task runs where the request is awaited, so the
    // figure is CPU per request, not cross-thread wake-up latency.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let (runtime, app, dispatcher, cached) = rt.block_on(async { setup() });
    let mut group = c.benchmark_group("hello");
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("invoke", |b| {
        b.to_async(&rt).iter(|| async {
            let response = runtime
                .invoke(
                    &app,
                    request(),
                    Scheme::Http,
                    edge_node::internals::RequestId(1),
                    tokio::time::Instant::now() + Duration::from_secs(10),
                    Arc::new(()),
                )
                .await
                .expect("invoke");
            let body = response.response.into_body().collect().await.expect("body");
            assert!(!body.to_bytes().is_empty());
        })
    });
    group.bench_function("dispatch", |b| {
        b.to_async(&rt).iter(|| async {
            let response = dispatcher.dispatch(request(), Scheme::Http).await;
            assert_eq!(response.status(), 200);
            let body = response.into_body().collect().await.expect("body");
            assert!(!body.to_bytes().is_empty());
        })
    });
    // The same with the shared cache in front (hello's answer is not
    // cacheable: this is the cost of looking and passing).
    group.bench_function("dispatch_with_cache", |b| {
        b.to_async(&rt).iter(|| async {
            let response = cached.dispatch(request(), Scheme::Http).await;
            assert_eq!(response.status(), 200);
            let body = response.into_body().collect().await.expect("body");
            assert!(!body.to_bytes().is_empty());
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
