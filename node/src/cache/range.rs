//! Range requests (RFC 9110 §14) and the cache: reading `Range` and
//! `If-Range`, answering them from a stored response (206 with one range,
//! `multipart/byteranges` with several, 416 when none is satisfiable), and
//! keeping the 206 answers of ranges that missed as a partial entry
//! ([`Parts`]) that later ranges hit and complete.
//!
//! Abuse is bounded: at most [`MAX_RANGES`] ranges per request (past it
//! the `Range` is ignored and the whole response sent, which §14.2
//! allows), overlapping and adjacent ranges are coalesced, and a partial
//! entry holds at most [`super::parts::MAX_PARTS`] parts and weighs its
//! bytes like any entry.
//!
//! Ranges are cut from the identity of what is stored: anything that
//! encodes responses on the way out must leave a 206 alone.

use std::collections::VecDeque;
use std::ops::Range;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;

use super::parts::Parts;
use super::policy::{self, Received};
use super::store::{CacheKey, CacheStore, Entry};
use crate::body::{ResponseBody, full_body, refusal};

/// Ranges served per request. Each one is a part of a multipart answer;
/// thousands of tiny ranges would cost far more than the whole body.
pub const MAX_RANGES: usize = 16;

/// The `x-edge-error` code of a 416.
pub const UNSATISFIABLE_CODE: &str = "range-not-satisfiable";

/// One range of a `Range: bytes=` header (RFC 9110 §14.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spec {
    /// `first-last` or `first-` (to the end).
    From { first: u64, last: Option<u64> },
    /// `-n`: the last n bytes.
    Suffix(u64),
}

/// Why a `Range` is ignored (the whole response is the answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Ignored {
    #[error("the range unit is not bytes")]
    NotBytes,
    #[error("the range set is not valid")]
    Invalid,
    #[error("more than {MAX_RANGES} ranges")]
    TooMany,
}

/// Reads a `Range` value: the byte ranges it asks for, in its order.
pub fn parse(value: &str) -> Result<Vec<Spec>, Ignored> {
    let (unit, set) = value.split_once('=').ok_or(Ignored::Invalid)?;
    if !unit.eq_ignore_ascii_case("bytes") {
        return Err(Ignored::NotBytes);
    }
    let mut specs = Vec::new();
    // A list may hold empty elements (RFC 9110 §5.6.1): skipped.
    for element in set.split(',').map(|e| e.trim_matches([' ', '\t'])) {
        if element.is_empty() {
            continue;
        }
        if specs.len() == MAX_RANGES {
            return Err(Ignored::TooMany);
        }
        let (first, last) = element.split_once('-').ok_or(Ignored::Invalid)?;
        let spec = if first.is_empty() {
            Spec::Suffix(digits(last)?)
        } else {
            let first = digits(first)?;
            let last = match last {
                "" => None,
                last => Some(digits(last)?),
            };
            // §14.1.1: a last before the first makes the spec invalid.
            if last.is_some_and(|last| last < first) {
                return Err(Ignored::Invalid);
            }
            Spec::From { first, last }
        };
        specs.push(spec);
    }
    if specs.is_empty() {
        return Err(Ignored::Invalid);
    }
    Ok(specs)
}

/// A non-empty run of digits; values past `u64` are `u64::MAX` (still
/// valid syntax: a last position that large means "to the end").
fn digits(s: &str) -> Result<u64, Ignored> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Ignored::Invalid);
    }
    Ok(s.parse().unwrap_or(u64::MAX))
}

/// What a set of ranges selects from a representation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// No range starts inside it: 416.
    Unsatisfiable,
    /// The satisfiable ranges, sorted, overlapping and adjacent ones
    /// coalesced, none empty.
    Ranges(Vec<Range<u64>>),
}

/// Resolves `specs` against a representation of `total` bytes.
pub fn select(specs: &[Spec], total: u64) -> Selection {
    let mut ranges: Vec<Range<u64>> = specs
        .iter()
        .filter_map(|spec| match *spec {
            Spec::From { first, last } => (first < total)
                .then(|| first..last.map_or(total, |last| last.saturating_add(1).min(total))),
            Spec::Suffix(n) => (n > 0 && total > 0).then(|| total - n.min(total)..total),
        })
        .collect();
    if ranges.is_empty() {
        return Selection::Unsatisfiable;
    }
    ranges.sort_by_key(|r| r.start);
    let mut coalesced: Vec<Range<u64>> = Vec::with_capacity(ranges.len());
    for range in ranges {
        match coalesced.last_mut() {
            Some(last) if range.start <= last.end => last.end = last.end.max(range.end),
            _ => coalesced.push(range),
        }
    }
    Selection::Ranges(coalesced)
}

/// Whether a request that missed asks for ranges the cache can keep: a
/// GET with a `bytes` Range it would honour. (Anything else ignores its
/// `Range` and is a whole-response request.)
pub(super) fn wanted(method: &Method, request: &HeaderMap) -> bool {
    *method == Method::GET
        && request
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| parse(v).is_ok())
}

/// Whether a range request that missed is sent to the backend as a whole
/// miss instead (no `Range`, no `If-Range`; its 200 stored, in memory or
/// streamed to the disk tier), as nginx's `proxy_cache` does: a 206 over
/// `max_entry_bytes` is never kept, so a large object only ever fetched
/// by ranges (a `<video>` starts with `bytes=0-`) would go to the origin
/// every time. Fetched whole: a range open from 0 (it asks for the whole
/// anyway), and any range when a disk tier can hold the whole and
/// `nothing_stored` for the key (parts of it stay in memory, so their
/// path remains for the rest).
pub(super) fn fetch_whole(request: &HeaderMap, disk_tier: bool, nothing_stored: bool) -> bool {
    let Some(Ok(specs)) = request
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(parse)
    else {
        return false;
    };
    specs
        == [Spec::From {
            first: 0,
            last: None,
        }]
        || (disk_tier && nothing_stored)
}

/// The backend's 200 to a range request fetched whole ([`fetch_whole`]),
/// made the client's 206 when that is clean: the range asked for is the
/// whole of a body of known length (`bytes=0-`), so the bytes streamed
/// are the answer as they are. Any other range gets the 200, which RFC
/// 9110 §14.2 allows (a server may ignore `Range`); the next one hits.
pub(super) fn whole_as_range(request: &HeaderMap, response: &mut Response<ResponseBody>) {
    let Some(total) = crate::body::declared_length(response.headers()) else {
        return;
    };
    // An If-Range is judged against the stored response on later hits;
    // this one is answered whole.
    if response.status() != StatusCode::OK || request.contains_key(header::IF_RANGE) {
        return;
    }
    let Some(Ok(specs)) = request
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(parse)
    else {
        return;
    };
    let Selection::Ranges(ranges) = select(&specs, total) else {
        return;
    };
    if !matches!(ranges.as_slice(), [all] if *all == (0..total)) {
        return;
    }
    *response.status_mut() = StatusCode::PARTIAL_CONTENT;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_RANGE, content_range(&(0..total), total));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
}

/// `Last-Modified` if it is a strong validator (RFC 9110 §8.8.2.2): at
/// least a second before the response's `Date` (or, without one, before
/// `received_at`, when the cache got it).
fn strong_last_modified(headers: &HeaderMap, received_at: SystemTime) -> Option<SystemTime> {
    let date = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v.trim()).ok())
    };
    let modified = date(header::LAST_MODIFIED)?;
    let sent_at = date(header::DATE).unwrap_or(received_at);
    (modified + Duration::from_secs(1) <= sent_at).then_some(modified)
}

/// RFC 9110 §13.1.5: whether `If-Range` (if any) lets the range through:
/// a strong entity-tag equal to the stored strong `ETag`, or an HTTP-date
/// equal to a strong `Last-Modified` (one at least a second before the
/// response's `Date`, §8.8.2.2) of a response without an `ETag`.
/// Otherwise the whole response is sent.
fn if_range_allows(request: &HeaderMap, entry: &Entry) -> bool {
    let Some(value) = request.get(header::IF_RANGE) else {
        return true;
    };
    let Ok(value) = value.to_str().map(str::trim) else {
        return false;
    };
    let stored = |name| {
        entry
            .headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .map(str::trim)
    };
    if value.starts_with('"') || value.starts_with("W/") {
        // Weak tags never match in If-Range.
        return stored(header::ETAG).is_some_and(|etag| strong_tag(etag) && etag == value);
    }
    // §13.1.5: a client holding an ETag sends it, not a date. A date
    // beside a stored ETag comes from a representation that had none: a
    // compressed answer (whose Last-Modified the compressor drops when
    // there is no ETag, and whose ETag it weakens), never the identity
    // bytes a 206 is cut from.
    if stored(header::ETAG).is_some() {
        return false;
    }
    let Some(modified_at) = strong_last_modified(&entry.headers, entry.received.response_time)
    else {
        return false;
    };
    httpdate::parse_http_date(value).ok() == Some(modified_at)
}

/// An entity-tag that is strong and well-formed: `"opaque"`.
fn strong_tag(tag: &str) -> bool {
    tag.len() >= 2
        && tag.starts_with('"')
        && tag.ends_with('"')
        && !tag[1..tag.len() - 1].contains('"')
}

/// How a stored entry answers a request.
#[derive(Debug, PartialEq, Eq)]
enum Plan {
    /// The whole response: no (honoured) `Range`.
    Whole,
    /// 416.
    Unsatisfiable { total: u64 },
    /// 206 with these ranges.
    Ranges { total: u64, ranges: Vec<Range<u64>> },
}

fn plan(entry: &Entry, method: &Method, request: &HeaderMap) -> Plan {
    // Ranges apply to a 200's representation (RFC 9110 §14.2); a partial
    // entry holds part of one.
    let total = match &entry.parts {
        Some(parts) => parts.total(),
        None if entry.status == StatusCode::OK => entry.body.len(),
        None => return Plan::Whole,
    };
    // Only GET has range semantics (RFC 9110 §14.2): a HEAD's Range is
    // ignored, and it gets the 200's headers.
    if *method != Method::GET {
        return Plan::Whole;
    }
    let Some(value) = request.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Plan::Whole;
    };
    let Ok(specs) = parse(value) else {
        return Plan::Whole;
    };
    if !if_range_allows(request, entry) {
        return Plan::Whole;
    }
    match select(&specs, total) {
        Selection::Unsatisfiable => Plan::Unsatisfiable { total },
        Selection::Ranges(ranges) => Plan::Ranges { total, ranges },
    }
}

/// Whether `entry` can answer the request: a complete entry always can; a
/// partial one only a range request whose ranges it holds (or none of
/// which is satisfiable).
pub(super) fn answerable(entry: &Entry, method: &Method, request: &HeaderMap) -> bool {
    let Some(parts) = &entry.parts else {
        return true;
    };
    match plan(entry, method, request) {
        Plan::Whole => false,
        Plan::Unsatisfiable { .. } => true,
        Plan::Ranges { ranges, .. } => ranges.iter().all(|r| parts.covers(r)),
    }
}

/// The answer to a range request from a stored entry, or `None` for the
/// whole response; `headers` are the answer's (the stored ones, made
/// right for the client), and get `Accept-Ranges: bytes` for a 200.
pub(super) fn respond(
    entry: &Entry,
    method: &Method,
    request: &HeaderMap,
    headers: &mut HeaderMap,
) -> Option<Response<ResponseBody>> {
    // `Accept-Ranges: bytes` is in a whole entry's headers (`Entry::new`).
    let (total, ranges) = match plan(entry, method, request) {
        // The lookup only answers from a partial entry what it holds
        // (`answerable`); this is a bug, not the client's fault.
        Plan::Whole if entry.is_partial() => return Some(not_held()),
        Plan::Whole => return None,
        Plan::Unsatisfiable { total } => return Some(unsatisfiable(headers, total)),
        Plan::Ranges { total, ranges } => (total, ranges),
    };
    let mut headers = headers.clone();
    let body = if let [range] = ranges.as_slice() {
        headers.insert(header::CONTENT_RANGE, content_range(range, total));
        headers.insert(
            header::CONTENT_LENGTH,
            HeaderValue::from(range.end - range.start),
        );
        match read(entry, range) {
            Some(body) => body,
            None => return Some(not_held()),
        }
    } else {
        let boundary = boundary();
        let content_type = headers.get(header::CONTENT_TYPE).cloned();
        let mut pieces = Vec::with_capacity(ranges.len() * 2 + 1);
        let mut length = 0u64;
        for (i, range) in ranges.iter().enumerate() {
            let mut part_head = String::new();
            if i > 0 {
                part_head.push_str("\r\n");
            }
            part_head.push_str(&format!("--{boundary}\r\n"));
            if let Some(value) = content_type.as_ref().and_then(|v| v.to_str().ok()) {
                part_head.push_str(&format!("Content-Type: {value}\r\n"));
            }
            part_head.push_str(&format!(
                "Content-Range: bytes {}-{}/{total}\r\n\r\n",
                range.start,
                range.end - 1
            ));
            length += part_head.len() as u64 + (range.end - range.start);
            pieces.push(full_body(part_head));
            match read(entry, range) {
                Some(body) => pieces.push(body),
                None => return Some(not_held()),
            }
        }
        let tail = format!("\r\n--{boundary}--\r\n");
        length += tail.len() as u64;
        pieces.push(full_body(tail));
        headers.remove(header::CONTENT_RANGE);
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_str(&format!("multipart/byteranges; boundary={boundary}"))
                .unwrap_or_else(|_| HeaderValue::from_static("multipart/byteranges")),
        );
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
        Concat::new(pieces, length).boxed_unsync()
    };
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::PARTIAL_CONTENT;
    *response.headers_mut() = headers;
    Some(response)
}

/// The bytes of `range` of what `entry` holds, read through the stored
/// body (a disk tier reads only them).
fn read(entry: &Entry, range: &Range<u64>) -> Option<ResponseBody> {
    match &entry.parts {
        Some(parts) => parts.slice(range).map(full_body),
        None => Some(entry.body.range(range.clone())),
    }
}

fn content_range(range: &Range<u64>, total: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("bytes {}-{}/{total}", range.start, range.end - 1))
        .unwrap_or_else(|_| HeaderValue::from_static("bytes */0"))
}

/// 416, saying how long the representation is (RFC 9110 §15.5.17).
fn unsatisfiable(headers: &HeaderMap, total: u64) -> Response<ResponseBody> {
    let mut response = refusal(
        StatusCode::RANGE_NOT_SATISFIABLE,
        UNSATISFIABLE_CODE,
        &format!("no range in Range starts within the {total}-byte representation"),
    );
    let answer = response.headers_mut();
    // The cache's labels, Age and validators stay; what described the
    // stored body does not describe this one.
    for (name, value) in headers {
        let about_body = [
            header::CONTENT_TYPE,
            header::CONTENT_LENGTH,
            header::CONTENT_ENCODING,
            header::CACHE_CONTROL,
            header::EXPIRES,
        ]
        .contains(name);
        if !about_body {
            answer.append(name.clone(), value.clone());
        }
    }
    if let Ok(value) = HeaderValue::from_str(&format!("bytes */{total}")) {
        answer.insert(header::CONTENT_RANGE, value);
    }
    response
}

fn not_held() -> Response<ResponseBody> {
    refusal(
        StatusCode::INTERNAL_SERVER_ERROR,
        "cache-range-not-held",
        "the cache answered a range it does not hold",
    )
}

/// A multipart boundary no body is likely to contain: random, so a
/// tenant cannot craft content that breaks the framing.
fn boundary() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 12];
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
        // Never seen in practice; the clock still makes a collision with
        // the content improbable.
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        bytes.copy_from_slice(&nanos.to_le_bytes()[..12]);
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("edge-{hex}")
}

/// Bodies sent one after the other (the parts of a multipart answer), so
/// that each part is read from the stored body on its own.
struct Concat {
    pieces: VecDeque<ResponseBody>,
    length: u64,
}

impl Concat {
    fn new(pieces: Vec<ResponseBody>, length: u64) -> Self {
        Self {
            pieces: pieces.into(),
            length,
        }
    }
}

impl Body for Concat {
    type Data = Bytes;
    type Error = <ResponseBody as Body>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        loop {
            let Some(front) = self.pieces.front_mut() else {
                return Poll::Ready(None);
            };
            match Pin::new(front).poll_frame(cx) {
                Poll::Ready(None) => {
                    self.pieces.pop_front();
                }
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        self.length = self.length.saturating_sub(data.len() as u64);
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    // A piece's trailers would end the whole body early.
                    Err(_trailers) => {}
                },
                other => return other,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.pieces.iter().all(|p| p.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.length)
    }
}

/// A 206 that may be kept: one range, `Content-Range: bytes A-B/LEN` with
/// a known length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Part {
    start: u64,
    /// Exclusive.
    end: u64,
    total: u64,
}

/// Whether the backend's 206 to a range miss may be stored as a part:
/// one range of a known length, storable as its 200 would be (RFC 9111
/// §3.3), no larger than an entry may be. A `multipart/byteranges` answer
/// has no `Content-Range` of its own and is never kept.
pub(super) fn storable_part(
    request: &HeaderMap,
    response: &HeaderMap,
    max_entry_bytes: usize,
) -> Option<Part> {
    let part = parse_content_range(response.get(header::CONTENT_RANGE)?.to_str().ok()?)?;
    let len = part.end - part.start;
    let declared = crate::body::declared_length(response);
    let storable = !policy::says_nothing_about_caching(response)
        && policy::storable(&Method::GET, request, StatusCode::OK, response).is_ok()
        && policy::worth_storing(StatusCode::OK, response)
        && declared.is_none_or(|d| d == len)
        && len <= max_entry_bytes as u64;
    storable.then_some(part)
}

/// `bytes A-B/LEN` (RFC 9110 §14.4), with `A <= B < LEN`.
fn parse_content_range(value: &str) -> Option<Part> {
    let (unit, rest) = value.trim().split_once(' ')?;
    if !unit.eq_ignore_ascii_case("bytes") {
        return None;
    }
    let (range, total) = rest.trim().split_once('/')?;
    let (first, last) = range.split_once('-')?;
    let number = |s: &str| {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    let (first, last, total) = (number(first)?, number(last)?, number(total)?);
    (first <= last && last < total).then(|| Part {
        start: first,
        end: last + 1,
        total,
    })
}

/// Whether two responses (with when each was received) are the same
/// representation, so that their parts may be combined (RFC 9111 §3.4:
/// a strong validator, and the same content coding): equal strong
/// `ETag`s, or, when neither has an `ETag`, equal strong `Last-Modified`
/// (§8.8.2.2; a weak one may name two different bodies written within
/// the same second).
fn same_representation(
    old: &HeaderMap,
    old_at: SystemTime,
    new: &HeaderMap,
    new_at: SystemTime,
) -> bool {
    let value = |h: &HeaderMap, name| {
        h.get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .map(str::trim)
            .map(str::to_string)
    };
    let coding = |h: &HeaderMap| value(h, header::CONTENT_ENCODING).map(|c| c.to_ascii_lowercase());
    if coding(old) != coding(new) {
        return false;
    }
    match (value(old, header::ETAG), value(new, header::ETAG)) {
        (None, None) => strong_last_modified(old, old_at)
            .is_some_and(|m| strong_last_modified(new, new_at) == Some(m)),
        (Some(a), Some(b)) => strong_tag(&a) && a == b,
        _ => false,
    }
}

/// A 206 received in full, to keep as a part.
pub(super) struct Fetched<'a> {
    pub key: CacheKey,
    /// The app's purge generation when the miss started.
    pub generation: u64,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub received: Received,
    pub request: &'a HeaderMap,
}

/// Stores a 206's part received in full: combined with the parts already
/// held for this variant if they are of the same representation (else it
/// replaces them: the resource changed), and turned into a complete 200
/// entry once the parts cover it. A complete entry of the same
/// representation is never replaced by a part of it. (Two parts arriving
/// at once may both start from the same parts, and one of them is lost:
/// a later range fetches it again.)
pub(super) fn store_part(store: &CacheStore, part: Part, fetched: Fetched<'_>) -> bool {
    let Fetched {
        key,
        generation,
        mut headers,
        body,
        received,
        request,
    } = fetched;
    if body.len() as u64 != part.end - part.start {
        return false;
    }
    let held = store.get(&key, request);
    let parts = match held.as_deref() {
        Some(old)
            if same_representation(
                &old.headers,
                old.received.response_time,
                &headers,
                received.response_time,
            ) =>
        {
            match &old.parts {
                None => return true,
                Some(parts) if parts.total() == part.total => parts.with(part.start, body),
                Some(_) => Parts::new(part.total, part.start, body),
            }
        }
        _ => Parts::new(part.total, part.start, body),
    };
    let Some(parts) = parts else {
        return false;
    };
    headers.remove(header::CONTENT_RANGE);
    let entry = match parts.complete() {
        Some(whole) => {
            headers.insert(
                header::CONTENT_LENGTH,
                HeaderValue::from(whole.len() as u64),
            );
            Entry::new(StatusCode::OK, headers, whole, received, request)
        }
        None => {
            headers.remove(header::CONTENT_LENGTH);
            let mut entry = Entry::new(
                StatusCode::PARTIAL_CONTENT,
                headers,
                Bytes::new(),
                received,
                request,
            );
            entry.parts = Some(parts);
            entry
        }
    };
    store.insert_unless_purged(key, entry, Some(generation))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::cache::test_support::headers;

    use crate::cache::test_support::received_now as received;

    fn stored(response: &[(&str, &str)]) -> Entry {
        Entry::new(
            StatusCode::OK,
            headers(response),
            Bytes::from_static(b"0123456789"),
            received(),
            &HeaderMap::new(),
        )
    }

    /// One selected range.
    fn one(range: Range<u64>) -> Selection {
        Selection::Ranges(one_range(range.start, range.end))
    }

    fn one_range(start: u64, end: u64) -> Vec<Range<u64>> {
        std::iter::once(start..end).collect()
    }

    fn from(first: u64, last: Option<u64>) -> Spec {
        Spec::From { first, last }
    }

    #[test]
    fn parses_byte_ranges() {
        assert_eq!(parse("bytes=0-3"), Ok(vec![from(0, Some(3))]));
        assert_eq!(
            parse("BYTES=5-, -2 ,,\t1-1"),
            Ok(vec![from(5, None), Spec::Suffix(2), from(1, Some(1))])
        );
        assert_eq!(
            parse("bytes=0-99999999999999999999999"),
            Ok(vec![from(0, Some(u64::MAX))])
        );
        assert_eq!(parse("items=0-3"), Err(Ignored::NotBytes));
        for invalid in [
            "bytes",
            "bytes=",
            "bytes=,",
            "bytes=3-1",
            "bytes=a-b",
            "bytes=-",
            "bytes=1",
            "bytes=+1-2",
            "bytes=1-2-3",
            "bytes=0-1,x",
        ] {
            assert_eq!(parse(invalid), Err(Ignored::Invalid), "{invalid}");
        }
        let many = (0..=MAX_RANGES)
            .map(|i| format!("{i}-{i}"))
            .collect::<Vec<_>>();
        assert_eq!(
            parse(&format!("bytes={}", many.join(","))),
            Err(Ignored::TooMany)
        );
        assert!(parse(&format!("bytes={}", many[..MAX_RANGES].join(","))).is_ok());
    }

    #[test]
    fn selects_and_coalesces() {
        let sel = |v: &str, total| select(&parse(v).unwrap(), total);
        assert_eq!(sel("bytes=0-3", 10), one(0..4));
        assert_eq!(sel("bytes=7-", 10), one(7..10));
        assert_eq!(sel("bytes=5-100", 10), one(5..10));
        assert_eq!(sel("bytes=-3", 10), one(7..10));
        assert_eq!(sel("bytes=-30", 10), one(0..10));
        assert_eq!(sel("bytes=10-", 10), Selection::Unsatisfiable);
        assert_eq!(sel("bytes=-0", 10), Selection::Unsatisfiable);
        assert_eq!(sel("bytes=0-", 0), Selection::Unsatisfiable);
        assert_eq!(sel("bytes=-5", 0), Selection::Unsatisfiable);
        // Unsatisfiable specs drop out; the rest is served.
        assert_eq!(sel("bytes=20-30,1-2", 10), one(1..3));
        // Overlapping and adjacent coalesce, the rest sorted.
        assert_eq!(
            sel("bytes=6-7,0-1,2-3,1-2,9-", 10),
            Selection::Ranges(vec![0..4, 6..8, 9..10])
        );
        assert_eq!(sel("bytes=0-,0-,0-", 10), one(0..10));
    }

    #[test]
    fn if_range_needs_a_strong_match() {
        let lm = "Mon, 02 Nov 2026 10:00:00 GMT";
        let entry = stored(&[
            ("etag", "\"v1\""),
            ("last-modified", lm),
            ("date", "Mon, 02 Nov 2026 10:00:05 GMT"),
        ]);
        let allows = |v: &str, e: &Entry| if_range_allows(&headers(&[("if-range", v)]), e);
        assert!(if_range_allows(&HeaderMap::new(), &entry));
        assert!(allows("\"v1\"", &entry));
        assert!(!allows("\"v2\"", &entry));
        assert!(!allows("W/\"v1\"", &entry), "weak tags never match");
        assert!(
            !allows(lm, &entry),
            "a date never matches a response with an ETag (a compressed answer's)"
        );
        let dated = stored(&[
            ("last-modified", lm),
            ("date", "Mon, 02 Nov 2026 10:00:05 GMT"),
        ]);
        assert!(allows(lm, &dated));
        assert!(
            allows("Monday, 02-Nov-26 10:00:00 GMT", &dated),
            "same date, other form"
        );
        assert!(!allows("Mon, 02 Nov 2026 10:00:01 GMT", &dated));
        assert!(!allows("garbage", &dated));
        let weak = stored(&[("etag", "W/\"v1\"")]);
        assert!(!allows("W/\"v1\"", &weak) && !allows("\"v1\"", &weak));
        // Last-Modified within a second of Date is weak.
        let close = stored(&[("last-modified", lm), ("date", lm)]);
        assert!(!allows(lm, &close));
        // Without Date, when the cache received it.
        let no_date = stored(&[("last-modified", lm)]);
        assert!(allows(lm, &no_date));
    }

    #[test]
    fn plans_follow_status_method_and_if_range() {
        let entry = stored(&[("etag", "\"v1\"")]);
        let plan_for =
            |method: Method, pairs: &[(&str, &str)]| plan(&entry, &method, &headers(pairs));
        assert_eq!(
            plan_for(Method::GET, &[("range", "bytes=1-2")]),
            Plan::Ranges {
                total: 10,
                ranges: one_range(1, 3)
            }
        );
        assert_eq!(
            plan_for(Method::HEAD, &[("range", "bytes=1-2")]),
            Plan::Whole,
            "only GET has range semantics"
        );
        assert_eq!(plan_for(Method::GET, &[]), Plan::Whole);
        assert_eq!(
            plan_for(Method::GET, &[("range", "lines=1-2")]),
            Plan::Whole
        );
        assert_eq!(
            plan_for(
                Method::GET,
                &[("range", "bytes=1-2"), ("if-range", "\"v0\"")]
            ),
            Plan::Whole
        );
        assert_eq!(
            plan_for(Method::GET, &[("range", "bytes=10-")]),
            Plan::Unsatisfiable { total: 10 }
        );
        let not_found = Entry::new(
            StatusCode::NOT_FOUND,
            HeaderMap::new(),
            Bytes::from_static(b"gone"),
            received(),
            &HeaderMap::new(),
        );
        assert_eq!(
            plan(
                &not_found,
                &Method::GET,
                &headers(&[("range", "bytes=0-1")])
            ),
            Plan::Whole,
            "ranges apply to a 200"
        );
    }

    #[test]
    fn content_range_is_read_strictly() {
        let part = |v| parse_content_range(v);
        assert_eq!(
            part("bytes 0-3/12"),
            Some(Part {
                start: 0,
                end: 4,
                total: 12
            })
        );
        assert_eq!(part("bytes 0-3/*"), None, "an unknown length is not kept");
        assert_eq!(part("bytes */12"), None);
        assert_eq!(part("bytes 4-3/12"), None);
        assert_eq!(part("bytes 0-12/12"), None);
        assert_eq!(part("items 0-3/12"), None);
    }

    #[test]
    fn only_same_representations_combine() {
        let now = SystemTime::now();
        let same_representation =
            |a: &HeaderMap, b: &HeaderMap| same_representation(a, now, b, now);
        let h = headers;
        assert!(same_representation(
            &h(&[("etag", "\"a\"")]),
            &h(&[("etag", "\"a\"")])
        ));
        assert!(!same_representation(
            &h(&[("etag", "\"a\"")]),
            &h(&[("etag", "\"b\"")])
        ));
        assert!(!same_representation(
            &h(&[("etag", "W/\"a\"")]),
            &h(&[("etag", "W/\"a\"")])
        ));
        assert!(!same_representation(&h(&[("etag", "\"a\"")]), &h(&[])));
        let lm = ("last-modified", "Mon, 02 Nov 2026 10:00:00 GMT");
        assert!(same_representation(&h(&[lm]), &h(&[lm])));
        assert!(!same_representation(
            &h(&[lm]),
            &h(&[("last-modified", "Mon, 02 Nov 2026 10:00:01 GMT")])
        ));
        assert!(!same_representation(&h(&[]), &h(&[])), "nothing to compare");
        // A Last-Modified within a second of Date is weak: two bodies may
        // share it.
        let date = ("date", "Mon, 02 Nov 2026 10:00:00 GMT");
        assert!(!same_representation(&h(&[lm, date]), &h(&[lm, date])));
        let later = ("date", "Mon, 02 Nov 2026 10:00:01 GMT");
        assert!(same_representation(&h(&[lm, later]), &h(&[lm, later])));
        // Without Date, when it was received decides.
        let at = httpdate::parse_http_date(lm.1).unwrap();
        assert!(!super::same_representation(&h(&[lm]), at, &h(&[lm]), at));
        // The content coding must match too, whatever the validator.
        let gzip = ("content-encoding", "gzip");
        assert!(!same_representation(&h(&[lm, gzip]), &h(&[lm])));
        assert!(!same_representation(
            &h(&[("etag", "\"a\""), gzip]),
            &h(&[("etag", "\"a\""), ("content-encoding", "br")])
        ));
        assert!(same_representation(
            &h(&[("etag", "\"a\""), gzip]),
            &h(&[("etag", "\"a\""), ("content-encoding", "GZIP")])
        ));
    }

    #[test]
    fn ranges_fetched_whole() {
        let range = |v: &str| headers(&[("range", v)]);
        assert!(fetch_whole(&range("bytes=0-"), false, false), "open from 0");
        assert!(fetch_whole(&range("bytes=0-"), false, true));
        assert!(!fetch_whole(&range("bytes=0-99"), false, true));
        assert!(!fetch_whole(&range("bytes=100-"), false, true));
        assert!(!fetch_whole(&range("bytes=0-,5-9"), false, true));
        // With a disk tier, any range of a key with nothing stored.
        assert!(fetch_whole(&range("bytes=100-199"), true, true));
        assert!(fetch_whole(&range("bytes=-5"), true, true));
        assert!(
            !fetch_whole(&range("bytes=100-199"), true, false),
            "parts held"
        );
        assert!(!fetch_whole(&range("lines=0-"), true, true), "not honoured");
        assert!(!fetch_whole(&HeaderMap::new(), true, true), "no Range");
    }

    #[test]
    fn a_whole_fetched_for_a_range_answers_it_when_clean() {
        let answer = |request: &[(&str, &str)], status: StatusCode, length: Option<u64>| {
            let mut response = Response::new(full_body(Bytes::from_static(b"0123456789")));
            *response.status_mut() = status;
            if let Some(len) = length {
                response
                    .headers_mut()
                    .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            }
            whole_as_range(&headers(request), &mut response);
            response
        };
        let whole = answer(&[("range", "bytes=0-")], StatusCode::OK, Some(10));
        assert_eq!(whole.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(whole.headers()[header::CONTENT_RANGE], "bytes 0-9/10");
        assert_eq!(whole.headers()[header::ACCEPT_RANGES], "bytes");
        assert_eq!(whole.headers()[header::CONTENT_LENGTH], "10");
        // Also any range that selects all of it.
        let all = answer(&[("range", "bytes=0-99")], StatusCode::OK, Some(10));
        assert_eq!(all.status(), StatusCode::PARTIAL_CONTENT);
        // Anything else gets the 200 as it is.
        for (request, status, length) in [
            (vec![("range", "bytes=1-")], StatusCode::OK, Some(10)),
            (vec![("range", "bytes=0-4")], StatusCode::OK, Some(10)),
            (vec![("range", "bytes=0-")], StatusCode::OK, None),
            (vec![("range", "bytes=0-")], StatusCode::OK, Some(0)),
            (
                vec![("range", "bytes=0-"), ("if-range", "\"v1\"")],
                StatusCode::OK,
                Some(10),
            ),
            (vec![("range", "bytes=0-")], StatusCode::NOT_FOUND, Some(10)),
            (vec![("range", "items=0-")], StatusCode::OK, Some(10)),
        ] {
            let response = answer(&request, status, length);
            assert_eq!(response.status(), status, "{request:?}");
            assert!(!response.headers().contains_key(header::CONTENT_RANGE));
        }
    }

    fn part_headers(range: &str, etag: &str) -> HeaderMap {
        headers(&[
            ("cache-control", "max-age=60"),
            ("etag", etag),
            ("content-range", range),
            ("content-type", "text/plain"),
        ])
    }

    #[test]
    fn parts_are_stored_combined_and_completed() {
        let store = CacheStore::new(1 << 20, 1 << 16, None);
        let key = CacheKey::new("t", "a", "https", "x.test", "/r");
        let none = HeaderMap::new();
        let fetched = |headers, body: &'static str| Fetched {
            key: key.clone(),
            generation: store.generation(&key),
            headers,
            body: Bytes::from_static(body.as_bytes()),
            received: received(),
            request: &none,
        };
        let keep = |range: &str, etag: &str, body: &'static str| {
            let headers = part_headers(range, etag);
            let part = storable_part(&none, &headers, 1 << 16).unwrap();
            store_part(&store, part, fetched(headers, body))
        };
        assert!(keep("bytes 0-3/10", "\"a\"", "0123"));
        let entry = store.get(&key, &none).unwrap();
        assert!(entry.is_partial());
        assert_eq!(entry.status, StatusCode::PARTIAL_CONTENT);
        assert!(!entry.headers.contains_key(header::CONTENT_RANGE));
        let range = |v: &str| headers(&[("range", v)]);
        assert!(answerable(&entry, &Method::GET, &range("bytes=1-2")));
        assert!(
            answerable(&entry, &Method::GET, &range("bytes=20-")),
            "416 is known"
        );
        assert!(!answerable(&entry, &Method::GET, &range("bytes=2-5")));
        assert!(!answerable(&entry, &Method::GET, &none), "a whole GET");
        // A body not matching its Content-Range is not kept.
        let headers = part_headers("bytes 4-6/10", "\"a\"");
        let part = storable_part(&none, &headers, 1 << 16).unwrap();
        assert!(!store_part(&store, part, fetched(headers, "45")));
        // A different ETag replaces the parts.
        assert!(keep("bytes 6-9/10", "\"b\"", "6789"));
        let entry = store.get(&key, &none).unwrap();
        assert!(!answerable(&entry, &Method::GET, &range("bytes=0-1")));
        assert!(answerable(&entry, &Method::GET, &range("bytes=-4")));
        // Completed: a 200 with the whole length.
        assert!(keep("bytes 0-5/10", "\"b\"", "012345"));
        let entry = store.get(&key, &none).unwrap();
        assert!(!entry.is_partial());
        assert_eq!(entry.status, StatusCode::OK);
        assert_eq!(entry.body.as_bytes().unwrap(), "0123456789");
        assert_eq!(entry.headers[header::CONTENT_LENGTH], "10");
        assert!(!entry.headers.contains_key(header::CONTENT_RANGE));
        // A part of the same representation leaves the complete entry be.
        assert!(keep("bytes 0-1/10", "\"b\"", "01"));
        assert!(!store.get(&key, &none).unwrap().is_partial());
    }

    #[test]
    fn parts_on_a_weak_last_modified_are_replaced() {
        let store = CacheStore::new(1 << 20, 1 << 16, None);
        let key = CacheKey::new("t", "a", "https", "x.test", "/weak");
        let none = HeaderMap::new();
        let lm = "Mon, 02 Nov 2026 10:00:00 GMT";
        let keep = |range: &str, date: &str, coding: Option<&str>, body: &'static str| {
            let mut pairs = vec![
                ("cache-control", "max-age=60"),
                ("last-modified", lm),
                ("date", date),
                ("content-range", range),
            ];
            pairs.extend(coding.map(|c| ("content-encoding", c)));
            let headers = headers(&pairs);
            let part = storable_part(&none, &headers, 1 << 16).unwrap();
            let fetched = Fetched {
                key: key.clone(),
                generation: store.generation(&key),
                headers,
                body: Bytes::from_static(body.as_bytes()),
                received: received(),
                request: &none,
            };
            assert!(store_part(&store, part, fetched));
            store.get(&key, &none).unwrap()
        };
        // Date equal to Last-Modified: weak, so the second part replaces
        // the first instead of completing it.
        keep("bytes 0-4/10", lm, None, "01234");
        let entry = keep("bytes 5-9/10", lm, None, "56789");
        assert!(entry.is_partial());
        assert_eq!(entry.parts.as_ref().unwrap().count(), 1);
        assert!(!answerable(
            &entry,
            &Method::GET,
            &headers(&[("range", "bytes=0-1")])
        ));
        // Strong, but another content coding: replaced too.
        let later = "Mon, 02 Nov 2026 10:00:05 GMT";
        keep("bytes 0-4/10", later, Some("gzip"), "01234");
        let entry = keep("bytes 5-9/10", later, None, "56789");
        assert!(entry.is_partial());
        // Strong and the same coding: combined into the whole.
        let entry = keep("bytes 0-4/10", later, None, "01234");
        assert!(!entry.is_partial());
        assert_eq!(entry.body.as_bytes().unwrap(), "0123456789");
    }

    #[test]
    fn parts_obey_the_entry_limit() {
        // Room for one small part with its headers, not for two.
        let store = CacheStore::new(1 << 20, 1024, None);
        let key = CacheKey::new("t", "a", "https", "x.test", "/big");
        let none = HeaderMap::new();
        let keep = |range: &str, len: usize| {
            let headers = part_headers(range, "\"a\"");
            let part = storable_part(&none, &headers, 1024)?;
            let fetched = Fetched {
                key: key.clone(),
                generation: store.generation(&key),
                headers,
                body: Bytes::from(vec![b'x'; len]),
                received: received(),
                request: &none,
            };
            Some(store_part(&store, part, fetched))
        };
        assert_eq!(keep("bytes 0-99/5000", 100), Some(true));
        assert_eq!(
            keep("bytes 1000-1599/5000", 600),
            Some(false),
            "too heavy with the first"
        );
        let entry = store.get(&key, &none).unwrap();
        assert_eq!(
            entry.parts.as_ref().unwrap().count(),
            1,
            "the held part stays"
        );
        assert_eq!(
            keep("bytes 0-1999/5000", 2000),
            None,
            "over the limit alone"
        );
    }

    #[test]
    fn parts_that_cannot_be_stored() {
        let none = HeaderMap::new();
        let part = |pairs: &[(&str, &str)], max| storable_part(&none, &headers(pairs), max);
        let range = ("content-range", "bytes 0-3/10");
        let cc = ("cache-control", "max-age=60");
        assert!(part(&[range, cc], 100).is_some());
        assert!(part(&[cc], 100).is_none(), "no Content-Range");
        assert!(part(&[range], 100).is_none(), "says nothing about caching");
        assert!(part(&[range, ("cache-control", "no-store")], 100).is_none());
        assert!(part(&[range, ("cache-control", "private, max-age=60")], 100).is_none());
        assert!(
            part(&[range, cc, ("content-length", "5")], 100).is_none(),
            "lying length"
        );
        assert!(part(&[range, cc], 3).is_none(), "over max_entry_bytes");
        assert!(
            part(&[("content-range", "bytes 0-3/*"), cc], 100).is_none(),
            "unknown length"
        );
        let no_store_request = headers(&[("cache-control", "no-store")]);
        assert!(storable_part(&no_store_request, &headers(&[range, cc]), 100).is_none());
    }

    #[tokio::test]
    async fn multipart_answers_carry_each_range() {
        let entry = stored(&[("content-type", "text/plain")]);
        let mut headers_out = entry.headers.clone();
        let request = headers(&[("range", "bytes=0-1,-2")]);
        let response = respond(&entry, &Method::GET, &request, &mut headers_out).unwrap();
        assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
        let content_type = response.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_string();
        let boundary = content_type
            .strip_prefix("multipart/byteranges; boundary=")
            .unwrap()
            .to_string();
        let length: usize = response.headers()[header::CONTENT_LENGTH]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.len(), length);
        let expected = format!(
            "--{boundary}\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-1/10\r\n\r\n01\
             \r\n--{boundary}\r\nContent-Type: text/plain\r\nContent-Range: bytes 8-9/10\r\n\r\n89\
             \r\n--{boundary}--\r\n"
        );
        assert_eq!(body, expected);
        assert_eq!(headers_out[header::ACCEPT_RANGES], "bytes");
        // Each answer has its own boundary.
        let again = respond(&entry, &Method::GET, &request, &mut entry.headers.clone()).unwrap();
        assert_ne!(again.headers()[header::CONTENT_TYPE], content_type.as_str());
    }
}
