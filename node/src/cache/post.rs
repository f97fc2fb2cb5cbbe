//! RFC 9111 §4 and §4.4: a POST's response that says, with
//! `Content-Location`, that it *is* the representation of the request's
//! own URL, and carries explicit freshness, may answer later GETs of that
//! URL. The invalidation every successful unsafe method causes removes
//! the old GET answer first; this one then takes its place, stored as it
//! streams to the client ([`super::layer::EdgeCache::store_post_answer`]).

use http::{HeaderMap, Method, StatusCode, header};

use super::policy;

/// The path and query a same-origin `Location` / `Content-Location`
/// value names: an absolute path, or an absolute URL with this scheme and
/// host (`scheme` may be a fetch key's `fetch+http`, `host` may carry a
/// port). `None` for another origin or something that is not a URL.
pub fn same_origin_target(scheme: &str, host: &str, value: &str) -> Option<String> {
    if value.starts_with('/') && !value.starts_with("//") {
        return value
            .parse::<http::uri::PathAndQuery>()
            .ok()
            .map(|p| p.as_str().to_string());
    }
    let url_scheme = scheme.strip_prefix("fetch+").unwrap_or(scheme);
    value
        .parse::<http::Uri>()
        .ok()
        .filter(|u| {
            u.scheme_str() == Some(url_scheme)
                && (u.host() == Some(host) || u.authority().is_some_and(|a| a.as_str() == host))
        })
        .and_then(|u| u.path_and_query().map(|p| p.to_string()))
}

/// Whether the answer to a POST of `target` (on `scheme`://`host`) may be
/// stored as the GET answer for `target`: its `Content-Location` names
/// exactly that URL, it has explicit freshness (`s-maxage`, `max-age` or
/// `Expires`, never the Last-Modified heuristic), and a GET's answer with
/// the same fields would be storable; 200 and 203 only.
pub fn answers_later_gets(
    (scheme, host, target): (&str, &str, &str),
    request: &HeaderMap,
    status: StatusCode,
    response: &HeaderMap,
) -> bool {
    let Some(location) = response
        .get(header::CONTENT_LOCATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    if same_origin_target(scheme, host, location.trim()).as_deref() != Some(target) {
        return false;
    }
    // RFC 9110 §8.7: only then is the content the target's representation.
    if !matches!(
        status,
        StatusCode::OK | StatusCode::NON_AUTHORITATIVE_INFORMATION
    ) {
        return false;
    }
    let cc = policy::response_directives(response);
    let explicit = cc.s_maxage.is_some()
        || cc.max_age.is_some()
        || (!cc.targeted && response.contains_key(header::EXPIRES));
    explicit
        && policy::storable(&Method::GET, request, status, response).is_ok()
        && !policy::freshness_lifetime(status, response).is_zero()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::cache::test_support::headers;

    const AT: (&str, &str, &str) = ("https", "x.test", "/items/1?v=2");

    fn reusable(pairs: &[(&str, &str)]) -> bool {
        answers_later_gets(AT, &HeaderMap::new(), StatusCode::OK, &headers(pairs))
    }

    #[test]
    fn only_its_own_url_with_explicit_freshness() {
        let now = httpdate::fmt_http_date(std::time::SystemTime::now());
        let later = httpdate::fmt_http_date(
            std::time::SystemTime::now() + std::time::Duration::from_secs(600),
        );
        for fresh in [
            vec![("cache-control", "max-age=60")],
            vec![("cache-control", "s-maxage=60")],
            vec![("cdn-cache-control", "max-age=60")],
            vec![("date", now.as_str()), ("expires", later.as_str())],
        ] {
            let mut pairs = fresh.clone();
            pairs.push(("content-location", "/items/1?v=2"));
            assert!(reusable(&pairs), "{fresh:?}");
            let mut absolute = fresh.clone();
            absolute.push(("content-location", "https://x.test/items/1?v=2"));
            assert!(reusable(&absolute), "{fresh:?}");
        }
        for location in [
            "/items/1",
            "/items/2?v=2",
            "https://other.test/items/1?v=2",
            "http://x.test/items/1?v=2",
            "//x.test/items/1?v=2",
            "items/1?v=2",
            "not a url",
        ] {
            assert!(
                !reusable(&[
                    ("cache-control", "max-age=60"),
                    ("content-location", location)
                ]),
                "{location}"
            );
        }
        // No Content-Location, no explicit freshness, or not storable.
        assert!(!reusable(&[("cache-control", "max-age=60")]));
        for unusable in [
            vec![("last-modified", "Sun, 06 Nov 1994 08:49:37 GMT")],
            vec![("cache-control", "max-age=0")],
            vec![("cache-control", "no-store, max-age=60")],
            vec![("cache-control", "private, max-age=60")],
            vec![("cache-control", "max-age=60"), ("vary", "*")],
            vec![("date", now.as_str()), ("expires", "soon")],
        ] {
            let mut pairs = unusable.clone();
            pairs.push(("content-location", "/items/1?v=2"));
            assert!(!reusable(&pairs), "{unusable:?}");
        }
        // Not for a 201 (its rules are not a GET's) or a request's no-store.
        let pairs = headers(&[
            ("cache-control", "max-age=60"),
            ("content-location", "/items/1?v=2"),
        ]);
        assert!(!answers_later_gets(
            AT,
            &HeaderMap::new(),
            StatusCode::CREATED,
            &pairs
        ));
        assert!(!answers_later_gets(
            AT,
            &headers(&[("cache-control", "no-store")]),
            StatusCode::OK,
            &pairs
        ));
        // A fetch key's scheme and a host with its port.
        assert_eq!(
            same_origin_target(
                "fetch+http",
                "origin.test:8080",
                "http://origin.test:8080/a"
            ),
            Some("/a".into())
        );
    }
}
