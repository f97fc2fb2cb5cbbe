//! RFC 9111 shared-cache rules, as pure functions over header maps and
//! times: what may be stored, how long it stays fresh, how old it is, and
//! whether a stored response may answer a given request. No I/O here: the
//! cache store and the request path call into this.
//!
//! `Surrogate-Control` (the edge's own directives, RFC-less but de facto:
//! Fastly, Akamai, Varnish) overrides `Cache-Control` for this cache, and
//! the RFC 9213 targeted fields ([`super::targeted`]) override both.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, Method, StatusCode, header};

pub use super::directives::CacheControl;

/// Parses every `name` field of `headers` (comma lists, case-insensitive
/// directives, quoted values). An invalid delta-seconds value is treated
/// as the directive's most conservative reading (RFC 9111 §1.2.2: 0 for
/// `max-age`), so a malformed header never extends freshness.
pub fn parse_cache_control(headers: &HeaderMap, name: impl header::AsHeaderName) -> CacheControl {
    let mut cc = CacheControl::default();
    for value in headers.get_all(name) {
        let Ok(value) = value.to_str() else {
            continue;
        };
        for directive in split_directives(value) {
            let (key, arg) = match directive.split_once('=') {
                Some((k, v)) => (k.trim(), Some(v.trim().trim_matches('"'))),
                None => (directive.trim(), None),
            };
            let seconds = || arg.map(delta_seconds).unwrap_or(Some(Duration::ZERO));
            match key.to_ascii_lowercase().as_str() {
                "no-store" => cc.no_store = true,
                "no-cache" => cc.no_cache = true,
                "private" => cc.private = true,
                "public" => cc.public = true,
                "must-revalidate" => cc.must_revalidate = true,
                "proxy-revalidate" => cc.proxy_revalidate = true,
                "only-if-cached" => cc.only_if_cached = true,
                "immutable" => cc.immutable = true,
                "must-understand" => cc.must_understand = true,
                // Duplicates: the most conservative (smallest) wins.
                "max-age" => cc.max_age = min_opt(cc.max_age, seconds().or(Some(Duration::ZERO))),
                "s-maxage" => {
                    cc.s_maxage = min_opt(cc.s_maxage, seconds().or(Some(Duration::ZERO)))
                }
                "stale-while-revalidate" => {
                    cc.stale_while_revalidate = min_opt(cc.stale_while_revalidate, seconds())
                }
                "stale-if-error" => cc.stale_if_error = min_opt(cc.stale_if_error, seconds()),
                "min-fresh" => cc.min_fresh = seconds(),
                "max-stale" => cc.max_stale = Some(arg.and_then(delta_seconds)),
                _ => {}
            }
        }
    }
    cc
}

fn min_opt(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Splits at commas outside quoted strings. Inside one, a backslash
/// escapes the next character (RFC 9110 §5.6.4's quoted-pair), so
/// `foo="a\"b", no-store` is two directives, not one.
fn split_directives(value: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in value.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&value[start..]);
    parts.into_iter().filter(|p| !p.trim().is_empty()).collect()
}

/// delta-seconds: digits only; values past 2^31 are capped there (RFC 9111
/// §1.2.2).
fn delta_seconds(s: &str) -> Option<Duration> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs = s.parse::<u64>().unwrap_or(u64::MAX).min(1 << 31);
    Some(Duration::from_secs(secs))
}

/// The longest lifetime any field can give: delta-seconds' 2^31 cap, also
/// applied to `Expires - Date`, so a year-6674 Expires (the cache_control
/// fuzz target's find) lives no longer than `max-age=99999999999`.
const LONGEST_LIFETIME: Duration = Duration::from_secs(1 << 31);

fn http_date(headers: &HeaderMap, name: header::HeaderName) -> Option<SystemTime> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_lenient_date)
}

/// An HTTP-date in any of its three forms (IMF-fixdate, the obsolete RFC
/// 850 and asctime forms, which RFC 9110 §5.6.7 asks recipients to
/// accept; `httpdate` reads all three), also with the day, month and zone
/// names in the wrong case, as real origins send them (`sun, 06 NOV 1994
/// 08:49:37 gmt`). `httpdate` wants the exact case, so the names are put
/// in it first.
fn parse_lenient_date(value: &str) -> Option<SystemTime> {
    let value = value.trim();
    if let Ok(time) = httpdate::parse_http_date(value) {
        return Some(time);
    }
    // Only ASCII can be a date; the longest form (RFC 850 with
    // "Wednesday") is 33 bytes.
    if !value.is_ascii() || value.len() > 40 {
        return None;
    }
    let mut canonical = String::with_capacity(value.len());
    let mut word_start = true;
    for c in value.chars() {
        if c.is_ascii_alphabetic() {
            canonical.push(if word_start {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            });
            word_start = false;
        } else {
            canonical.push(c);
            word_start = true;
        }
    }
    let canonical = match canonical.strip_suffix("Gmt") {
        Some(head) => format!("{head}GMT"),
        None => canonical,
    };
    httpdate::parse_http_date(&canonical).ok()
}

/// Status codes a cache may store without explicit freshness (RFC 9110
/// §15.1 "heuristically cacheable").
pub fn heuristically_cacheable(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 206 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// The response's directives for this cache, the most specific field
/// whole: `Edge-Cache-Control`, then `CDN-Cache-Control` (RFC 9213, if
/// valid), then `Surrogate-Control`, else `Cache-Control`.
pub fn response_directives(headers: &HeaderMap) -> CacheControl {
    if let Some(targeted) = super::targeted::targeted_directives(headers) {
        targeted
    } else if headers.contains_key(SURROGATE_CONTROL) {
        let mut sc = parse_cache_control(headers, SURROGATE_CONTROL);
        // Surrogate-Control speaks to this cache only: `max-age` there is
        // this cache's lifetime, like s-maxage.
        if let Some(age) = sc.max_age {
            sc.s_maxage = Some(age);
        }
        sc
    } else {
        parse_cache_control(headers, header::CACHE_CONTROL)
    }
}

/// Why a response is not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotStorable {
    Method,
    Status,
    NoStore,
    Private,
    Authorization,
    VaryStar,
    NoFreshnessInformation,
    PartialContent,
    /// `must-understand` with a status this cache has no rules for.
    MustUnderstand,
}

/// RFC 9111 §5.2.2.3: the statuses whose caching rules this cache
/// implements (the heuristically cacheable ones; 304s are merged into
/// stored responses, never stored themselves).
pub fn understood_status(status: StatusCode) -> bool {
    heuristically_cacheable(status)
}

/// RFC 9111 §3: may a shared cache store this response to this request?
pub fn storable(
    method: &Method,
    request: &HeaderMap,
    status: StatusCode,
    response: &HeaderMap,
) -> Result<(), NotStorable> {
    if method != Method::GET {
        return Err(NotStorable::Method);
    }
    // 206 would need range-merging; 1xx/304 are not complete responses.
    if status == StatusCode::PARTIAL_CONTENT {
        return Err(NotStorable::PartialContent);
    }
    if status.is_informational() || status == StatusCode::NOT_MODIFIED {
        return Err(NotStorable::Status);
    }
    let req_cc = parse_cache_control(request, header::CACHE_CONTROL);
    let cc = response_directives(response);
    // must-understand: only statuses whose rules this cache implements,
    // and for those the origin's `no-store` is what older caches obey.
    if cc.must_understand && !understood_status(status) {
        return Err(NotStorable::MustUnderstand);
    }
    if req_cc.no_store || (cc.no_store && !cc.must_understand) {
        return Err(NotStorable::NoStore);
    }
    if cc.private {
        return Err(NotStorable::Private);
    }
    if request.contains_key(header::AUTHORIZATION)
        && !(cc.public || cc.s_maxage.is_some() || cc.must_revalidate)
    {
        return Err(NotStorable::Authorization);
    }
    if vary_names(response).is_none() {
        return Err(NotStorable::VaryStar);
    }
    // RFC 9111 §3: explicit freshness, `public`, or a heuristically
    // cacheable status (whose lifetime may still be 0: stored to revalidate).
    let explicit = cc.s_maxage.is_some()
        || cc.max_age.is_some()
        || (!cc.targeted && response.contains_key(header::EXPIRES))
        || cc.public;
    if !(explicit || heuristically_cacheable(status)) {
        return Err(NotStorable::NoFreshnessInformation);
    }
    Ok(())
}

/// The lowercase header names in `Vary`, or `None` for `Vary: *` (never
/// matches a later request).
pub fn vary_names(response: &HeaderMap) -> Option<Vec<String>> {
    let mut names = Vec::new();
    for value in response.get_all(header::VARY) {
        let value = value.to_str().unwrap_or("*");
        for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if name == "*" {
                return None;
            }
            names.push(name.to_ascii_lowercase());
        }
    }
    names.sort();
    names.dedup();
    Some(names)
}

/// Longest heuristic lifetime (10% of the time since Last-Modified, at most
/// this), as most caches do.
pub const MAX_HEURISTIC_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// RFC 9111 §4.2.1: how long the response is fresh, for a shared cache.
pub fn freshness_lifetime(status: StatusCode, response: &HeaderMap) -> Duration {
    freshness_lifetime_with(status, response, &response_directives(response))
}

/// [`freshness_lifetime`] with the response's directives already parsed.
pub fn freshness_lifetime_with(
    status: StatusCode,
    response: &HeaderMap,
    cc: &CacheControl,
) -> Duration {
    freshness_lifetime_received(status, response, cc, SystemTime::now())
}

/// [`freshness_lifetime_with`] for a response received at `received`: a
/// missing or invalid `Date` is read as that time (RFC 9110 §6.6.1), for
/// `Expires - Date` and the Last-Modified heuristic alike. An invalid
/// `Age` makes the response stale from the start (RFC 9111 §5.1).
pub fn freshness_lifetime_received(
    status: StatusCode,
    response: &HeaderMap,
    cc: &CacheControl,
    received: SystemTime,
) -> Duration {
    if age_value(response).is_err() {
        return Duration::ZERO;
    }
    if let Some(s) = cc.s_maxage {
        return s;
    }
    if let Some(m) = cc.max_age {
        return m;
    }
    let date = http_date(response, header::DATE).unwrap_or(received);
    // A targeted field replaces Expires too (RFC 9213 §2.2).
    if !cc.targeted && response.contains_key(header::EXPIRES) {
        // An invalid Expires means "already expired".
        return match http_date(response, header::EXPIRES) {
            Some(expires) => expires
                .duration_since(date)
                .unwrap_or_default()
                .min(LONGEST_LIFETIME),
            None => Duration::ZERO,
        };
    }
    if heuristically_cacheable(status)
        && let Some(modified) = http_date(response, header::LAST_MODIFIED)
    {
        return (date.duration_since(modified).unwrap_or_default() / 10)
            .min(MAX_HEURISTIC_LIFETIME);
    }
    Duration::ZERO
}

/// What the cache knew when it stored a response (RFC 9111 §4.2.3).
#[derive(Debug, Clone, Copy)]
pub struct Received {
    /// When the request that produced it was sent.
    pub request_time: SystemTime,
    /// When the response arrived.
    pub response_time: SystemTime,
}

/// RFC 9111 §4.2.3: the response's current age.
pub fn current_age(response: &HeaderMap, received: Received, now: SystemTime) -> Duration {
    // An invalid Age counts as 0 here; it already made the lifetime 0.
    let age_value = age_value(response).unwrap_or_default();
    let date_value = http_date(response, header::DATE).unwrap_or(received.response_time);
    let apparent_age = received
        .response_time
        .duration_since(date_value)
        .unwrap_or_default();
    let response_delay = received
        .response_time
        .duration_since(received.request_time)
        .unwrap_or_default();
    let corrected_age_value = age_value + response_delay;
    let corrected_initial_age = apparent_age.max(corrected_age_value);
    let resident_time = now
        .duration_since(received.response_time)
        .unwrap_or_default();
    corrected_initial_age + resident_time
}

/// An `Age` that is not delta-seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidAge;

/// RFC 9111 §5.1: the `Age` field's value (0 when absent). A list
/// (`5, 0`, or several field lines) uses its first member; if that is not
/// delta-seconds (`old`, `-1`, `1.5`, empty) the value is invalid.
pub fn age_value(response: &HeaderMap) -> Result<Duration, InvalidAge> {
    let Some(value) = response.get(header::AGE) else {
        return Ok(Duration::ZERO);
    };
    let first = value
        .to_str()
        .map_err(|_| InvalidAge)?
        .split(',')
        .next()
        .unwrap_or_default()
        .trim();
    delta_seconds(first).ok_or(InvalidAge)
}

/// How a stored response may be used for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// Fresh enough: serve it.
    Fresh,
    /// Stale, but within `stale-while-revalidate`: serve it and refresh in
    /// the background.
    StaleWhileRevalidate,
    /// Stale and allowed by the request's `max-stale`: serve it.
    StaleAllowed,
    /// Must be validated with the origin first (conditional request).
    Revalidate,
}

/// RFC 9111 §4 and RFC 5861: may a stored response (`age` old, fresh for
/// `lifetime`, with directives `res` — [`response_directives`], parsed once
/// when it was stored) answer a request with these headers?
pub fn usability(
    request: &HeaderMap,
    res: &CacheControl,
    lifetime: Duration,
    age: Duration,
) -> Use {
    let req = parse_cache_control(request, header::CACHE_CONTROL);
    let pragma_no_cache = !request.contains_key(header::CACHE_CONTROL)
        && request.get_all(header::PRAGMA).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.to_ascii_lowercase().contains("no-cache"))
        });
    if res.no_cache {
        return Use::Revalidate;
    }
    // RFC 8246: a fresh immutable response answers a reload (the
    // client's `no-cache` or `max-age=0`) without asking the origin.
    if res.immutable && age < lifetime {
        return Use::Fresh;
    }
    if req.no_cache || pragma_no_cache {
        return Use::Revalidate;
    }
    // The request may ask for a younger response.
    let mut lifetime = lifetime;
    if let Some(max_age) = req.max_age {
        lifetime = lifetime.min(max_age);
    }
    let needed = age + req.min_fresh.unwrap_or_default();
    if needed < lifetime {
        return Use::Fresh;
    }
    let staleness = age.saturating_sub(lifetime);
    // must-revalidate and proxy-revalidate forbid serving stale without
    // validation, whatever anyone asks. `s-maxage` implies
    // proxy-revalidate (RFC 9111 §5.2.2.10) against the *client's*
    // `max-stale`; the origin's own RFC 5861 windows are an explicit
    // permission from the same origin, so they still apply next to
    // `s-maxage` (`s-maxage=1, stale-while-revalidate=59` serves stale).
    // `stale_if_error_allows` follows the same rule.
    if res.must_revalidate || res.proxy_revalidate {
        return Use::Revalidate;
    }
    if res.s_maxage.is_none()
        && let Some(max_stale) = req.max_stale
        && max_stale.is_none_or(|limit| staleness <= limit)
    {
        return Use::StaleAllowed;
    }
    if res
        .stale_while_revalidate
        .is_some_and(|window| staleness <= window)
    {
        return Use::StaleWhileRevalidate;
    }
    Use::Revalidate
}

/// RFC 5861: may a stale response be served because the origin failed?
pub fn stale_if_error_allows(
    request: &HeaderMap,
    res: &CacheControl,
    lifetime: Duration,
    age: Duration,
) -> bool {
    if res.must_revalidate || res.proxy_revalidate || res.no_cache {
        return false;
    }
    let staleness = age.saturating_sub(lifetime);
    let window = parse_cache_control(request, header::CACHE_CONTROL)
        .stale_if_error
        .or(res.stale_if_error);
    window.is_some_and(|w| staleness <= w)
}

/// The response header a CDN's owner uses to speak to this cache alone
/// (consumed here, never sent on to the client).
pub const SURROGATE_CONTROL: header::HeaderName =
    header::HeaderName::from_static("surrogate-control");

/// Whether the response may be stored at all, whoever asked: what a
/// resource says about itself, without the request's directives.
pub fn storable_for_anyone(method: &Method, status: StatusCode, headers: &HeaderMap) -> bool {
    storable(method, &HeaderMap::new(), status, headers).is_ok()
}

/// Most uncacheable answers say nothing about caching at all: no parsing
/// is needed to know they are not stored.
pub fn says_nothing_about_caching(headers: &HeaderMap) -> bool {
    [
        header::CACHE_CONTROL,
        SURROGATE_CONTROL,
        header::EXPIRES,
        header::LAST_MODIFIED,
        header::ETAG,
    ]
    .iter()
    .all(|name| !headers.contains_key(name))
        && !super::targeted::any_present(headers)
}

/// Whether storing helps at all: a response that is stale at once and has
/// no validator could never be used again (`no-cache` and `max-age=0`
/// responses with an ETag or Last-Modified are stored to be revalidated).
pub fn worth_storing(status: StatusCode, headers: &HeaderMap) -> bool {
    headers.contains_key(header::ETAG)
        || headers.contains_key(header::LAST_MODIFIED)
        || !freshness_lifetime(status, headers).is_zero()
}

/// Whether a stored response answers the client's conditional request with
/// a 304 (RFC 9110 §13.2.2): `If-None-Match` (weak comparison) wins over
/// `If-Modified-Since`.
pub fn not_modified(request: &HeaderMap, stored: &HeaderMap) -> bool {
    if let Some(inm) = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
    {
        let Some(etag) = stored.get(header::ETAG).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        if inm.trim() == "*" {
            return true;
        }
        let Some(stored_tag) = entity_tags(etag).into_iter().next() else {
            return false;
        };
        // Weak comparison: the opaque tags, whatever `W/` says.
        return entity_tags(inm).into_iter().any(|t| t == stored_tag);
    }
    // The stored date is parsed only for a request that asks (most do not).
    let Some(since) = http_date(request, header::IF_MODIFIED_SINCE) else {
        return false;
    };
    http_date(stored, header::LAST_MODIFIED).is_some_and(|modified| modified <= since)
}

/// The opaque tags (with their quotes, without `W/`) of a list of
/// entity-tags (RFC 9110 §8.8.3). A tag's quoted part may hold commas, so
/// the list is read tag by tag rather than split at commas; reading stops
/// at the first thing that is not an entity-tag.
fn entity_tags(list: &str) -> Vec<&str> {
    let mut tags = Vec::new();
    let mut rest = list;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            return tags;
        }
        rest = rest.strip_prefix("W/").unwrap_or(rest);
        let Some(open) = rest.strip_prefix('"') else {
            return tags;
        };
        let Some(end) = open.find('"') else {
            return tags;
        };
        // The quotes included: `"a"` and `a"` (malformed) never compare equal.
        tags.push(&rest[..end + 2]);
        rest = &open[end + 1..];
    }
}

/// RFC 9111 §4.3.4: the header fields of a stored response once a 304
/// confirmed it. The 304's fields replace the stored ones, except those
/// that frame the stored body; the stored `Date` and `Age` go unless the
/// 304 has its own, or the refreshed response would be stale again at once.
pub fn freshened_headers(stored: &HeaderMap, not_modified: &HeaderMap) -> HeaderMap {
    let mut headers = stored.clone();
    for name in not_modified.keys() {
        if *name == header::CONTENT_LENGTH
            || *name == header::TRANSFER_ENCODING
            || *name == header::CONNECTION
        {
            continue;
        }
        headers.remove(name);
        for value in not_modified.get_all(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    for name in [header::DATE, header::AGE] {
        if !not_modified.contains_key(&name) {
            headers.remove(name);
        }
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::cache::test_support::headers;

    /// The stored response's directives are parsed when it is stored.
    fn usability_of(
        request: &HeaderMap,
        stored: &HeaderMap,
        lifetime: Duration,
        age: Duration,
    ) -> Use {
        usability(request, &response_directives(stored), lifetime, age)
    }

    fn stale_if_error_of(
        request: &HeaderMap,
        stored: &HeaderMap,
        lifetime: Duration,
        age: Duration,
    ) -> bool {
        stale_if_error_allows(request, &response_directives(stored), lifetime, age)
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn cache_control_is_parsed_leniently_and_conservatively() {
        let cc = parse_cache_control(
            &headers(&[
                ("cache-control", "Public, MAX-AGE=60, s-maxage=\"30\""),
                (
                    "cache-control",
                    "stale-while-revalidate=5, foo=\"a,b\", max-age=10",
                ),
            ]),
            "cache-control",
        );
        assert!(cc.public);
        assert_eq!(cc.max_age, Some(secs(10)), "duplicates: the smaller wins");
        assert_eq!(cc.s_maxage, Some(secs(30)));
        assert_eq!(cc.stale_while_revalidate, Some(secs(5)));
        let bad = parse_cache_control(
            &headers(&[("cache-control", "max-age=abc")]),
            "cache-control",
        );
        assert_eq!(
            bad.max_age,
            Some(Duration::ZERO),
            "invalid max-age means stale"
        );
        let huge = parse_cache_control(
            &headers(&[("cache-control", "max-age=99999999999999999999")]),
            "cache-control",
        );
        assert_eq!(huge.max_age, Some(secs(1 << 31)));
        let any_stale =
            parse_cache_control(&headers(&[("cache-control", "max-stale")]), "cache-control");
        assert_eq!(any_stale.max_stale, Some(None));
    }

    #[test]
    fn what_a_shared_cache_may_store() {
        let get = Method::GET;
        let none = HeaderMap::new();
        let ok = StatusCode::OK;
        assert_eq!(
            storable(
                &get,
                &none,
                ok,
                &headers(&[("cache-control", "max-age=60")])
            ),
            Ok(())
        );
        assert_eq!(
            storable(
                &Method::POST,
                &none,
                ok,
                &headers(&[("cache-control", "max-age=60")])
            ),
            Err(NotStorable::Method)
        );
        assert_eq!(
            storable(
                &get,
                &none,
                ok,
                &headers(&[("cache-control", "no-store, max-age=60")])
            ),
            Err(NotStorable::NoStore)
        );
        assert_eq!(
            storable(
                &get,
                &headers(&[("cache-control", "no-store")]),
                ok,
                &headers(&[("cache-control", "max-age=60")])
            ),
            Err(NotStorable::NoStore)
        );
        assert_eq!(
            storable(
                &get,
                &none,
                ok,
                &headers(&[("cache-control", "private, max-age=60")])
            ),
            Err(NotStorable::Private)
        );
        let auth = headers(&[("authorization", "Bearer x")]);
        assert_eq!(
            storable(
                &get,
                &auth,
                ok,
                &headers(&[("cache-control", "max-age=60")])
            ),
            Err(NotStorable::Authorization)
        );
        assert_eq!(
            storable(
                &get,
                &auth,
                ok,
                &headers(&[("cache-control", "s-maxage=60")])
            ),
            Ok(())
        );
        assert_eq!(
            storable(
                &get,
                &auth,
                ok,
                &headers(&[("cache-control", "public, max-age=60")])
            ),
            Ok(())
        );
        assert_eq!(
            storable(
                &get,
                &none,
                ok,
                &headers(&[("cache-control", "max-age=60"), ("vary", "*")])
            ),
            Err(NotStorable::VaryStar)
        );
        // Heuristically cacheable status without explicit freshness: storable
        // (its lifetime may still be 0).
        assert_eq!(storable(&get, &none, StatusCode::NOT_FOUND, &none), Ok(()));
        assert_eq!(
            storable(&get, &none, StatusCode::INTERNAL_SERVER_ERROR, &none),
            Err(NotStorable::NoFreshnessInformation)
        );
        assert_eq!(
            storable(
                &get,
                &none,
                StatusCode::INTERNAL_SERVER_ERROR,
                &headers(&[("cache-control", "max-age=5")])
            ),
            Ok(())
        );
        assert_eq!(
            storable(
                &get,
                &none,
                StatusCode::PARTIAL_CONTENT,
                &headers(&[("cache-control", "max-age=5")])
            ),
            Err(NotStorable::PartialContent)
        );
        // Surrogate-Control overrides Cache-Control for the edge.
        assert_eq!(
            storable(
                &get,
                &none,
                ok,
                &headers(&[
                    ("cache-control", "private"),
                    ("surrogate-control", "max-age=60")
                ])
            ),
            Ok(())
        );
    }

    #[test]
    fn freshness_prefers_s_maxage_then_max_age_then_expires() {
        let ok = StatusCode::OK;
        assert_eq!(
            freshness_lifetime(
                ok,
                &headers(&[("cache-control", "max-age=60, s-maxage=30")])
            ),
            secs(30)
        );
        assert_eq!(
            freshness_lifetime(
                ok,
                &headers(&[
                    ("cache-control", "max-age=60"),
                    ("expires", "Thu, 01 Jan 2099 00:00:00 GMT")
                ])
            ),
            secs(60)
        );
        assert_eq!(
            freshness_lifetime(
                ok,
                &headers(&[
                    ("date", "Sun, 06 Nov 1994 08:49:37 GMT"),
                    ("expires", "Sun, 06 Nov 1994 08:59:37 GMT"),
                ])
            ),
            secs(600)
        );
        assert_eq!(
            freshness_lifetime(
                ok,
                &headers(&[("expires", "0"), ("date", "Sun, 06 Nov 1994 08:49:37 GMT")])
            ),
            Duration::ZERO
        );
        // A far-future Expires is capped like delta-seconds (fuzz find).
        assert_eq!(
            freshness_lifetime(
                ok,
                &headers(&[
                    ("date", "Tue, 01 Dec 2026 11:00:00 GMT"),
                    ("expires", "Tue, 01 Dec 6674 11:00:00 GMT"),
                ])
            ),
            LONGEST_LIFETIME
        );
        // Heuristic: 10% of the time since Last-Modified, capped at a day.
        assert_eq!(
            freshness_lifetime(
                ok,
                &headers(&[
                    ("date", "Sun, 06 Nov 1994 08:49:37 GMT"),
                    ("last-modified", "Sun, 06 Nov 1994 07:49:37 GMT"),
                ])
            ),
            secs(360)
        );
        assert_eq!(
            freshness_lifetime(
                ok,
                &headers(&[
                    ("date", "Sun, 06 Nov 1994 08:49:37 GMT"),
                    ("last-modified", "Tue, 06 Nov 1984 08:49:37 GMT"),
                ])
            ),
            MAX_HEURISTIC_LIFETIME
        );
        // No heuristic for a status that is not heuristically cacheable.
        assert_eq!(
            freshness_lifetime(
                StatusCode::INTERNAL_SERVER_ERROR,
                &headers(&[
                    ("date", "Sun, 06 Nov 1994 08:49:37 GMT"),
                    ("last-modified", "Sun, 06 Nov 1994 07:49:37 GMT"),
                ])
            ),
            Duration::ZERO
        );
        // Surrogate-Control max-age is this cache's lifetime.
        assert_eq!(
            freshness_lifetime(
                ok,
                &headers(&[
                    ("cache-control", "max-age=5"),
                    ("surrogate-control", "max-age=300")
                ])
            ),
            secs(300)
        );
    }

    #[test]
    fn age_follows_rfc_9111_4_2_3() {
        let date = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        let received = Received {
            request_time: date,
            response_time: date + secs(2),
        };
        // Age header 10 + delay 2 beats apparent age 2; plus 5 s resident.
        let h = headers(&[("date", "Sun, 06 Nov 1994 08:49:37 GMT"), ("age", "10")]);
        assert_eq!(current_age(&h, received, date + secs(7)), secs(17));
        // No Age: apparent age (response arrived 2 s after its Date).
        let h = headers(&[("date", "Sun, 06 Nov 1994 08:49:37 GMT")]);
        assert_eq!(current_age(&h, received, date + secs(2)), secs(2));
        // A Date in the future does not make it younger than 0.
        let h = headers(&[("date", "Sun, 06 Nov 1994 09:49:37 GMT")]);
        assert_eq!(current_age(&h, received, date + secs(2)), secs(2));
    }

    #[test]
    fn request_directives_and_stale_rules() {
        let none = HeaderMap::new();
        let plain = headers(&[("cache-control", "max-age=60")]);
        assert_eq!(usability_of(&none, &plain, secs(60), secs(10)), Use::Fresh);
        assert_eq!(
            usability_of(&none, &plain, secs(60), secs(60)),
            Use::Revalidate
        );
        assert_eq!(
            usability_of(
                &headers(&[("cache-control", "no-cache")]),
                &plain,
                secs(60),
                secs(1)
            ),
            Use::Revalidate
        );
        assert_eq!(
            usability_of(
                &headers(&[("pragma", "no-cache")]),
                &plain,
                secs(60),
                secs(1)
            ),
            Use::Revalidate
        );
        assert_eq!(
            usability_of(
                &headers(&[("cache-control", "max-age=5")]),
                &plain,
                secs(60),
                secs(10)
            ),
            Use::Revalidate
        );
        assert_eq!(
            usability_of(
                &headers(&[("cache-control", "min-fresh=55")]),
                &plain,
                secs(60),
                secs(10)
            ),
            Use::Revalidate
        );
        assert_eq!(
            usability_of(
                &headers(&[("cache-control", "max-stale=30")]),
                &plain,
                secs(60),
                secs(80)
            ),
            Use::StaleAllowed
        );
        assert_eq!(
            usability_of(
                &headers(&[("cache-control", "max-stale=10")]),
                &plain,
                secs(60),
                secs(80)
            ),
            Use::Revalidate
        );
        assert_eq!(
            usability_of(
                &headers(&[("cache-control", "max-stale")]),
                &plain,
                secs(60),
                secs(8000)
            ),
            Use::StaleAllowed
        );
        let no_cache = headers(&[("cache-control", "no-cache, max-age=60")]);
        assert_eq!(
            usability_of(&none, &no_cache, secs(60), secs(1)),
            Use::Revalidate
        );
        let swr = headers(&[("cache-control", "max-age=60, stale-while-revalidate=30")]);
        assert_eq!(
            usability_of(&none, &swr, secs(60), secs(70)),
            Use::StaleWhileRevalidate
        );
        assert_eq!(
            usability_of(&none, &swr, secs(60), secs(100)),
            Use::Revalidate
        );
        let strict = headers(&[(
            "cache-control",
            "max-age=60, must-revalidate, stale-while-revalidate=30",
        )]);
        assert_eq!(
            usability_of(
                &headers(&[("cache-control", "max-stale")]),
                &strict,
                secs(60),
                secs(61)
            ),
            Use::Revalidate
        );
        // s-maxage implies proxy-revalidate against the client's
        // max-stale, but the origin's own stale-while-revalidate and
        // stale-if-error still apply next to it (issue 17: SWR was off and
        // SIE on, the two rules disagreed).
        let shared = headers(&[(
            "cache-control",
            "s-maxage=60, stale-while-revalidate=30, stale-if-error=100",
        )]);
        assert_eq!(
            usability_of(&none, &shared, secs(60), secs(61)),
            Use::StaleWhileRevalidate,
            "s-maxage=60, stale-while-revalidate=30 serves stale for 30 s"
        );
        assert_eq!(
            usability_of(&none, &shared, secs(60), secs(91)),
            Use::Revalidate
        );
        assert!(stale_if_error_of(&none, &shared, secs(60), secs(150)));
        assert_eq!(
            usability_of(
                &headers(&[("cache-control", "max-stale")]),
                &headers(&[("cache-control", "s-maxage=60")]),
                secs(60),
                secs(61)
            ),
            Use::Revalidate,
            "s-maxage implies proxy-revalidate: no max-stale"
        );
        let revalidate = headers(&[(
            "cache-control",
            "s-maxage=60, proxy-revalidate, stale-while-revalidate=30, stale-if-error=100",
        )]);
        assert_eq!(
            usability_of(&none, &revalidate, secs(60), secs(61)),
            Use::Revalidate
        );
        assert!(!stale_if_error_of(&none, &revalidate, secs(60), secs(61)));

        let sie = headers(&[("cache-control", "max-age=60, stale-if-error=100")]);
        assert!(stale_if_error_of(&none, &sie, secs(60), secs(150)));
        assert!(!stale_if_error_of(&none, &sie, secs(60), secs(170)));
        assert!(stale_if_error_of(
            &headers(&[("cache-control", "stale-if-error=500")]),
            &plain,
            secs(60),
            secs(500)
        ));
        assert!(!stale_if_error_of(&none, &plain, secs(60), secs(61)));
    }

    #[test]
    fn dates_in_every_form_and_case_are_read() {
        let expected = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        // What made the case fix necessary.
        assert!(httpdate::parse_http_date("sun, 06 nov 1994 08:49:37 gmt").is_err());
        for form in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "sun, 06 nov 1994 08:49:37 gmt",
            "SUN, 06 NOV 1994 08:49:37 GMT",
            "SUNDAY, 06-NOV-94 08:49:37 GMT",
            "sun nov  6 08:49:37 1994",
            "  Sun, 06 Nov 1994 08:49:37 GMT  ",
        ] {
            assert_eq!(parse_lenient_date(form), Some(expected), "{form}");
        }
        for bad in [
            "",
            "0",
            "-1",
            "tomorrow",
            "Sun, 06 Nov 1994 25:49:37 GMT",
            "Sün, 06 Nov 1994",
        ] {
            assert_eq!(parse_lenient_date(bad), None, "{bad}");
        }
        // A lower-case Expires is a lifetime, not "already expired".
        let h = headers(&[
            ("date", "sun, 06 nov 1994 08:49:37 gmt"),
            ("expires", "SUN, 06 NOV 1994 08:50:37 GMT"),
        ]);
        assert_eq!(freshness_lifetime(StatusCode::OK, &h), secs(60));
    }

    #[test]
    fn quoted_directive_values_keep_the_directives_after_them() {
        // Issue 17: `\"` inside a quoted value ended the quotes early, and
        // `no-store` after it was swallowed into one directive.
        let cc = parse_cache_control(
            &headers(&[("cache-control", r#"foo="a\"b, c", no-store, max-age=60"#)]),
            "cache-control",
        );
        assert!(cc.no_store);
        assert_eq!(cc.max_age, Some(secs(60)));
        assert_eq!(
            split_directives(r#"a="x\\", b, c="\"", d"#),
            vec![r#"a="x\\""#, " b", r#" c="\"""#, " d"]
        );
        // An unterminated quote runs to the end of the field value.
        assert_eq!(split_directives(r#"a="x, b"#), vec![r#"a="x, b"#]);
    }

    #[test]
    fn if_none_match_reads_entity_tags_that_hold_commas() {
        let stored = headers(&[("etag", r#""v1,2""#)]);
        let asks = |inm: &str| not_modified(&headers(&[("if-none-match", inm)]), &stored);
        assert!(asks(r#""v1,2""#));
        assert!(asks(r#"W/"v1,2""#), "weak comparison");
        assert!(asks(r#""other", "v1,2""#));
        assert!(asks(r#""a,b" ,W/"v1,2""#));
        assert!(!asks(r#""v1""#), "a part of the tag is not the tag");
        assert!(!asks(r#""2""#));
        assert!(!asks("v1,2"), "unquoted is not an entity-tag");
        assert!(asks("*"));
        assert_eq!(
            entity_tags(r#"W/"a", "b,c", junk, "d""#),
            vec![r#""a""#, r#""b,c""#]
        );
        let weak_stored = headers(&[("etag", r#"W/"x""#)]);
        assert!(not_modified(
            &headers(&[("if-none-match", r#""x""#)]),
            &weak_stored
        ));
    }

    #[test]
    fn vary_lists_names_and_star_never_matches() {
        assert_eq!(vary_names(&HeaderMap::new()), Some(vec![]));
        assert_eq!(
            vary_names(&headers(&[
                ("vary", "Accept-Encoding, accept-language"),
                ("vary", "Accept-Encoding")
            ])),
            Some(vec![
                "accept-encoding".to_string(),
                "accept-language".to_string()
            ])
        );
        assert_eq!(vary_names(&headers(&[("vary", "accept, *")])), None);
    }

    #[test]
    fn storable_for_anyone_ignores_the_requests_own_directives() {
        let ok = StatusCode::OK;
        let public = headers(&[("cache-control", "max-age=60")]);
        assert!(storable_for_anyone(&Method::GET, ok, &public));
        // A client's `no-store` or credentials keep its own answer out of
        // the cache, but say nothing about the resource.
        assert!(
            storable(
                &Method::GET,
                &headers(&[("cache-control", "no-store")]),
                ok,
                &public
            )
            .is_err()
        );
        assert!(
            storable(
                &Method::GET,
                &headers(&[("authorization", "Bearer x")]),
                ok,
                &public
            )
            .is_err()
        );
        // What the resource says of itself decides.
        for own in ["no-store", "private"] {
            let refused = headers(&[("cache-control", own)]);
            assert!(!storable_for_anyone(&Method::GET, ok, &refused), "{own}");
        }
        assert!(!storable_for_anyone(&Method::POST, ok, &public));
    }

    #[test]
    fn an_answer_with_no_caching_headers_says_nothing() {
        assert!(says_nothing_about_caching(&headers(&[
            ("content-type", "text/plain"),
            ("content-length", "5"),
        ])));
        for name in [
            "cache-control",
            "surrogate-control",
            "expires",
            "last-modified",
            "etag",
        ] {
            let value = match name {
                "expires" | "last-modified" => "Tue, 01 Dec 2026 00:00:00 GMT",
                "etag" => "\"v1\"",
                _ => "max-age=1",
            };
            assert!(
                !says_nothing_about_caching(&headers(&[(name, value)])),
                "{name}"
            );
        }
    }

    #[test]
    fn only_reusable_answers_are_worth_storing() {
        let ok = StatusCode::OK;
        assert!(worth_storing(
            ok,
            &headers(&[("cache-control", "max-age=60")])
        ));
        // Stale at once and nothing to revalidate with: never usable.
        assert!(!worth_storing(
            ok,
            &headers(&[("cache-control", "max-age=0")])
        ));
        assert!(!worth_storing(
            ok,
            &headers(&[("cache-control", "no-cache")])
        ));
        // Stale at once but revalidatable: a 304 later costs no body.
        assert!(worth_storing(
            ok,
            &headers(&[("cache-control", "no-cache"), ("etag", "\"a\"")])
        ));
        assert!(worth_storing(
            ok,
            &headers(&[
                ("cache-control", "max-age=0"),
                ("last-modified", "Tue, 01 Dec 2026 00:00:00 GMT"),
            ])
        ));
    }

    #[test]
    fn conditionals_follow_rfc_9110_13_2_2() {
        let stored = headers(&[
            ("etag", "W/\"v2\""),
            ("last-modified", "Tue, 01 Dec 2026 10:00:00 GMT"),
        ]);
        let asks = |pairs: &[(&str, &str)]| not_modified(&headers(pairs), &stored);
        // Weak comparison, lists and `*`.
        assert!(asks(&[("if-none-match", "\"v2\"")]));
        assert!(asks(&[("if-none-match", "\"v1\", W/\"v2\"")]));
        assert!(asks(&[("if-none-match", "*")]));
        assert!(!asks(&[("if-none-match", "\"v1\"")]));
        // If-Modified-Since: not modified at or after the stored date.
        assert!(asks(&[(
            "if-modified-since",
            "Tue, 01 Dec 2026 10:00:00 GMT"
        )]));
        assert!(asks(&[(
            "if-modified-since",
            "Wed, 02 Dec 2026 10:00:00 GMT"
        )]));
        assert!(!asks(&[(
            "if-modified-since",
            "Mon, 30 Nov 2026 10:00:00 GMT"
        )]));
        assert!(!asks(&[("if-modified-since", "not a date")]));
        // If-None-Match wins: a mismatch is modified whatever the date says.
        assert!(!asks(&[
            ("if-none-match", "\"v1\""),
            ("if-modified-since", "Wed, 02 Dec 2026 10:00:00 GMT"),
        ]));
        // No validator stored, nothing to match.
        assert!(!not_modified(
            &headers(&[("if-none-match", "*")]),
            &HeaderMap::new()
        ));
        assert!(!asks(&[]));
    }

    #[test]
    fn a_304_freshens_the_stored_fields_but_not_the_bodys_framing() {
        let stored = headers(&[
            ("content-length", "5"),
            ("content-type", "text/plain"),
            ("cache-control", "max-age=10"),
            ("etag", "\"v1\""),
            ("date", "Tue, 01 Dec 2026 10:00:00 GMT"),
            ("age", "7"),
            ("x-kept", "yes"),
            ("link", "</a>"),
            ("link", "</b>"),
        ]);
        let not_modified = headers(&[
            ("content-length", "0"),
            ("cache-control", "max-age=60"),
            ("link", "</c>"),
        ]);
        let merged = freshened_headers(&stored, &not_modified);
        assert_eq!(merged["content-length"], "5");
        assert_eq!(merged["content-type"], "text/plain");
        assert_eq!(merged["cache-control"], "max-age=60");
        assert_eq!(merged["etag"], "\"v1\"");
        assert_eq!(merged["x-kept"], "yes");
        let links: Vec<_> = merged.get_all("link").iter().collect();
        assert_eq!(links, ["</c>"]);
        // The old Date and Age would make it stale at once.
        assert!(!merged.contains_key("date") && !merged.contains_key("age"));
        let dated = headers(&[("date", "Tue, 01 Dec 2026 11:00:00 GMT")]);
        let merged = freshened_headers(&stored, &dated);
        assert_eq!(merged["date"], "Tue, 01 Dec 2026 11:00:00 GMT");
    }

    // Issue 17, policy rules: targeted fields, dates, Age, immutable,
    // must-understand.

    #[test]
    fn targeted_fields_win_over_surrogate_and_cache_control() {
        let ok = StatusCode::OK;
        // CDN-Cache-Control beats Cache-Control, Surrogate-Control and
        // Expires, both ways.
        let h = headers(&[
            ("cache-control", "no-store"),
            ("surrogate-control", "max-age=5"),
            ("cdn-cache-control", "max-age=600"),
            ("date", "Sun, 06 Nov 1994 08:49:37 GMT"),
            ("expires", "Sun, 06 Nov 1994 08:49:37 GMT"),
        ]);
        assert!(storable(&Method::GET, &HeaderMap::new(), ok, &h).is_ok());
        assert_eq!(freshness_lifetime(ok, &h), secs(600));
        let h = headers(&[
            ("cache-control", "max-age=600"),
            ("cdn-cache-control", "no-store"),
        ]);
        assert_eq!(
            storable(&Method::GET, &HeaderMap::new(), ok, &h),
            Err(NotStorable::NoStore)
        );
        let h = headers(&[
            ("cache-control", "max-age=600"),
            ("cdn-cache-control", "private"),
        ]);
        assert_eq!(
            storable(&Method::GET, &HeaderMap::new(), ok, &h),
            Err(NotStorable::Private)
        );
        // Edge-Cache-Control beats CDN-Cache-Control.
        let h = headers(&[
            ("edge-cache-control", "max-age=30"),
            ("cdn-cache-control", "no-store"),
        ]);
        assert_eq!(freshness_lifetime(ok, &h), secs(30));
        assert!(storable_for_anyone(&Method::GET, ok, &h));
        // An invalid targeted field is ignored: the next one decides.
        let h = headers(&[
            ("edge-cache-control", "max-age=\"30"),
            ("cdn-cache-control", "max-age=20"),
            ("cache-control", "max-age=10"),
        ]);
        assert_eq!(freshness_lifetime(ok, &h), secs(20));
        let h = headers(&[
            ("cdn-cache-control", "max-age=20 no-store"),
            ("surrogate-control", "max-age=15"),
            ("cache-control", "max-age=10"),
        ]);
        assert_eq!(freshness_lifetime(ok, &h), secs(15));
        let h = headers(&[
            ("cdn-cache-control", "no-store;"),
            ("cache-control", "max-age=10"),
        ]);
        assert_eq!(freshness_lifetime(ok, &h), secs(10));
        assert!(storable_for_anyone(&Method::GET, ok, &h));
        // Its max-age does not make an authorized answer shareable; its
        // s-maxage or public does.
        let auth = headers(&[("authorization", "Bearer x")]);
        let h = headers(&[("cdn-cache-control", "max-age=60")]);
        assert_eq!(
            storable(&Method::GET, &auth, ok, &h),
            Err(NotStorable::Authorization)
        );
        for shared in ["s-maxage=60", "public, max-age=60"] {
            let h = headers(&[("cdn-cache-control", shared)]);
            assert!(storable(&Method::GET, &auth, ok, &h).is_ok(), "{shared}");
        }
        // A targeted field alone speaks about caching.
        assert!(!says_nothing_about_caching(&headers(&[(
            "cdn-cache-control",
            "max-age=1"
        )])));
        // Its stale windows and no-cache rule usability.
        let swr = response_directives(&headers(&[
            ("cache-control", "max-age=60"),
            ("cdn-cache-control", "max-age=60, stale-while-revalidate=30"),
        ]));
        let none = HeaderMap::new();
        assert_eq!(
            usability(&none, &swr, secs(60), secs(70)),
            Use::StaleWhileRevalidate
        );
        let no_cache = response_directives(&headers(&[("cdn-cache-control", "no-cache")]));
        assert_eq!(
            usability(&none, &no_cache, secs(60), secs(1)),
            Use::Revalidate
        );
    }

    #[test]
    fn an_invalid_date_is_the_received_time() {
        let received = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        let ok = StatusCode::OK;
        let cc = CacheControl::default();
        for date in [
            None,
            Some("yesterday"),
            Some("Sun, 06 Nov 1994 25:00:00 GMT"),
        ] {
            let mut pairs = vec![("expires", "Sun, 06 Nov 1994 08:50:37 GMT")];
            pairs.extend(date.map(|d| ("date", d)));
            let h = headers(&pairs);
            assert_eq!(
                freshness_lifetime_received(ok, &h, &cc, received),
                secs(60),
                "{date:?}"
            );
            // The apparent age is 0 too.
            let at = Received {
                request_time: received,
                response_time: received,
            };
            assert_eq!(current_age(&h, at, received + secs(3)), secs(3), "{date:?}");
        }
        // An invalid Expires is already expired.
        for expires in ["0", "-1", "never", ""] {
            let h = headers(&[
                ("date", "Sun, 06 Nov 1994 08:49:37 GMT"),
                ("expires", expires),
            ]);
            assert_eq!(freshness_lifetime_received(ok, &h, &cc, received), secs(0));
            assert!(!worth_storing(ok, &h), "{expires}");
        }
        // Last-Modified in a wrong-case form still gives the heuristic,
        // and answers If-Modified-Since.
        let h = headers(&[
            ("date", "Sun, 16 Nov 1994 08:49:37 GMT"),
            ("last-modified", "sun, 06 nov 1994 08:49:37 gmt"),
        ]);
        assert_eq!(freshness_lifetime(ok, &h), secs(86400));
        assert!(not_modified(
            &headers(&[("if-modified-since", "Sun, 06 Nov 1994 08:49:37 GMT")]),
            &h
        ));
        // Without Date, the heuristic counts from the received time.
        let h = headers(&[("last-modified", "Sun, 06 Nov 1994 08:49:37 GMT")]);
        assert_eq!(
            freshness_lifetime_received(ok, &h, &cc, received + secs(100)),
            secs(10)
        );
    }

    #[test]
    fn age_uses_the_first_member_and_an_invalid_one_makes_it_stale() {
        let ok = StatusCode::OK;
        let age = |v: &str| age_value(&headers(&[("age", v)]));
        assert_eq!(age("5"), Ok(secs(5)));
        assert_eq!(age("5, 0"), Ok(secs(5)));
        assert_eq!(age(" 7 ,old"), Ok(secs(7)));
        assert_eq!(age_value(&HeaderMap::new()), Ok(secs(0)));
        assert_eq!(
            age_value(&headers(&[("age", "9"), ("age", "1")])),
            Ok(secs(9))
        );
        for bad in ["old, 0", "-1", "1.5", "", "0x10", "+3"] {
            assert_eq!(age(bad), Err(InvalidAge), "{bad}");
            let h = headers(&[("cache-control", "max-age=600"), ("age", bad)]);
            assert_eq!(freshness_lifetime(ok, &h), secs(0), "{bad}: stale");
            // Stored to be revalidated if it can be, not thrown away.
            let with_tag = headers(&[
                ("cache-control", "max-age=600"),
                ("age", bad),
                ("etag", "\"e\""),
            ]);
            assert!(storable_for_anyone(&Method::GET, ok, &with_tag), "{bad}");
            assert!(worth_storing(ok, &with_tag), "{bad}");
        }
        let now = SystemTime::now();
        let at = Received {
            request_time: now,
            response_time: now,
        };
        assert_eq!(current_age(&headers(&[("age", "5, 0")]), at, now), secs(5));
        assert_eq!(
            current_age(&headers(&[("age", "old, 0")]), at, now),
            secs(0)
        );
    }

    #[test]
    fn immutable_answers_a_reload_while_fresh() {
        let immutable =
            response_directives(&headers(&[("cache-control", "max-age=600, immutable")]));
        assert!(immutable.immutable);
        let reloads = [
            headers(&[("cache-control", "no-cache")]),
            headers(&[("cache-control", "max-age=0")]),
            headers(&[("pragma", "no-cache")]),
        ];
        for reload in &reloads {
            assert_eq!(
                usability(reload, &immutable, secs(600), secs(10)),
                Use::Fresh
            );
            // Once stale, it is revalidated like anything else.
            assert_eq!(
                usability(reload, &immutable, secs(600), secs(601)),
                Use::Revalidate
            );
        }
        // Without immutable, a reload revalidates.
        let plain = response_directives(&headers(&[("cache-control", "max-age=600")]));
        assert_eq!(
            usability(&reloads[0], &plain, secs(600), secs(10)),
            Use::Revalidate
        );
        assert_eq!(
            usability(&reloads[1], &plain, secs(600), secs(10)),
            Use::Revalidate
        );
        // The response's own no-cache still wins.
        let both = response_directives(&headers(&[("cache-control", "no-cache, immutable")]));
        assert_eq!(
            usability(&reloads[0], &both, secs(600), secs(1)),
            Use::Revalidate
        );
        // From a targeted field too.
        let targeted =
            response_directives(&headers(&[("cdn-cache-control", "max-age=60, immutable")]));
        assert_eq!(
            usability(&reloads[0], &targeted, secs(60), secs(1)),
            Use::Fresh
        );
    }

    #[test]
    fn must_understand_stores_understood_statuses_only() {
        let no_store = headers(&[("cache-control", "must-understand, no-store, max-age=60")]);
        for status in [200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501] {
            let status = StatusCode::from_u16(status).unwrap();
            assert!(
                storable_for_anyone(&Method::GET, status, &no_store),
                "{status}"
            );
        }
        for status in [201, 202, 302, 307, 400, 418, 500, 503, 599] {
            let status = StatusCode::from_u16(status).unwrap();
            assert_eq!(
                storable(&Method::GET, &HeaderMap::new(), status, &no_store),
                Err(NotStorable::MustUnderstand),
                "{status}"
            );
            // Even with no no-store at all.
            let plain = headers(&[("cache-control", "must-understand, max-age=60")]);
            assert!(
                !storable_for_anyone(&Method::GET, status, &plain),
                "{status}"
            );
        }
        // Without must-understand, no-store is no-store.
        assert_eq!(
            storable(
                &Method::GET,
                &HeaderMap::new(),
                StatusCode::OK,
                &headers(&[("cache-control", "no-store, max-age=60")])
            ),
            Err(NotStorable::NoStore)
        );
        // The request's own no-store still keeps it out.
        assert_eq!(
            storable(
                &Method::GET,
                &headers(&[("cache-control", "no-store")]),
                StatusCode::OK,
                &no_store
            ),
            Err(NotStorable::NoStore)
        );
        // private is not overridden.
        let private = headers(&[("cache-control", "must-understand, private, max-age=60")]);
        assert!(!storable_for_anyone(&Method::GET, StatusCode::OK, &private));
    }
}
