//! Image resizing at the edge: `GET /PATH?w=WIDTH[&format=png|jpeg]`
//! fetches `ORIGIN/PATH`, scales it to WIDTH pixels wide (the height
//! follows the aspect ratio) and answers it as PNG or JPEG (default: the
//! source's format), with `Cache-Control: public, max-age=86400`: the
//! node's cache keeps each size and format once, keyed by the URL, so the
//! work is done once per variant, and the original's fetch is cached too.
//!
//! Refusals: WIDTH outside 1..=2000 or an unknown format 400; the origin's
//! 404 is 404; a source over 10 MiB, or over 8192 pixels a side, 413; one
//! that is not a PNG or JPEG 415; the origin failing 502.
//!
//! Config: `ORIGIN`, which the app's `outbound` allow-list must name.
//!
//! Build: `cargo build --release --target wasm32-wasip2` in `examples/`.

use std::io::Cursor;
use std::time::Duration;

use edge_sdk::cache::{CacheControl, CacheHeaders};
use edge_sdk::fetch::Fetch;
use edge_sdk::http::{self, HeaderValue, StatusCode};
use edge_sdk::{Body, BodyError, Request, Response};
use image::{ImageFormat, ImageReader, Limits, imageops::FilterType};

const MAX_SOURCE_BYTES: usize = 10 << 20;
const MAX_SIDE: u32 = 8192;
const MAX_WIDTH: u32 = 2000;

fn text(status: StatusCode, body: String) -> Response {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    resp
}

struct Query {
    width: u32,
    format: Option<ImageFormat>,
}

fn query(req: &Request) -> Result<Query, String> {
    let mut width = None;
    let mut format = None;
    for pair in req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        match pair.split_once('=') {
            Some(("w", value)) => {
                width = Some(
                    value
                        .parse::<u32>()
                        .ok()
                        .filter(|w| (1..=MAX_WIDTH).contains(w))
                        .ok_or(format!("w must be 1 to {MAX_WIDTH}"))?,
                );
            }
            Some(("format", "png")) => format = Some(ImageFormat::Png),
            Some(("format", "jpeg" | "jpg")) => format = Some(ImageFormat::Jpeg),
            Some(("format", other)) => return Err(format!("unknown format {other:?} (png, jpeg)")),
            _ => {}
        }
    }
    Ok(Query {
        width: width.ok_or("w is required")?,
        format,
    })
}

fn resize(req: Request) -> Response {
    let Some(origin) = edge_sdk::config::get("ORIGIN") else {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ORIGIN is not set\n".into(),
        );
    };
    let query = match query(&req) {
        Ok(query) => query,
        Err(msg) => return text(StatusCode::BAD_REQUEST, format!("{msg}\n")),
    };
    let source_url = format!("{}{}", origin.trim_end_matches('/'), req.uri().path());
    let Ok(fetch) = http::Request::get(&source_url).body(Body::Empty) else {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ORIGIN is not a URL\n".into(),
        );
    };
    let source = match Fetch::new(fetch).timeout(Duration::from_secs(10)).send() {
        Ok(source) => source,
        Err(err) => {
            eprintln!("image-resize: {source_url}: {err}");
            return text(
                StatusCode::BAD_GATEWAY,
                "the origin did not answer\n".into(),
            );
        }
    };
    match source.status() {
        StatusCode::OK => {}
        StatusCode::NOT_FOUND => return text(StatusCode::NOT_FOUND, "no such image\n".into()),
        other => {
            return text(
                StatusCode::BAD_GATEWAY,
                format!("the origin answered {}\n", other.as_u16()),
            );
        }
    }
    let bytes = match source.into_body().bytes(MAX_SOURCE_BYTES) {
        Ok(bytes) => bytes,
        Err(BodyError::TooLarge { limit }) => {
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("image over {limit} bytes\n"),
            );
        }
        Err(err) => return text(StatusCode::BAD_GATEWAY, format!("{err}\n")),
    };

    let Ok(mut reader) = ImageReader::new(Cursor::new(&bytes)).with_guessed_format() else {
        return text(StatusCode::UNSUPPORTED_MEDIA_TYPE, "not an image\n".into());
    };
    let source_format = match reader.format() {
        Some(format @ (ImageFormat::Png | ImageFormat::Jpeg)) => format,
        _ => {
            return text(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "not a PNG or JPEG\n".into(),
            );
        }
    };
    // Bounds on what decoding may allocate: a small file can claim a huge
    // canvas (a decompression bomb).
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(64 << 20);
    reader.limits(limits);
    let image = match reader.decode() {
        Ok(image) => image,
        Err(image::ImageError::Limits(_)) => {
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("image over {MAX_SIDE} pixels a side\n"),
            );
        }
        Err(err) => return text(StatusCode::UNSUPPORTED_MEDIA_TYPE, format!("{err}\n")),
    };
    let height = (u64::from(image.height()) * u64::from(query.width)
        / u64::from(image.width().max(1)))
    .clamp(1, u64::from(MAX_SIDE)) as u32;
    let resized = image.resize_exact(query.width, height, FilterType::Triangle);
    let format = query.format.unwrap_or(source_format);
    let mut out = Cursor::new(Vec::new());
    let encoded = match format {
        // JPEG has no alpha channel.
        ImageFormat::Jpeg => resized.to_rgb8().write_to(&mut out, format),
        _ => resized.write_to(&mut out, format),
    };
    if let Err(err) = encoded {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding: {err}\n"),
        );
    }
    let mut resp = Response::new(Body::from(out.into_inner()));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(format.to_mime_type()),
    );
    resp.cache_control(
        &CacheControl::new()
            .public()
            .max_age(Duration::from_secs(86_400)),
    );
    resp
}

edge_sdk::handler!(resize);
