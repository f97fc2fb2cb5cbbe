//! Glue between the wasi:http incoming-handler export and a handler on
//! `http` types: convert the request in, write the response out.

use std::io::Write;

use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam, Scheme,
};
use wasip2::io::streams::{OutputStream, StreamError};

use crate::body::{Body, CHUNK_BYTES, IncomingBody};
use crate::{Request, Response};

/// Runs `handler` for one request. Called by the code [`crate::handler!`] expands to.
pub fn serve(
    request: IncomingRequest,
    response_out: ResponseOutparam,
    handler: impl FnOnce(Request) -> Response,
) {
    let request = match to_http_request(request) {
        Ok(request) => request,
        Err(msg) => {
            eprintln!("edge-sdk: could not read the request: {msg}");
            let mut resp = Response::new(Body::from(format!("bad request: {msg}\n")));
            *resp.status_mut() = http::StatusCode::BAD_REQUEST;
            write_response(resp, response_out);
            return;
        }
    };
    write_response(handler(request), response_out);
}

fn to_http_request(request: IncomingRequest) -> Result<Request, String> {
    let method = match request.method() {
        Method::Get => http::Method::GET,
        Method::Head => http::Method::HEAD,
        Method::Post => http::Method::POST,
        Method::Put => http::Method::PUT,
        Method::Delete => http::Method::DELETE,
        Method::Connect => http::Method::CONNECT,
        Method::Options => http::Method::OPTIONS,
        Method::Trace => http::Method::TRACE,
        Method::Patch => http::Method::PATCH,
        Method::Other(other) => {
            http::Method::from_bytes(other.as_bytes()).map_err(|e| e.to_string())?
        }
    };
    let mut uri = http::Uri::builder();
    if let Some(scheme) = request.scheme() {
        uri = uri.scheme(
            match scheme {
                Scheme::Http => "http".to_string(),
                Scheme::Https => "https".to_string(),
                Scheme::Other(other) => other,
            }
            .as_str(),
        );
    }
    if let Some(authority) = request.authority() {
        uri = uri.authority(authority);
    }
    uri = uri.path_and_query(request.path_with_query().unwrap_or_else(|| "/".into()));

    let mut builder = http::Request::builder()
        .method(method)
        .uri(uri.build().map_err(|e| e.to_string())?);
    for (name, value) in request.headers().entries() {
        builder = builder.header(name, value);
    }
    let body = IncomingBody::new(request.consume().ok());
    builder.body(body).map_err(|e| e.to_string())
}

fn write_response(response: Response, response_out: ResponseOutparam) {
    let (parts, body) = response.into_parts();
    let entries: Vec<(String, Vec<u8>)> = parts
        .headers
        .iter()
        .map(|(name, value)| (name.as_str().to_string(), value.as_bytes().to_vec()))
        .collect();
    let headers = match Fields::from_list(&entries) {
        Ok(headers) => headers,
        Err(err) => {
            // A header the host refuses (hop-by-hop, malformed): say so rather
            // than silently dropping it.
            eprintln!("edge-sdk: response header refused by the host: {err:?}");
            let resp = OutgoingResponse::new(Fields::new());
            let _ = resp.set_status_code(500);
            ResponseOutparam::set(response_out, Ok(resp));
            return;
        }
    };
    let resp = OutgoingResponse::new(headers);
    let _ = resp.set_status_code(parts.status.as_u16());
    let Ok(outgoing) = resp.body() else {
        eprintln!("edge-sdk: response body already taken");
        return;
    };
    ResponseOutparam::set(response_out, Ok(resp));

    let Ok(mut stream) = outgoing.write() else {
        eprintln!("edge-sdk: response body stream already taken");
        return;
    };
    let written = write_body(&mut stream, body);
    drop(stream);
    match written {
        Ok(()) => {
            if let Err(err) = OutgoingBody::finish(outgoing, None) {
                eprintln!("edge-sdk: finishing the response body: {err:?}");
            }
        }
        // Dropping the body without `finish` tells the host the response is
        // incomplete, so the client sees a broken stream, not a short body.
        Err(msg) => eprintln!("edge-sdk: writing the response body: {msg}"),
    }
}

pub(crate) fn write_body(stream: &mut OutputStream, body: Body) -> Result<(), String> {
    match body {
        Body::Empty => Ok(()),
        Body::Bytes(bytes) => write_all(stream, &bytes),
        Body::Chunks(chunks) => {
            for chunk in chunks {
                write_all(stream, &chunk)?;
            }
            Ok(())
        }
        Body::Incoming(incoming) => {
            let Some(input) = incoming.stream() else {
                return Ok(());
            };
            // The host copies stream to stream: the bytes never enter guest memory.
            loop {
                match stream.blocking_splice(input, CHUNK_BYTES) {
                    Ok(_) => {}
                    Err(StreamError::Closed) => break,
                    Err(StreamError::LastOperationFailed(e)) => return Err(e.to_debug_string()),
                }
            }
            stream.blocking_flush().map_err(|e| format!("{e:?}"))
        }
    }
}

fn write_all(stream: &mut OutputStream, bytes: &[u8]) -> Result<(), String> {
    stream.write_all(bytes).map_err(|e| e.to_string())?;
    stream.flush().map_err(|e| e.to_string())
}
