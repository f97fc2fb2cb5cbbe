//! Property tests of the cache as a whole (proptest): generated origin
//! responses and client requests go through [`EdgeCache::serve`] with a
//! scripted backend, and four rules must hold for every one of them:
//!
//! - stored ⇒ storable: nothing is kept that RFC 9111 §3 (with the
//!   targeted fields of RFC 9213) says a shared cache must not keep;
//! - fresh ⇒ age < lifetime: a hit served as fresh is younger than its
//!   freshness lifetime (and than the request's `max-age`);
//! - a purged key never hits: after a hard purge that selects it, the next
//!   request goes to the origin;
//! - variants never cross tenants: two tenants' apps with the same name,
//!   host and URL each only ever get their own origin's body, whatever
//!   `Vary` and the request headers say.
//!
//! Generated responses mix valid and broken directives (quoted strings with
//! escapes, out-of-range numbers, junk), every targeted field, dates in
//! every form, `Age`, `Vary` and surrogate keys; requests mix the client's
//! own cache directives, `Authorization` and the headers `Vary` names. In a
//! run of 1,024 cases about a third are stored and a tenth answered fresh
//! from the cache (`the_harness_stores_hits_and_purges` keeps the harness
//! honest).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use edge_common::sync::PurgeTarget;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use proptest::prelude::*;

use super::layer::EdgeCache;
use super::policy;
use super::result::CacheResult;
use super::serve::CacheBackend;
use super::store::CacheKey;
use crate::body::{ResponseBody, full_body};

/// An origin that answers every request with one scripted response.
#[derive(Clone)]
struct Scripted {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    calls: Arc<AtomicUsize>,
}

impl CacheBackend for Scripted {
    type Error = Infallible;
    type Detached = Scripted;

    async fn send(
        &self,
        _request: Request<ResponseBody>,
    ) -> Result<Response<ResponseBody>, Infallible> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mut response = Response::new(full_body(self.body.clone()));
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers.clone();
        Ok(response)
    }

    fn record(&self, _result: CacheResult, _collapsed: bool) {}

    fn detach(&self) -> Scripted {
        self.clone()
    }
}

/// One exchange through the cache, its body read to the end (which is when
/// a miss is stored).
async fn exchange(
    cache: &Arc<EdgeCache>,
    key: &CacheKey,
    request: &HeaderMap,
    origin: &Scripted,
) -> (StatusCode, HeaderMap, Bytes, CacheResult) {
    let mut req = Request::new(());
    *req.uri_mut() = "https://shop.test/page?x=1".parse().expect("a test URI");
    *req.headers_mut() = request.clone();
    let (response, result) = match cache.serve(key.clone(), req, origin).await {
        Ok(answer) => answer,
        Err(_) => {
            return (
                StatusCode::GATEWAY_TIMEOUT,
                HeaderMap::new(),
                Bytes::new(),
                CacheResult::Miss,
            );
        }
    };
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    (parts.status, parts.headers, body, result)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a test runtime")
}

fn key(tenant: &str) -> CacheKey {
    CacheKey::new(tenant, "shop", "https", "shop.test", "/page?x=1")
}

/// Directives an origin may send, valid and not, for `Cache-Control` and
/// the targeted fields.
fn directive() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => (0u32..400).prop_map(|n| format!("max-age={n}")),
        3 => (0u32..400).prop_map(|n| format!("s-maxage={n}")),
        3 => Just("public".to_string()),
        1 => (0u32..400).prop_map(|n| format!("stale-while-revalidate={n}")),
        1 => (0u32..400).prop_map(|n| format!("stale-if-error={n}")),
        1 => Just("no-store".to_string()),
        1 => Just("no-cache".to_string()),
        1 => Just("private".to_string()),
        1 => Just("must-revalidate".to_string()),
        1 => Just("proxy-revalidate".to_string()),
        1 => Just("immutable".to_string()),
        1 => Just("must-understand".to_string()),
        1 => Just("no-transform".to_string()),
        1 => Just("max-age=\"60\"".to_string()),
        1 => Just("max-age=-1".to_string()),
        1 => Just("max-age=99999999999999999999".to_string()),
        1 => Just("foo=\"a\\\"b, no-store\"".to_string()),
        1 => Just("private=\"set-cookie\"".to_string()),
        1 => "[a-z=,\" ]{0,12}",
    ]
}

fn directives() -> impl Strategy<Value = String> {
    prop::collection::vec(directive(), 0..3).prop_map(|d| d.join(", "))
}

fn http_date(offset_secs: i64) -> String {
    let at = if offset_secs >= 0 {
        SystemTime::now() + Duration::from_secs(offset_secs as u64)
    } else {
        SystemTime::now() - Duration::from_secs(offset_secs.unsigned_abs())
    };
    httpdate::fmt_http_date(at)
}

/// An origin's response: a status and a mix of the fields caching reads.
fn origin_response() -> impl Strategy<Value = (StatusCode, HeaderMap)> {
    let status = prop::sample::select(vec![
        200u16, 203, 204, 206, 300, 301, 302, 404, 405, 410, 500, 503,
    ]);
    (
        status,
        prop::option::weighted(0.8, directives()),
        prop::option::weighted(0.2, directives()),
        prop::option::weighted(0.1, directives()),
        prop::option::of(prop_oneof![
            (-5000i64..5000).prop_map(http_date),
            Just("0".to_string()),
            Just("Sun, 06 Nov 1994 08:49:37 GMT".to_string()),
            Just("sunday, 06-nov-94 08:49:37 gmt".to_string()),
            Just("garbage".to_string()),
        ]),
        prop::option::of(prop_oneof![
            (0u32..600).prop_map(|n| n.to_string()),
            Just("old, 0".to_string()),
            Just("-1".to_string()),
        ]),
        prop::option::of((-90_000i64..0).prop_map(http_date)),
        prop::option::of(prop::sample::select(vec![
            "Accept-Encoding",
            "accept-language, Accept-Encoding",
            "X-Variant",
            "*",
            "",
        ])),
        prop::option::of(prop::sample::select(vec!["tag-a", "tag-a tag-b", "tag-b"])),
    )
        .prop_map(
            |(status, cc, cdn, edge, expires, age, last_modified, vary, tags)| {
                let mut headers = HeaderMap::new();
                let mut put = |name: &'static str, value: Option<String>| {
                    if let Some(value) = value
                        && let Ok(value) = value.parse()
                    {
                        headers.append(name, value);
                    }
                };
                put("cache-control", cc);
                put("cdn-cache-control", cdn);
                put("edge-cache-control", edge);
                put("expires", expires);
                put("age", age);
                put("last-modified", last_modified);
                put("vary", vary.map(str::to_string));
                put("surrogate-key", tags.map(str::to_string));
                put("date", Some(http_date(0)));
                (
                    StatusCode::from_u16(status).expect("a listed status"),
                    headers,
                )
            },
        )
}

/// A client's request headers.
fn client_request() -> impl Strategy<Value = HeaderMap> {
    (
        prop::option::weighted(
            0.3,
            prop::sample::select(vec![
                "no-cache",
                "no-store",
                "max-age=0",
                "max-age=30",
                "max-stale",
                "max-stale=60",
                "min-fresh=30",
                "only-if-cached",
            ]),
        ),
        prop::option::of(prop::sample::select(vec![
            "gzip", "br, gzip", "GZIP ,br", "identity",
        ])),
        prop::option::of(prop::sample::select(vec!["en", "fr-CH, fr;q=0.9", "EN"])),
        prop::option::of(prop::sample::select(vec!["a", "b"])),
        prop::bool::weighted(0.15),
    )
        .prop_map(|(cc, encoding, language, variant, authorization)| {
            let mut headers = HeaderMap::new();
            let mut put = |name: &'static str, value: Option<&str>| {
                if let Some(value) = value {
                    headers.insert(name, value.parse().expect("a listed value"));
                }
            };
            put("cache-control", cc);
            put("accept-encoding", encoding);
            put("accept-language", language);
            put("x-variant", variant);
            if authorization {
                headers.insert(header::AUTHORIZATION, "Bearer t".parse().expect("a value"));
            }
            headers
        })
}

fn origin(status: StatusCode, headers: HeaderMap, body: &'static str) -> Scripted {
    Scripted {
        status,
        headers,
        body: Bytes::from_static(body.as_bytes()),
        calls: Arc::new(AtomicUsize::new(0)),
    }
}

fn cache() -> Arc<EdgeCache> {
    Arc::new(EdgeCache::new(&Default::default(), None))
}

/// The seconds in an `Age` the cache sent.
fn age_of(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::AGE)?.to_str().ok()?.parse().ok()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, .. ProptestConfig::default() })]

    #[test]
    fn stored_implies_storable_and_fresh_implies_younger_than_its_lifetime(
        (status, response) in origin_response(),
        first in client_request(),
        second in client_request(),
    ) {
        let rt = runtime();
        let cache = cache();
        let origin = origin(status, response.clone(), "body");
        let key = key("t");
        rt.block_on(exchange(&cache, &key, &first, &origin));
        if let Some(entry) = cache.store.get(&key, &first) {
            let storable = policy::storable(&Method::GET, &first, status, &response);
            prop_assert!(
                storable.is_ok() || entry.is_partial(),
                "stored although {storable:?}: {status} {response:?} for {first:?}"
            );
        }
        let calls = origin.calls.load(Ordering::SeqCst);
        let (_, headers, _, result) = rt.block_on(exchange(&cache, &key, &second, &origin));
        let asked_again = origin.calls.load(Ordering::SeqCst) > calls;
        let request_cc = policy::parse_cache_control(&second, header::CACHE_CONTROL);
        if result == CacheResult::Hit && !asked_again && request_cc.max_stale.is_none() {
            let directives = policy::response_directives(&response);
            let lifetime = policy::freshness_lifetime_with(status, &response, &directives);
            let age = Duration::from_secs(age_of(&headers).unwrap_or(0));
            prop_assert!(age < lifetime, "a fresh hit aged {age:?} outlived {lifetime:?}: {response:?}");
            if let Some(max_age) = request_cc.max_age {
                prop_assert!(
                    age < max_age || directives.immutable,
                    "a hit aged {age:?} answered max-age={max_age:?}"
                );
            }
        }
    }

    #[test]
    fn a_hard_purge_that_selects_a_key_leaves_nothing_to_hit(
        (status, response) in origin_response(),
        request in client_request(),
        target in prop::sample::select(vec![0u8, 1, 2, 3, 4]),
    ) {
        let rt = runtime();
        let cache = cache();
        let origin = origin(status, response.clone(), "body");
        let key = key("t");
        rt.block_on(exchange(&cache, &key, &request, &origin));
        let tagged = |tag: &str| {
            response
                .get("surrogate-key")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|tags| tags.split(' ').any(|t| t == tag))
        };
        let (target, selects) = match target {
            0 => (PurgeTarget::All, true),
            1 => (PurgeTarget::Url { url: "/page?x=1".into() }, true),
            2 => (PurgeTarget::Url { url: "https://shop.test/page?x=1".into() }, true),
            3 => (PurgeTarget::Key { key: "tag-a".into() }, tagged("tag-a")),
            _ => (PurgeTarget::Url { url: "/page?x=2".into() }, false),
        };
        cache.purge("t", "shop", &target, false);
        if selects {
            prop_assert!(cache.store.get(&key, &request).is_none(), "{target:?} left the entry");
            let calls = origin.calls.load(Ordering::SeqCst);
            let (_, _, _, result) = rt.block_on(exchange(&cache, &key, &request, &origin));
            let only_if_cached = policy::parse_cache_control(&request, header::CACHE_CONTROL).only_if_cached;
            prop_assert!(
                !matches!(result, CacheResult::Hit | CacheResult::Stale),
                "{result:?} after {target:?}"
            );
            prop_assert!(
                only_if_cached || origin.calls.load(Ordering::SeqCst) > calls,
                "the origin was not asked after {target:?}"
            );
        }
    }

    #[test]
    fn tenants_only_ever_get_their_own_responses(
        (status, response) in origin_response(),
        requests in prop::collection::vec((any::<bool>(), client_request()), 1..12),
    ) {
        let rt = runtime();
        let cache = cache();
        let ours = origin(status, response.clone(), "ours");
        let theirs = origin(status, response, "theirs");
        for (mine, request) in requests {
            let (tenant, origin, body) = if mine { ("t", &ours, "ours") } else { ("u", &theirs, "theirs") };
            let (status, _, got, result) = rt.block_on(exchange(&cache, &key(tenant), &request, origin));
            if status == StatusCode::GATEWAY_TIMEOUT || got.is_empty() {
                continue; // only-if-cached with nothing stored, or a bodiless status
            }
            prop_assert_eq!(&got[..], body.as_bytes(), "tenant {} ({:?})", tenant, result);
        }
    }
}

/// The helpers above do store and hit: without this, every property could
/// hold because nothing was ever stored.
#[test]
fn the_harness_stores_hits_and_purges() {
    let rt = runtime();
    let cache = cache();
    let mut headers = HeaderMap::new();
    headers.insert("cache-control", "max-age=60".parse().expect("a value"));
    headers.insert("surrogate-key", "tag-a".parse().expect("a value"));
    let origin = origin(StatusCode::OK, headers, "body");
    let (_, _, body, result) = rt.block_on(exchange(&cache, &key("t"), &HeaderMap::new(), &origin));
    assert_eq!((&body[..], result), (&b"body"[..], CacheResult::Miss));
    let (_, headers, body, result) =
        rt.block_on(exchange(&cache, &key("t"), &HeaderMap::new(), &origin));
    assert_eq!((&body[..], result), (&b"body"[..], CacheResult::Hit));
    assert!(age_of(&headers).is_some());
    assert_eq!(origin.calls.load(Ordering::SeqCst), 1);
    // Another tenant's key is another entry.
    let (_, _, _, result) = rt.block_on(exchange(&cache, &key("u"), &HeaderMap::new(), &origin));
    assert_eq!(result, CacheResult::Miss);
    cache.purge(
        "t",
        "shop",
        &PurgeTarget::Key {
            key: "tag-a".into(),
        },
        false,
    );
    let (_, _, _, result) = rt.block_on(exchange(&cache, &key("t"), &HeaderMap::new(), &origin));
    assert_eq!(result, CacheResult::Miss);
    assert_eq!(origin.calls.load(Ordering::SeqCst), 3);
}
