//! Entry points for the node's fuzz targets (`common/fuzz`, run by
//! `ops/fuzz`): each takes arbitrary bytes, drives one parser of untrusted
//! input the way a request does, and panics when an invariant the rest of
//! the node relies on does not hold. They live in the crate, not in the
//! fuzz targets, so they reach the private parts they check, and so the
//! committed seed corpora also run under `cargo test` (see the tests below)
//! on the stable toolchain. Not a stable API.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use edge_common::names::HostPattern;
use edge_common::sync::PurgeTarget;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode};

use crate::cache::layer::EdgeCache;
use crate::cache::policy::{self, Received, Use};
use crate::cache::purge::AdminPurge;
use crate::cache::store::{CacheKey, Entry};
use crate::cache::{key::UrlPurge, targeted, vary};

/// Headers from `name: value` lines; lines that are not a valid field are
/// skipped, as hyper would have refused them before the cache saw them.
fn header_lines(text: &[u8]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for line in text.split(|b| *b == b'\n').take(64) {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.trim_ascii()),
            HeaderValue::from_bytes(value),
        ) {
            headers.append(name, value);
        }
    }
    headers
}

/// Splits at the first blank line: (before, after).
fn two_parts(data: &[u8]) -> (&[u8], &[u8]) {
    match data.windows(2).position(|w| w == b"\n\n") {
        Some(at) => (&data[..at], &data[at + 2..]),
        None => (data, &[]),
    }
}

/// RFC 9111 §1.2.2: delta-seconds past 2^31 are read as 2^31.
const LONGEST_LIFETIME: Duration = Duration::from_secs(1 << 31);

/// `Cache-Control`, the targeted fields (`CDN-Cache-Control`,
/// `Edge-Cache-Control`), `Surrogate-Control` and the freshness, age and
/// reuse computations. Input: two bytes of status, two of times, then the
/// request's header lines, a blank line, the response's.
pub fn cache_control(data: &[u8]) {
    let [s0, s1, t0, t1, rest @ ..] = data else {
        return;
    };
    let status =
        StatusCode::from_u16(100 + u16::from_be_bytes([*s0, *s1]) % 500).unwrap_or(StatusCode::OK);
    let (request, response) = two_parts(rest);
    let (request, response) = (header_lines(request), header_lines(response));
    // Times around a fixed instant, as a node would see them: the response
    // arrives after the request, and is used later still.
    let base = UNIX_EPOCH + Duration::from_secs(1_780_000_000);
    let request_time = base;
    let response_time = base + Duration::from_secs(u64::from(*t0));
    let now = response_time + Duration::from_secs(u64::from(*t1) * 97);

    let cc = policy::response_directives(&response);
    let lifetime = policy::freshness_lifetime_received(status, &response, &cc, response_time);
    assert!(lifetime <= LONGEST_LIFETIME, "lifetime {lifetime:?}");
    if let Some(targeted) = targeted::targeted_directives(&response) {
        assert!(
            targeted.targeted && cc.targeted,
            "a targeted field decides whole"
        );
    }

    if policy::storable(&Method::GET, &request, status, &response).is_ok() {
        let req = policy::parse_cache_control(&request, http::header::CACHE_CONTROL);
        assert!(!req.no_store, "stored against the request's no-store");
        assert!(!cc.private, "a private response stored in a shared cache");
        assert!(
            !cc.no_store || cc.must_understand,
            "stored against no-store"
        );
        assert!(
            policy::vary_names(&response).is_some(),
            "stored with Vary: *"
        );
        assert!(
            policy::storable_for_anyone(&Method::GET, status, &response),
            "storable for this request but not for anyone"
        );
    }
    assert!(policy::storable(&Method::POST, &request, status, &response).is_err());

    let received = Received {
        request_time,
        response_time,
    };
    let age = policy::current_age(&response, received, now);
    // Never younger than the time it spent here.
    assert!(age >= now.duration_since(response_time).unwrap_or_default());
    let reuse = policy::usability(&request, &cc, lifetime, age);
    if reuse == Use::Fresh {
        assert!(age < lifetime, "fresh at age {age:?} of {lifetime:?}");
    }
    if cc.no_cache {
        assert_eq!(reuse, Use::Revalidate, "no-cache served without asking");
    }
    if (cc.must_revalidate || cc.proxy_revalidate) && age >= lifetime {
        assert_eq!(reuse, Use::Revalidate, "stale served past must-revalidate");
        assert!(!policy::stale_if_error_allows(&request, &cc, lifetime, age));
    }
    let _ = policy::not_modified(&request, &response);
    let _ = policy::freshened_headers(&response, &request);
}

/// `Vary` normalisation and the cache key. Input: the request's header
/// lines, a blank line, the `Vary` names and five key parts (`\n`
/// separated: tenant, app, scheme, host, target).
pub fn vary_and_key(data: &[u8]) {
    let (request, rest) = two_parts(data);
    let request = header_lines(request);
    let (vary_line, parts) = match rest.iter().position(|b| *b == b'\n') {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (rest, &[][..]),
    };
    let mut response = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_bytes(vary_line) {
        response.insert(http::header::VARY, value);
    }
    if let Some(names) = policy::vary_names(&response) {
        for name in names {
            let canonical = vary::normalized(&request, &name);
            assert!(
                vary::matches(&request, &name, canonical.as_ref()),
                "a request does not match its own variant of {name}"
            );
            let Ok(header) = HeaderName::from_bytes(name.as_bytes()) else {
                continue;
            };
            let preference_list =
                header == http::header::ACCEPT_ENCODING || header == http::header::ACCEPT_LANGUAGE;
            // Spellings meaning the same share the variant: whitespace
            // around separators, and case in the q-weighted lists.
            let mut respelled = HeaderMap::new();
            for value in request.get_all(&header) {
                let Ok(text) = value.to_str() else {
                    continue;
                };
                let mut text = text.replace(',', " , ");
                if preference_list {
                    text = text.replace(';', " ; ").to_ascii_uppercase();
                }
                if let Ok(value) = HeaderValue::from_str(&text) {
                    respelled.append(header.clone(), value);
                }
            }
            if respelled.get_all(&header).iter().count() == request.get_all(&header).iter().count()
            {
                assert_eq!(
                    vary::normalized(&respelled, &name),
                    canonical,
                    "a respelling of {name} is a variant of its own"
                );
            }
            // Outside the q-weighted lists (whose key drops the weights,
            // so it is no request spelling of its own) the canonical
            // value is a fixed point: a client that sends it shares it.
            if let (false, Some(value)) = (preference_list, &canonical) {
                let mut again = HeaderMap::new();
                again.insert(header, value.clone());
                assert_eq!(
                    vary::normalized(&again, &name).as_ref(),
                    Some(value),
                    "normalising {name} twice changes it"
                );
            }
        }
    }

    // Key parts never hold NUL (validated names, a parsed host and
    // target); what the key is built from comes back out of it.
    let text = String::from_utf8_lossy(parts).replace('\0', "");
    let mut fields = text.split('\n');
    let mut next = || fields.next().unwrap_or_default();
    let (tenant, app, scheme, host, target) = (next(), next(), next(), next(), next());
    let key = CacheKey::new(tenant, app, scheme, host, target);
    assert_eq!(key.resource(), Some((scheme, host, target)));
    assert!(key.is_app(tenant, app));
    assert_eq!(key.app_id(), CacheKey::app_id_of(tenant, app));
    let other_tenant = format!("{tenant}x");
    assert!(!key.is_app(&other_tenant, app), "a key crossed tenants");
    assert_ne!(key, CacheKey::new(&other_tenant, app, scheme, host, target));
}

/// Host patterns, the routing table and the request's host. Input: pattern
/// lines (`pattern prefix`), a blank line, then the `Host` header value, a
/// newline, and the request target.
pub fn router(data: &[u8]) {
    let (table, request) = two_parts(data);
    let table = String::from_utf8_lossy(table);
    let mut entries: Vec<(Vec<HostPattern>, String, usize)> = Vec::new();
    for (i, line) in table.lines().take(32).enumerate() {
        let mut words = line.split(' ');
        let pattern = words.next().unwrap_or_default();
        let prefix = words.next().unwrap_or("/");
        if let Ok(pattern) = HostPattern::try_from(pattern.to_string()) {
            entries.push((vec![pattern], prefix.to_string(), i));
        }
    }
    let router = crate::router::Router::new(
        entries
            .iter()
            .map(|(hosts, prefix, i)| (hosts.as_slice(), prefix.as_str(), *i)),
    );
    let (host, target) = match request.iter().position(|b| *b == b'\n') {
        Some(at) => (&request[..at], &request[at + 1..]),
        None => (request, &b"/"[..]),
    };
    let mut builder = Request::builder().uri(target);
    if let Ok(host) = HeaderValue::from_bytes(host) {
        builder = builder.header(http::header::HOST, host);
    }
    let Ok(request) = builder.body(()) else {
        return;
    };
    let Ok(host) = crate::router::request_host(&request) else {
        return;
    };
    // A name lowercase without port or trailing dot, or an IPv6 literal
    // in its one spelling.
    match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(literal) => assert_eq!(
            literal
                .parse::<std::net::Ipv6Addr>()
                .map(|a| a.to_string())
                .as_deref(),
            Ok(literal),
            "request_host left {host:?} unnormalised"
        ),
        None => assert!(
            !host.ends_with('.') && !host.bytes().any(|b| b.is_ascii_uppercase() || b == b':'),
            "request_host left {host:?} unnormalised"
        ),
    }
    let path = request.uri().path();
    if let Ok(&i) = router.route(&host, path) {
        let (hosts, prefix, _) = entries
            .iter()
            .find(|(_, _, index)| *index == i)
            .expect("routed to an entry the table holds");
        assert!(
            hosts.iter().any(|p| p.matches(&host)),
            "{host} routed to an entry for {hosts:?}"
        );
        let prefix = crate::config::normalize_prefix(prefix);
        assert!(
            prefix == "/"
                || (path.starts_with(&prefix)
                    && matches!(path.as_bytes().get(prefix.len()), None | Some(b'/'))),
            "{path} routed under prefix {prefix}"
        );
        // An exact name is never beaten by a wildcard or the catch-all.
        if let Some((_, _, exact)) = entries.iter().find(|(hosts, prefix, _)| {
            matches!(&hosts[0], HostPattern::Exact(name) if *name == host)
                && crate::config::normalize_prefix(prefix) == "/"
        }) {
            let chosen = &entries
                .iter()
                .find(|(_, _, index)| *index == i)
                .expect("entry")
                .0[0];
            assert!(
                matches!(chosen, HostPattern::Exact(_)),
                "{host} has an exact route ({exact}) but went to {chosen:?}"
            );
        }
    }
}

/// The node's configuration file: parsed, then validated.
pub fn node_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = crate::config::NodeConfig::from_toml(text) {
        let _ = config.validate();
    }
}

/// An admin purge body, applied to a cache holding two tenants' entries:
/// whatever it says, the other tenant's entries stay, and what it purged
/// never hits again.
pub fn purge_body(data: &[u8]) {
    let Ok(purge) = AdminPurge::from_json(data) else {
        return;
    };
    if let PurgeTarget::Url { url } = &purge.request.target
        && let Some(parsed) = UrlPurge::parse(url)
        && let Ok(uri) = url.parse::<http::Uri>()
        && let (Some(scheme), Some(host)) = (uri.scheme_str(), uri.host())
    {
        assert!(
            parsed.matches(scheme, &host.to_ascii_lowercase(), parsed.target()),
            "{url} does not match the key it names"
        );
    }
    let cache = EdgeCache::new(&Default::default(), None);
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=600"),
    );
    let tag = match &purge.request.target {
        PurgeTarget::Key { key } => HeaderValue::from_str(key).ok(),
        _ => None,
    };
    if let Some(tag) = tag {
        headers.insert("surrogate-key", tag);
    }
    let target = match &purge.request.target {
        PurgeTarget::Url { url } => UrlPurge::parse(url)
            .map(|u| u.target().to_string())
            .unwrap_or_else(|| "/".into()),
        _ => "/".into(),
    };
    let other = if purge.tenant == "other" {
        "another"
    } else {
        "other"
    };
    let mine = CacheKey::new(&purge.tenant, &purge.app, "https", "h.test", &target);
    let theirs = CacheKey::new(other, &purge.app, "https", "h.test", &target);
    for key in [&mine, &theirs] {
        let entry = Entry::new(
            StatusCode::OK,
            headers.clone(),
            bytes::Bytes::from_static(b"x"),
            Received {
                request_time: SystemTime::now(),
                response_time: SystemTime::now(),
            },
            &HeaderMap::new(),
        );
        cache.store.insert(key.clone(), entry);
    }
    let purged = cache.purge(
        &purge.tenant,
        &purge.app,
        &purge.request.target,
        purge.request.soft,
    );
    assert!(purged <= 1, "one entry of this tenant, {purged} purged");
    assert!(
        cache.store.get(&theirs, &HeaderMap::new()).is_some(),
        "a purge by {} reached another tenant",
        purge.tenant
    );
    if purged == 1 && !purge.request.soft {
        assert!(
            cache.store.get(&mine, &HeaderMap::new()).is_none(),
            "a purged entry still hits"
        );
    }
}

/// One runtime for every HTTP/1 input: building a multi-thread runtime
/// per input would be most of each run.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}

/// A dispatcher without apps (every request it accepts ends in a refusal
/// after the checks every request goes through), built once.
fn dispatcher() -> &'static Arc<crate::dispatch::Dispatcher> {
    static DISPATCHER: OnceLock<Arc<crate::dispatch::Dispatcher>> = OnceLock::new();
    DISPATCHER.get_or_init(|| {
        let metrics =
            crate::metrics::Metrics::new(prometheus::Registry::new()).expect("node metrics");
        let outbound = Arc::new(crate::outbound::OutboundClient::new(
            Default::default(),
            metrics.outbound_requests.clone(),
        ));
        let settings = crate::config::RuntimeConfig {
            instance_slots: 4,
            ..Default::default()
        };
        let runtime = Arc::new(
            crate::runtime::Runtime::new(&settings, &Default::default(), outbound)
                .expect("a runtime"),
        );
        let table = crate::dispatch::RoutingTable::new(std::iter::empty::<(
            &[HostPattern],
            &str,
            crate::dispatch::Target,
        )>());
        Arc::new(
            crate::dispatch::Dispatcher::new(
                runtime,
                table,
                metrics,
                &crate::config::HttpConfig::default(),
            )
            .with_cache(Some(Arc::new(EdgeCache::new(&Default::default(), None)))),
        )
    })
}

/// What the node may answer a request it has no app for, or refuses.
fn deliberate(status: u16) -> bool {
    matches!(
        status,
        400 | 404 | 405 | 408 | 411 | 413 | 414 | 417 | 421 | 426 | 431 | 501 | 505
    )
}

/// The bytes a client sends, served by hyper with the node's listener
/// settings and the node's dispatcher, over an in-memory connection. Every
/// answer must be a deliberate refusal (no app serves anything here, so
/// any 2xx, or any 5xx but 501 and 505, is a bug), and the node must
/// finish with the connection once the client has sent everything.
pub fn http1_head(data: &[u8]) {
    let config = crate::config::HttpConfig::default();
    let builder = crate::listener::http_builder(&config);
    let dispatcher = dispatcher().clone();
    let output = runtime().block_on(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let conn = Arc::new(crate::client::ClientConn::new(
            wasmtime_wasi_http::p2::bindings::http::types::Scheme::Http,
            "127.0.0.1:9".parse().expect("an address"),
            &[],
            None,
        ));
        let serve = async move {
            let service = hyper::service::service_fn(move |request| {
                let dispatcher = dispatcher.clone();
                let conn = conn.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(
                        dispatcher.dispatch_from(request, &conn).await,
                    )
                }
            });
            let _ = builder
                .serve_connection(hyper_util::rt::TokioIo::new(server), service)
                .await;
        };
        let talk = async move {
            let _ = client.write_all(data).await;
            let _ = client.shutdown().await;
            let mut out = Vec::new();
            let _ = client.read_to_end(&mut out).await;
            out
        };
        // The client has said all it will (EOF): the node must be done
        // with the connection well within its own timeouts.
        let (served, out) =
            tokio::join!(tokio::time::timeout(Duration::from_secs(30), serve), talk);
        assert!(served.is_ok(), "the connection outlived the client's EOF");
        out
    });
    // The HTTP/2 preface switches the connection to HTTP/2 (hyper-util's
    // auto builder): what comes back is frames, checked by the h2 attack
    // corpus rather than here.
    if data.starts_with(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") {
        return;
    }
    let mut rest = &output[..];
    while !rest.is_empty() {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(rest) {
            Ok(httparse::Status::Complete(head)) => {
                let status = response.code.unwrap_or_default();
                assert!(deliberate(status), "answered {status}: {output:?}");
                let length = response
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok()?.parse::<usize>().ok());
                let Some(length) = length else {
                    // Chunked or close-delimited: the last response.
                    break;
                };
                rest = rest.get(head + length..).unwrap_or_default();
            }
            other => panic!("the node wrote an unparsable response ({other:?}): {output:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    //! The committed seed corpora (`common/fuzz/corpus/<target>/`) through
    //! each entry point: the invariants hold for them on stable too.

    use std::path::Path;

    fn each_seed(target: &str, run: fn(&[u8])) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../common/fuzz/corpus")
            .join(target);
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).expect("the seed corpus") {
            let bytes = std::fs::read(entry.expect("a seed").path()).expect("a seed");
            run(&bytes);
            seen += 1;
        }
        assert!(seen >= 3, "{target}: only {seen} seeds");
    }

    #[test]
    fn cache_control_seeds() {
        each_seed("cache_control", super::cache_control);
    }

    #[test]
    fn vary_and_key_seeds() {
        each_seed("vary_and_key", super::vary_and_key);
    }

    #[test]
    fn router_seeds() {
        each_seed("router", super::router);
    }

    #[test]
    fn node_config_seeds() {
        each_seed("node_config", super::node_config);
    }

    #[test]
    fn purge_body_seeds() {
        each_seed("purge_body", super::purge_body);
    }

    #[test]
    fn http1_head_seeds() {
        each_seed("http1_head", super::http1_head);
    }
}
