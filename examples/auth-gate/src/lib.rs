//! An auth gate at the edge: a request reaches the origin only with a
//! valid JSON Web Token, checked here, so the origin never sees the rest.
//!
//! - `Authorization: Bearer TOKEN`, an HS256 JWT signed with the app's
//!   `JWT_KEY` (a secret: `edgectl secrets set APP JWT_KEY`), whose `exp`
//!   is in the future and `nbf`, if any, in the past (60 s of leeway for
//!   clock skew), and whose `iss` and `aud` match `JWT_ISSUER` and
//!   `JWT_AUDIENCE` when those are set. Any other `alg` (`none` above
//!   all) is refused.
//! - A valid token: the request goes to `ORIGIN` + its path and query,
//!   body streamed, without the `Authorization` header and with
//!   `x-auth-subject: SUB`; the origin's answer is streamed back.
//! - No token: 401 with `WWW-Authenticate: Bearer`. A bad one: 401 with
//!   `WWW-Authenticate: Bearer error="invalid_token"` and the reason, in
//!   the header and as `{"error": "..."}`.
//!
//! Build: `cargo build --release --target wasm32-wasip2` in `examples/`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use edge_sdk::fetch::Fetch;
use edge_sdk::http::{self, HeaderValue, StatusCode};
use edge_sdk::{Body, Request, Response, log};
use hmac::{Hmac, Mac};
use serde_json::Value;

const LEEWAY_SECS: u64 = 60;

fn json(status: StatusCode, document: Value) -> Response {
    let mut resp = Response::new(Body::from(format!("{document}\n")));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn unauthorized(reason: Option<&str>) -> Response {
    let challenge = match reason {
        Some(reason) => format!("Bearer error=\"invalid_token\", error_description=\"{reason}\""),
        None => "Bearer".to_string(),
    };
    let mut resp = json(
        StatusCode::UNAUTHORIZED,
        serde_json::json!({ "error": reason.unwrap_or("a bearer token is required") }),
    );
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        resp.headers_mut()
            .insert(http::header::WWW_AUTHENTICATE, value);
    }
    resp
}

fn decode_json(part: &str) -> Result<Value, &'static str> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| "malformed token (base64)")?;
    serde_json::from_slice(&bytes).map_err(|_| "malformed token (JSON)")
}

/// The token's subject, if the token is valid now.
fn verify(token: &str, key: &[u8], now: u64) -> Result<String, &'static str> {
    let mut parts = token.split('.');
    let (Some(header), Some(claims), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("malformed token (expected three parts)");
    };
    if decode_json(header)?.get("alg").and_then(Value::as_str) != Some("HS256") {
        return Err("unsupported algorithm (HS256 only)");
    }
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| "malformed token (signature)")?;
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).map_err(|_| "bad key")?;
    mac.update(header.as_bytes());
    mac.update(b".");
    mac.update(claims.as_bytes());
    // Constant-time comparison.
    mac.verify_slice(&signature).map_err(|_| "bad signature")?;
    let claims = decode_json(claims)?;
    let number = |name| claims.get(name).and_then(Value::as_u64);
    match number("exp") {
        Some(exp) if now < exp.saturating_add(LEEWAY_SECS) => {}
        Some(_) => return Err("token expired"),
        None => return Err("token has no exp"),
    }
    if number("nbf").is_some_and(|nbf| now.saturating_add(LEEWAY_SECS) < nbf) {
        return Err("token not valid yet");
    }
    for (claim, setting) in [("iss", "JWT_ISSUER"), ("aud", "JWT_AUDIENCE")] {
        if let Some(expected) = edge_sdk::config::get(setting) {
            let matches = match claims.get(claim) {
                Some(Value::String(value)) => *value == expected,
                Some(Value::Array(values)) => values.iter().any(|v| v.as_str() == Some(&expected)),
                _ => false,
            };
            if !matches {
                return Err(if claim == "iss" {
                    "wrong issuer"
                } else {
                    "wrong audience"
                });
            }
        }
    }
    Ok(claims
        .get("sub")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string())
}

/// Headers not passed between the client and the origin: the token itself,
/// what the host sets, and hop-by-hop fields.
fn passed(name: &http::HeaderName) -> bool {
    !matches!(
        name.as_str(),
        "authorization"
            | "host"
            | "connection"
            | "keep-alive"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "proxy-authorization"
            | "content-length"
            | "x-auth-subject"
    )
}

fn gate(req: Request) -> Response {
    let (Some(key), Some(origin)) = (
        edge_sdk::config::secret("JWT_KEY"),
        edge_sdk::config::get("ORIGIN"),
    ) else {
        return json(
            StatusCode::INTERNAL_SERVER_ERROR,
            serde_json::json!({ "error": "JWT_KEY and ORIGIN must be set" }),
        );
    };
    let Some(token) = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return unauthorized(None);
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let subject = match verify(token.trim(), key.as_bytes(), now) {
        Ok(subject) => subject,
        Err(reason) => {
            log::info("token refused").field("reason", reason).emit();
            return unauthorized(Some(reason));
        }
    };

    let (parts, body) = req.into_parts();
    let target = format!(
        "{}{}",
        origin.trim_end_matches('/'),
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
    );
    let mut upstream = http::Request::builder().method(parts.method).uri(&target);
    for (name, value) in parts.headers.iter().filter(|(name, _)| passed(name)) {
        upstream = upstream.header(name, value);
    }
    upstream = upstream.header("x-auth-subject", subject.as_str());
    let Ok(upstream) = upstream.body(Body::from(body)) else {
        return json(
            StatusCode::INTERNAL_SERVER_ERROR,
            serde_json::json!({ "error": "ORIGIN is not a URL" }),
        );
    };
    match Fetch::new(upstream).timeout(Duration::from_secs(10)).send() {
        Ok(answer) => {
            let (parts, body) = answer.into_parts();
            let mut resp = Response::new(Body::from(body));
            *resp.status_mut() = parts.status;
            for (name, value) in parts.headers.iter().filter(|(name, _)| passed(name)) {
                resp.headers_mut().append(name, value.clone());
            }
            resp
        }
        Err(err) => {
            eprintln!("auth-gate: {target}: {err}");
            json(
                StatusCode::BAD_GATEWAY,
                serde_json::json!({ "error": "the origin did not answer" }),
            )
        }
    }
}

edge_sdk::handler!(gate);
