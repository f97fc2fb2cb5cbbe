//! Compression at the edge: gzip, brotli or zstd for clients that accept
//! them (RFC 9110 §12.5.3), on compressible answers the backend did not
//! encode. Applied by the dispatcher to every answer of an app (hits,
//! misses, `BYPASS`, uncached apps), never to a component's own fetches:
//! the guest reads those bodies and would have to decode them.
//!
//! - A hit is answered from the entry's encoded copy in that coding
//!   (`encoded`), built once, on the first hit that asks for it, on a
//!   blocking thread, and kept in the store next to the identity body.
//!   At most one build per core runs at once ([`CopyBuilds`]); a hit that
//!   finds none free is answered as it is.
//! - Anything else (a miss being stored, a pass-through) is compressed
//!   as it streams, flushed whenever the backend has nothing more ready,
//!   so a slowly streamed answer still reaches the client piece by piece.
//!   Hits on disk are streamed too (no copy is kept of a body not in
//!   memory); a declared length past `max_stream_bytes` is sent as it is.
//!
//! The store keeps identity bodies only: a client that did not ask for an
//! encoding always gets one. Compressed answers carry `Vary:
//! Accept-Encoding`, a weak `ETag` (RFC 9110 §8.8.3: another
//! representation) and no `Accept-Ranges`.

use std::io::Write;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Method, Response};
use http_body::{Body, Frame};
use http_body_util::BodyExt;

use super::encoded::{EncodedCopies, compressible};
use super::store::{CacheStore, Entry};
use crate::body::{ResponseBody, declared_length, full_body};
use crate::config::{AppCompression, Coding, CompressionConfig};

type HttpError = wasmtime_wasi_http::Error;

/// Levels: fast enough to compress a streamed answer on the request's own
/// task, and a better ratio than the fastest settings. gzip 6 is zlib's
/// default; brotli 5 compresses text about as fast as gzip 6 and smaller
/// (quality 11 is two orders of magnitude slower); zstd 3 is its default.
const GZIP_LEVEL: u32 = 6;
const BROTLI_QUALITY: u32 = 5;
/// brotli's window for a kept copy: 4 MiB, its default (`lgwin` 22), built
/// once on a blocking thread.
const BROTLI_WINDOW: u32 = 22;
/// The window for a streamed answer, brotli's and zstd's: 512 KiB (log 19;
/// zstd 3's own is 2 MiB). Every answer compressed as it streams holds
/// its own window (and the encoder's tables sized from it) for as long as
/// the client takes to read it; text loses little ratio against the
/// larger defaults.
const STREAM_WINDOW_LOG: u32 = 19;
const ZSTD_LEVEL: i32 = 3;

/// The node's compression: its defaults and its metric.
pub struct Compressor {
    config: CompressionConfig,
    /// `edge_compressed_responses_total{encoding, source}`.
    compressed: Option<prometheus::IntCounterVec>,
    /// Bounds the copies built at once, node-wide.
    builds: CopyBuilds,
}

/// The node-wide bound on copy builds: each compresses a whole stored body
/// (up to the store's largest entry) on a blocking thread, so a client
/// walking many compressible URLs would otherwise start one per URL, and
/// as many bodies' worth of codec memory.
#[derive(Clone)]
pub struct CopyBuilds {
    permits: Arc<tokio::sync::Semaphore>,
}

impl CopyBuilds {
    /// At most `limit` builds at once (at least one).
    pub fn new(limit: usize) -> Self {
        Self {
            permits: Arc::new(tokio::sync::Semaphore::new(limit.max(1))),
        }
    }

    /// One build per core: a build is pure CPU, so more at once would only
    /// queue on the cores while holding their buffers.
    pub fn per_core() -> Self {
        Self::new(std::thread::available_parallelism().map_or(1, usize::from))
    }

    /// A permit for one build, `None` if the bound is reached. The permit
    /// moves into the blocking job, so it is held until the job ends even
    /// if the request that started it goes away.
    fn try_start(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.permits.clone().try_acquire_owned().ok()
    }
}

/// What one request may get, decided before it is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offer {
    /// The coding to send, `None` if the client accepts none the node
    /// offers (or asked with HEAD): such answers still get `Vary`.
    pub coding: Option<Coding>,
    /// Answers shorter than this are sent as they are.
    pub min_bytes: u64,
}

/// Where a compressed answer's bytes came from (the `source` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// The entry's copy, built before.
    Stored,
    /// The entry's copy, built for this request and kept.
    Built,
    /// Compressed while streaming.
    Stream,
}

impl Source {
    fn label(self) -> &'static str {
        match self {
            Source::Stored => "stored",
            Source::Built => "built",
            Source::Stream => "stream",
        }
    }
}

impl Compressor {
    /// `compressed` counts compressed answers by encoding and source
    /// (labels from fixed sets: `br|zstd|gzip` × `stored|built|stream`).
    pub fn new(config: CompressionConfig, compressed: Option<prometheus::IntCounterVec>) -> Self {
        Self::with_builds(config, compressed, CopyBuilds::per_core())
    }

    /// As [`Self::new`], with `builds` bounding the copies built at once.
    pub fn with_builds(
        config: CompressionConfig,
        compressed: Option<prometheus::IntCounterVec>,
        builds: CopyBuilds,
    ) -> Self {
        Self {
            config,
            compressed,
            builds,
        }
    }

    /// What a request to an app with `app`'s settings may get; `None` if
    /// compression is off for the app.
    pub fn offer(
        &self,
        app: &AppCompression,
        method: &Method,
        request: &HeaderMap,
    ) -> Option<Offer> {
        if !app.enabled.unwrap_or(self.config.enabled) || self.config.encodings.is_empty() {
            return None;
        }
        let coding = if *method == Method::HEAD {
            None
        } else {
            negotiate(request, &self.config.encodings)
        };
        Some(Offer {
            coding,
            min_bytes: app.min_bytes.unwrap_or(self.config.min_bytes),
        })
    }

    /// `response` as `offer` says: compressed, or as it was (with `Vary:
    /// Accept-Encoding` if it could have been). A cache hit comes with its
    /// entry's [`EncodedCopies`], which `store` holds.
    pub async fn respond(
        &self,
        offer: Offer,
        store: Option<&CacheStore>,
        mut response: Response<ResponseBody>,
    ) -> Response<ResponseBody> {
        let copies = response.extensions_mut().remove::<Arc<EncodedCopies>>();
        if !compressible(response.status(), response.headers()) {
            return response;
        }
        let length = declared_length(response.headers()).or_else(|| {
            copies
                .as_ref()
                .map(|c| c.identity.len())
                .or_else(|| response.body().size_hint().exact())
        });
        if length.is_some_and(|len| len < offer.min_bytes) {
            return response;
        }
        add_vary(response.headers_mut());
        let Some(coding) = offer.coding else {
            return response;
        };
        let whole = copies
            .as_ref()
            .and_then(|c| Some((c, c.identity.as_bytes()?.clone())));
        let (response, source) = match (whole, store) {
            (Some((copies, identity)), Some(store)) => {
                match stored_copy(store, &self.builds, copies, coding, identity).await {
                    Some((bytes, source)) => {
                        let (mut parts, _identity_body) = response.into_parts();
                        parts
                            .headers
                            .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
                        (Response::from_parts(parts, full_body(bytes)), source)
                    }
                    // Every build slot is taken (or the codec failed, which
                    // it does not on a buffer): identity, not a stream. The
                    // bound is there to cap the CPU and memory compression
                    // takes; compressing this body as it streams would spend
                    // the same on a runtime thread instead, and again on
                    // the next hit. The copy is built by a later hit.
                    None => return response,
                }
            }
            // A known length past the cap goes as it is (see
            // `max_stream_bytes`); an unknown one is compressed.
            _ if length.is_some_and(|len| len > self.config.max_stream_bytes) => {
                return response;
            }
            _ => {
                let (mut parts, body) = response.into_parts();
                parts.headers.remove(header::CONTENT_LENGTH);
                let body = CompressBody::new(body, coding).boxed_unsync();
                (Response::from_parts(parts, body), Source::Stream)
            }
        };
        let mut response = response;
        encoded_headers(response.headers_mut(), coding, copies.as_deref());
        if let Some(counter) = &self.compressed {
            counter
                .with_label_values(&[coding.token(), source.label()])
                .inc();
        }
        response
    }
}

/// The entry's copies, for [`Compressor::respond`] to answer this hit
/// from (a body in memory) or to learn its length (a body on disk, whose
/// stream does not say it): only for a GET whose request accepts one of
/// the codings at all. Which codings the app offers is known only later,
/// so a node offering fewer passes a few copies it will not use.
pub fn hit_copies(
    entry: &Entry,
    method: &Method,
    request: &HeaderMap,
) -> Option<Arc<EncodedCopies>> {
    let copies = entry.encoded.as_ref()?;
    (*method == Method::GET && negotiate(request, &Coding::ALL).is_some()).then(|| copies.clone())
}

/// The copy of `identity` in `coding`: kept in the entry already, or
/// compressed now (off the runtime's threads: a stored body may be
/// megabytes) and kept if the entry is still stored.
async fn stored_copy(
    store: &CacheStore,
    builds: &CopyBuilds,
    copies: &Arc<EncodedCopies>,
    coding: Coding,
    identity: Bytes,
) -> Option<(Bytes, Source)> {
    if let Some(copy) = copies.get(coding) {
        return Some((copy.clone(), Source::Stored));
    }
    let _building = copies.building(coding).await;
    // Built (and kept) by the request this one waited for.
    if let Some(copy) = copies.get(coding) {
        return Some((copy.clone(), Source::Stored));
    }
    let permit = builds.try_start()?;
    let bytes = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        compress_all(coding, &identity)
    })
    .await
    .ok()?
    .ok()?;
    let kept = bytes.clone();
    store.grow(copies, || copies.set(coding, kept));
    Some((bytes, Source::Built))
}

/// The headers of the answer once its body is in `coding`; `copies` (a
/// hit's) holds the weak `ETag` made once for its entry.
fn encoded_headers(headers: &mut HeaderMap, coding: Coding, copies: Option<&EncodedCopies>) {
    headers.insert(
        header::CONTENT_ENCODING,
        HeaderValue::from_static(coding.token()),
    );
    // Byte ranges of the identity body say nothing about these bytes.
    headers.remove(header::ACCEPT_RANGES);
    // Without an ETag, Last-Modified would be this answer's only (strong)
    // validator: a client resuming it with `If-Range: <date>` would get a
    // 206 of the identity bytes spliced onto its compressed prefix. (With
    // one, the ETag is weakened below, and a date If-Range never matches a
    // response that has an ETag: `range::if_range_allows`.)
    if !headers.contains_key(header::ETAG) {
        headers.remove(header::LAST_MODIFIED);
    }
    if let Some(etag) = headers.get(header::ETAG)
        && !etag.as_bytes().starts_with(b"W/")
    {
        // The entry's own validator, made weak once (unless a
        // revalidation changed it): no allocation per hit.
        let made = copies.and_then(|c| c.weak_etag_of(etag)).cloned();
        let weak = made.or_else(|| {
            let mut weak = Vec::with_capacity(etag.len() + 2);
            weak.extend_from_slice(b"W/");
            weak.extend_from_slice(etag.as_bytes());
            HeaderValue::from_bytes(&weak).ok()
        });
        match weak {
            Some(value) => {
                headers.insert(header::ETAG, value);
            }
            None => {
                headers.remove(header::ETAG);
            }
        }
    }
}

/// Adds `Accept-Encoding` to `Vary` unless it is there (or `Vary: *`).
fn add_vary(headers: &mut HeaderMap) {
    let covered = headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|name| name == "*" || name.eq_ignore_ascii_case("accept-encoding"));
    if !covered {
        headers.append(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
}

/// The coding to use for a request with these headers, of `offered`
/// (RFC 9110 §12.5.3): the highest q-value above 0, an explicit entry
/// before `*`, and among equal q-values br, then zstd, then gzip. No
/// `Accept-Encoding` at all means identity: nothing says the client can
/// decode anything. A client that rates `identity` above every coding
/// gets identity.
pub fn negotiate(request: &HeaderMap, offered: &[Coding]) -> Option<Coding> {
    let mut explicit: [Option<f32>; 3] = [None; 3];
    let mut any: Option<f32> = None;
    let mut identity: Option<f32> = None;
    let mut seen = false;
    for value in request.get_all(header::ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else {
            continue;
        };
        for member in value.split(',') {
            let mut params = member.split(';');
            let name = params.next().unwrap_or("").trim();
            if name.is_empty() {
                continue;
            }
            seen = true;
            let q = quality(params);
            let is = |token: &str| name.eq_ignore_ascii_case(token);
            let slot = if is("br") {
                &mut explicit[Coding::Br.index()]
            } else if is("zstd") {
                &mut explicit[Coding::Zstd.index()]
            } else if is("gzip") || is("x-gzip") {
                &mut explicit[Coding::Gzip.index()]
            } else if name == "*" {
                &mut any
            } else if is("identity") {
                &mut identity
            } else {
                continue;
            };
            // Listed twice: the lower value, the careful reading.
            *slot = Some(slot.map_or(q, |old| old.min(q)));
        }
    }
    if !seen {
        return None;
    }
    let mut best: Option<(Coding, f32)> = None;
    for coding in Coding::ALL {
        if !offered.contains(&coding) {
            continue;
        }
        let q = explicit[coding.index()].or(any).unwrap_or(0.0);
        if q > 0.0 && best.is_none_or(|(_, b)| q > b) {
            best = Some((coding, q));
        }
    }
    let (coding, q) = best?;
    match identity {
        Some(identity) if identity > q => None,
        _ => Some(coding),
    }
}

/// A member's `q` parameter (RFC 9110 §12.4.2): 1 when absent; an invalid
/// one counts as 0, so a garbled preference never turns compression on.
fn quality<'a>(params: impl Iterator<Item = &'a str>) -> f32 {
    for param in params {
        let Some((name, value)) = param.split_once('=') else {
            continue;
        };
        if !name.trim().eq_ignore_ascii_case("q") {
            continue;
        }
        let value = value.trim();
        let valid = value.len() <= 5
            && value.bytes().all(|b| b.is_ascii_digit() || b == b'.')
            && (value.starts_with('0') || value.starts_with('1'));
        return match value.parse::<f32>() {
            Ok(q) if valid && (0.0..=1.0).contains(&q) => q,
            _ => 0.0,
        };
    }
    1.0
}

/// One of the codecs, writing into a buffer the caller drains.
enum Encoder {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Br(Box<brotli::CompressorWriter<Vec<u8>>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

impl Encoder {
    /// `stream`: for an answer compressed as it streams, with the smaller
    /// window (gzip's is 32 KiB whatever the use).
    fn new(coding: Coding, stream: bool) -> std::io::Result<Self> {
        let brotli_window = match stream {
            true => STREAM_WINDOW_LOG,
            false => BROTLI_WINDOW,
        };
        Ok(match coding {
            Coding::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::new(GZIP_LEVEL),
            )),
            Coding::Br => Encoder::Br(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                16 << 10,
                BROTLI_QUALITY,
                brotli_window,
            ))),
            Coding::Zstd => {
                let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), ZSTD_LEVEL)?;
                if stream {
                    encoder.window_log(STREAM_WINDOW_LOG)?;
                }
                Encoder::Zstd(encoder)
            }
        })
    }

    fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            Encoder::Gzip(e) => e.write_all(data),
            Encoder::Br(e) => e.write_all(data),
            Encoder::Zstd(e) => e.write_all(data),
        }
    }

    /// Makes everything written so far decodable by the client.
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Encoder::Gzip(e) => e.flush(),
            Encoder::Br(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
        }
    }

    /// The compressed bytes produced so far, taken out of the buffer.
    fn take(&mut self) -> Bytes {
        let buffer = match self {
            Encoder::Gzip(e) => e.get_mut(),
            Encoder::Br(e) => e.get_mut(),
            Encoder::Zstd(e) => e.get_mut(),
        };
        Bytes::from(std::mem::take(buffer))
    }

    /// Ends the stream: the last bytes.
    fn finish(self) -> std::io::Result<Bytes> {
        let rest = match self {
            Encoder::Gzip(e) => e.finish()?,
            Encoder::Br(e) => e.into_inner(),
            Encoder::Zstd(e) => e.finish()?,
        };
        Ok(Bytes::from(rest))
    }
}

/// `body` compressed whole.
pub fn compress_all(coding: Coding, body: &[u8]) -> std::io::Result<Bytes> {
    let mut encoder = Encoder::new(coding, false)?;
    encoder.write(body)?;
    encoder.take_all()
}

/// A response body compressed as it streams. Trailers are passed on after
/// the last compressed bytes.
struct CompressBody {
    inner: ResponseBody,
    /// `None` once finished.
    encoder: Option<Encoder>,
    /// Bytes written since the last flush.
    unflushed: bool,
    trailers: Option<HeaderMap>,
}

impl CompressBody {
    fn new(inner: ResponseBody, coding: Coding) -> Self {
        Self {
            inner,
            encoder: Encoder::new(coding, true).ok(),
            unflushed: false,
            trailers: None,
        }
    }
}

fn codec_error(err: std::io::Error) -> HttpError {
    HttpError::InternalError(Some(format!("compression: {err}")))
}

impl Body for CompressBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = &mut *self;
        loop {
            let Some(encoder) = this.encoder.as_mut() else {
                return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))));
            };
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        if let Err(err) = encoder.write(&data) {
                            this.encoder = None;
                            return Poll::Ready(Some(Err(codec_error(err))));
                        }
                        this.unflushed |= !data.is_empty();
                        let out = encoder.take();
                        if !out.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(out))));
                        }
                    }
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            this.trailers = Some(trailers);
                        }
                    }
                },
                Poll::Ready(Some(Err(err))) => {
                    this.encoder = None;
                    return Poll::Ready(Some(Err(err)));
                }
                Poll::Ready(None) => {
                    let Some(encoder) = this.encoder.take() else {
                        continue;
                    };
                    match encoder.take_all() {
                        Ok(bytes) if bytes.is_empty() => continue,
                        Ok(bytes) => return Poll::Ready(Some(Ok(Frame::data(bytes)))),
                        Err(err) => return Poll::Ready(Some(Err(codec_error(err)))),
                    }
                }
                Poll::Pending => {
                    // Nothing more ready: send what is compressed so far,
                    // so a slow stream is not held back by the codec.
                    if this.unflushed {
                        this.unflushed = false;
                        if let Err(err) = encoder.flush() {
                            this.encoder = None;
                            return Poll::Ready(Some(Err(codec_error(err))));
                        }
                        let out = encoder.take();
                        if !out.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(out))));
                        }
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.encoder.is_none() && self.trailers.is_none()
    }
}

impl Encoder {
    /// What is buffered, then the end of the stream.
    fn take_all(mut self) -> std::io::Result<Bytes> {
        let head = self.take();
        let tail = self.finish()?;
        if head.is_empty() {
            return Ok(tail);
        }
        let mut all = Vec::with_capacity(head.len() + tail.len());
        all.extend_from_slice(&head);
        all.extend_from_slice(&tail);
        Ok(Bytes::from(all))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT_ENCODING, value.parse().unwrap());
        headers
    }

    #[test]
    fn negotiation() {
        let all = &Coding::ALL[..];
        let pick = |value: &str| negotiate(&accept(value), all);
        assert_eq!(
            negotiate(&HeaderMap::new(), all),
            None,
            "no header: identity"
        );
        assert_eq!(pick(""), None);
        assert_eq!(pick("gzip"), Some(Coding::Gzip));
        assert_eq!(pick("x-gzip"), Some(Coding::Gzip));
        assert_eq!(pick("GZIP, Deflate"), Some(Coding::Gzip));
        assert_eq!(pick("gzip, deflate, br, zstd"), Some(Coding::Br));
        assert_eq!(pick("gzip, zstd"), Some(Coding::Zstd));
        assert_eq!(
            pick("br;q=0.5, gzip"),
            Some(Coding::Gzip),
            "q wins over preference"
        );
        assert_eq!(pick("br;q=0, gzip;q=0"), None);
        assert_eq!(pick("*"), Some(Coding::Br));
        assert_eq!(
            pick("*;q=0.5, br;q=0"),
            Some(Coding::Zstd),
            "explicit before *"
        );
        assert_eq!(pick("*;q=0"), None);
        assert_eq!(pick("identity"), None);
        assert_eq!(pick("identity;q=0"), None, "nothing else acceptable");
        assert_eq!(pick("gzip, identity;q=0"), Some(Coding::Gzip));
        assert_eq!(
            pick("gzip;q=0.2, identity;q=0.9"),
            None,
            "identity rated higher"
        );
        assert_eq!(pick("gzip;q=abc"), None, "an invalid q is 0");
        assert_eq!(pick("gzip;q=1.5"), None);
        assert_eq!(pick("deflate, compress"), None);
        assert_eq!(
            negotiate(&accept("br, gzip"), &[Coding::Gzip]),
            Some(Coding::Gzip),
            "only what the node offers"
        );
        let mut two = accept("br;q=0.1");
        two.append(header::ACCEPT_ENCODING, "zstd".parse().unwrap());
        assert_eq!(negotiate(&two, all), Some(Coding::Zstd), "every field line");
    }

    #[test]
    fn each_codec_round_trips() {
        let text = "hello, compressed world. ".repeat(200);
        for coding in Coding::ALL {
            let packed = compress_all(coding, text.as_bytes()).unwrap();
            assert!(packed.len() < text.len() / 4, "{coding:?}");
            let mut out = Vec::new();
            match coding {
                Coding::Gzip => {
                    flate2::read::GzDecoder::new(&packed[..])
                        .read_to_end(&mut out)
                        .unwrap();
                }
                Coding::Br => {
                    brotli::Decompressor::new(&packed[..], 4096)
                        .read_to_end(&mut out)
                        .unwrap();
                }
                Coding::Zstd => out = zstd::stream::decode_all(&packed[..]).unwrap(),
            }
            assert_eq!(out, text.as_bytes(), "{coding:?}");
        }
    }

    #[test]
    fn copies_are_weighed_kept_once_and_go_with_their_entry() {
        use super::super::store::CacheKey;
        let store = CacheStore::new(1 << 20, 1 << 18, None);
        let key = CacheKey::new("t", "a", "https", "x.test", "/doc");
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        headers.insert(header::CACHE_CONTROL, "max-age=60".parse().unwrap());
        let text = Bytes::from("abc ".repeat(4000));
        let entry = crate::cache::test_support::entry_now(headers, text.clone());
        assert!(store.insert(key.clone(), entry));
        let stored = store.get(&key, &HeaderMap::new()).unwrap();
        let copies = stored.encoded.clone().expect("text/plain has copies");
        let before = store.weighted_size();
        let gzip = compress_all(Coding::Gzip, &text).unwrap();
        let added = store.grow(&copies, || copies.set(Coding::Gzip, gzip.clone()));
        assert_eq!(added, gzip.len());
        assert_eq!(store.weighted_size(), before + gzip.len() as u64);
        assert_eq!(copies.get(Coding::Gzip), Some(&gzip));
        // A second copy in the same coding is not kept.
        assert_eq!(
            store.grow(&copies, || copies.set(Coding::Gzip, gzip.clone())),
            0
        );
        // Once the entry is purged, nothing is kept for it.
        store.purge_key(&key, false);
        assert_eq!(store.weighted_size(), 0);
        let br = compress_all(Coding::Br, &text).unwrap();
        assert_eq!(
            store.grow(&copies, || copies.set(Coding::Br, br.clone())),
            0
        );
        assert_eq!(copies.get(Coding::Br), None);
    }

    /// An entry with a text body, stored in `store` under `path`: its copies.
    fn stored(store: &CacheStore, path: &str, text: &Bytes) -> Arc<EncodedCopies> {
        use super::super::store::CacheKey;
        let key = CacheKey::new("t", "a", "https", "x.test", path);
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        headers.insert(header::CACHE_CONTROL, "max-age=60".parse().unwrap());
        headers.insert(header::ETAG, "\"v1\"".parse().unwrap());
        let entry = crate::cache::test_support::entry_now(headers, text.clone());
        assert!(store.insert(key.clone(), entry));
        let stored = store.get(&key, &HeaderMap::new()).unwrap();
        stored.encoded.clone().expect("text/plain has copies")
    }

    #[tokio::test]
    async fn copy_builds_are_bounded_node_wide() {
        let store = CacheStore::new(1 << 22, 1 << 20, None);
        let text = Bytes::from("abc ".repeat(4000));
        let builds = CopyBuilds::new(2);
        let copies: Vec<_> = (0..3)
            .map(|i| stored(&store, &format!("/doc{i}"), &text))
            .collect();
        // Two builds under way (their permits held, as a running job holds
        // its own): a third entry's first hit builds nothing.
        let running = [builds.try_start().unwrap(), builds.try_start().unwrap()];
        assert!(builds.try_start().is_none(), "the bound is 2");
        for copy in &copies {
            let got = stored_copy(&store, &builds, copy, Coding::Br, text.clone()).await;
            assert_eq!(got, None, "no slot: identity");
            assert_eq!(copy.get(Coding::Br), None, "and nothing kept");
        }
        // A copy built before is served whatever the bound.
        copy_in(&store, &copies[0], Coding::Gzip, &text);
        let got = stored_copy(&store, &builds, &copies[0], Coding::Gzip, text.clone()).await;
        assert_eq!(got.map(|(_, s)| s), Some(Source::Stored));
        // A slot frees: the next hit builds, and its permit goes back.
        drop(running);
        for copy in &copies {
            let got = stored_copy(&store, &builds, copy, Coding::Br, text.clone()).await;
            assert_eq!(got.map(|(_, s)| s), Some(Source::Built));
            assert!(copy.get(Coding::Br).is_some());
        }
        assert_eq!(builds.permits.available_permits(), 2);
        assert_eq!(CopyBuilds::new(0).permits.available_permits(), 1);
    }

    fn copy_in(store: &CacheStore, copies: &Arc<EncodedCopies>, coding: Coding, text: &[u8]) {
        let bytes = compress_all(coding, text).unwrap();
        assert!(store.grow(copies, || copies.set(coding, bytes)) > 0);
    }

    fn text_response(body: ResponseBody) -> Response<ResponseBody> {
        let mut response = Response::new(body);
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        response
    }

    async fn collect(response: Response<ResponseBody>) -> (HeaderMap, Bytes) {
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        (parts.headers, bytes)
    }

    fn brotli_decoded(packed: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        brotli::Decompressor::new(packed, 4096)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[tokio::test]
    async fn streamed_compression_stops_at_max_stream_bytes() {
        let config = CompressionConfig {
            max_stream_bytes: 4096,
            ..CompressionConfig::default()
        };
        let compressor = Compressor::new(config, None);
        let offer = Offer {
            coding: Some(Coding::Br),
            min_bytes: 0,
        };
        let big = Bytes::from("x".repeat(5000));
        let small = Bytes::from("x".repeat(3000));

        // A known length past the cap (from the body, then from the
        // header): identity, still varying on Accept-Encoding.
        let mut declared = text_response(full_body(big.clone()));
        declared
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(big.len()));
        for response in [text_response(full_body(big.clone())), declared] {
            let (headers, bytes) = collect(compressor.respond(offer, None, response).await).await;
            assert_eq!(headers.get(header::CONTENT_ENCODING), None);
            assert_eq!(headers["vary"], "accept-encoding");
            assert_eq!(bytes, big);
        }
        // At or under the cap: compressed.
        let response = text_response(full_body(small.clone()));
        let (headers, bytes) = collect(compressor.respond(offer, None, response).await).await;
        assert_eq!(headers["content-encoding"], "br");
        assert_eq!(brotli_decoded(&bytes), small);

        // An unknown length is compressed, however long it turns out.
        let chunks = vec![
            Ok(Frame::data(big.slice(..2500))),
            Ok(Frame::data(big.slice(2500..))),
        ];
        let stream = http_body_util::StreamBody::new(futures::stream::iter(chunks));
        let response = text_response(stream.boxed_unsync());
        let (headers, bytes) = collect(compressor.respond(offer, None, response).await).await;
        assert_eq!(headers["content-encoding"], "br");
        assert_eq!(brotli_decoded(&bytes), big);

        // A hit on memory past the cap gets a kept copy (built once, on a
        // blocking thread), with the weak ETag made for its entry.
        let store = CacheStore::new(1 << 22, 1 << 20, None);
        let copies = stored(&store, "/big", &big);
        for _ in 0..2 {
            let mut response = text_response(full_body(big.clone()));
            response
                .headers_mut()
                .insert(header::ETAG, "\"v1\"".parse().unwrap());
            response.extensions_mut().insert(copies.clone());
            let (headers, bytes) =
                collect(compressor.respond(offer, Some(&store), response).await).await;
            assert_eq!(headers["content-encoding"], "br");
            assert_eq!(headers["etag"], "W/\"v1\"");
            assert_eq!(brotli_decoded(&bytes), big);
        }
        assert!(copies.get(Coding::Br).is_some());
    }

    /// Streams (with their smaller windows) decode in every coding, over
    /// more than one window's worth of text.
    #[tokio::test]
    async fn each_codec_round_trips_streaming() {
        let text: Bytes = (0..40_000u32)
            .map(|i| format!("line {i} of a long stream\n"))
            .collect::<String>()
            .into();
        assert!(text.len() > 2 << STREAM_WINDOW_LOG);
        for coding in Coding::ALL {
            let chunks: Vec<Result<_, HttpError>> = text
                .chunks(64 << 10)
                .map(|c| Ok(Frame::data(text.slice_ref(c))))
                .collect();
            let body = http_body_util::StreamBody::new(futures::stream::iter(chunks));
            let packed = CompressBody::new(body.boxed_unsync(), coding)
                .collect()
                .await
                .unwrap()
                .to_bytes();
            let mut out = Vec::new();
            match coding {
                Coding::Gzip => {
                    flate2::read::GzDecoder::new(&packed[..])
                        .read_to_end(&mut out)
                        .unwrap();
                }
                Coding::Br => out = brotli_decoded(&packed),
                Coding::Zstd => out = zstd::stream::decode_all(&packed[..]).unwrap(),
            }
            assert_eq!(out, text, "{coding:?}");
            assert!(packed.len() < text.len() / 4, "{coding:?}");
        }
    }

    #[test]
    fn copies_go_with_a_hit_only_when_a_coding_may_serve_it() {
        use super::super::store::CacheKey;
        let store = CacheStore::new(1 << 20, 1 << 18, None);
        stored(&store, "/h", &Bytes::from("abc ".repeat(400)));
        let key = CacheKey::new("t", "a", "https", "x.test", "/h");
        let entry = store.get(&key, &HeaderMap::new()).unwrap();
        let pass = |method: Method, headers: &HeaderMap| hit_copies(&entry, &method, headers);
        assert!(pass(Method::GET, &accept("gzip, br")).is_some());
        assert!(pass(Method::GET, &HeaderMap::new()).is_none(), "no header");
        assert!(pass(Method::GET, &accept("identity")).is_none());
        assert!(pass(Method::GET, &accept("deflate, br;q=0")).is_none());
        assert!(pass(Method::HEAD, &accept("br")).is_none(), "no body");
    }

    #[test]
    fn weak_etag_is_the_entrys_or_made_on_the_spot() {
        let store = CacheStore::new(1 << 20, 1 << 18, None);
        let copies = stored(&store, "/e", &Bytes::from("abc ".repeat(400)));
        let mut same = HeaderMap::new();
        same.insert(header::ETAG, "\"v1\"".parse().unwrap());
        encoded_headers(&mut same, Coding::Br, Some(&copies));
        assert_eq!(same["etag"], "W/\"v1\"");
        // A revalidation brought another validator: made from that one.
        let mut other = HeaderMap::new();
        other.insert(header::ETAG, "\"v2\"".parse().unwrap());
        encoded_headers(&mut other, Coding::Br, Some(&copies));
        assert_eq!(other["etag"], "W/\"v2\"");
    }

    #[test]
    fn headers_of_an_encoded_answer() {
        let mut headers = HeaderMap::new();
        headers.insert(header::ETAG, "\"v1\"".parse().unwrap());
        headers.insert(header::ACCEPT_RANGES, "bytes".parse().unwrap());
        headers.insert(header::VARY, "Accept-Language".parse().unwrap());
        add_vary(&mut headers);
        add_vary(&mut headers);
        encoded_headers(&mut headers, Coding::Br, None);
        assert_eq!(headers["etag"], "W/\"v1\"");
        assert_eq!(headers["content-encoding"], "br");
        assert!(!headers.contains_key(header::ACCEPT_RANGES));
        let vary: Vec<_> = headers.get_all(header::VARY).iter().collect();
        assert_eq!(vary, ["Accept-Language", "accept-encoding"], "added once");
        let mut weak = HeaderMap::new();
        weak.insert(header::ETAG, "W/\"v1\"".parse().unwrap());
        encoded_headers(&mut weak, Coding::Gzip, None);
        assert_eq!(weak["etag"], "W/\"v1\"");
    }

    #[test]
    fn an_encoded_answer_has_no_strong_date_validator() {
        let modified = "Mon, 02 Nov 2026 10:00:00 GMT";
        // No ETag: Last-Modified would let `If-Range: <date>` splice
        // identity bytes onto a compressed prefix; it goes.
        let mut dated = HeaderMap::new();
        dated.insert(header::LAST_MODIFIED, modified.parse().unwrap());
        encoded_headers(&mut dated, Coding::Gzip, None);
        assert!(!dated.contains_key(header::LAST_MODIFIED));
        assert!(!dated.contains_key(header::ETAG));
        // With an ETag it stays (If-Modified-Since still works) beside the
        // weakened tag; a date If-Range never matches such a response.
        let mut tagged = HeaderMap::new();
        tagged.insert(header::ETAG, "\"v1\"".parse().unwrap());
        tagged.insert(header::LAST_MODIFIED, modified.parse().unwrap());
        encoded_headers(&mut tagged, Coding::Zstd, None);
        assert_eq!(tagged["etag"], "W/\"v1\"");
        assert_eq!(tagged[header::LAST_MODIFIED], modified);
    }
}
