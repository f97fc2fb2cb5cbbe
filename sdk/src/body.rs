//! Request and response bodies.

use std::io::Read;

use wasip2::http::types::{IncomingBody as WasiIncomingBody, IncomingResponse};
use wasip2::io::streams::{InputStream, StreamError};

/// The streaming body of the incoming request, or of an outbound
/// request's response ([`crate::fetch`]).
///
/// Read it with [`std::io::Read`], collect it with [`IncomingBody::bytes`], or
/// hand it to a response ([`Body::from`]) to stream it straight back out.
pub struct IncomingBody {
    // Field order matters: the stream is a child of the body resource, and
    // the body of the response it came from, so they are dropped in this
    // order.
    stream: Option<InputStream>,
    _body: Option<WasiIncomingBody>,
    _response: Option<IncomingResponse>,
}

/// Reading the request body failed, or it was larger than asked for.
#[derive(Debug)]
pub enum BodyError {
    TooLarge { limit: usize },
    Stream(String),
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::TooLarge { limit } => write!(f, "body larger than {limit} bytes"),
            BodyError::Stream(msg) => write!(f, "reading body: {msg}"),
        }
    }
}

impl std::error::Error for BodyError {}

impl IncomingBody {
    pub(crate) fn new(body: Option<WasiIncomingBody>) -> Self {
        let stream = body.as_ref().and_then(|b| b.stream().ok());
        Self {
            stream,
            _body: body,
            _response: None,
        }
    }

    pub(crate) fn from_response(
        body: Option<WasiIncomingBody>,
        response: IncomingResponse,
    ) -> Self {
        Self {
            _response: Some(response),
            ..Self::new(body)
        }
    }

    /// Reads the whole body into memory, refusing more than `limit` bytes.
    pub fn bytes(mut self, limit: usize) -> Result<Vec<u8>, BodyError> {
        let mut buf = Vec::new();
        while let Some(chunk) = self.next_chunk()? {
            if buf.len() + chunk.len() > limit {
                return Err(BodyError::TooLarge { limit });
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf)
    }

    /// Reads the whole body as UTF-8 text (lossily), refusing more than `limit` bytes.
    pub fn text(self, limit: usize) -> Result<String, BodyError> {
        self.bytes(limit)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    /// The next chunk of the body, `None` at its end.
    pub fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, BodyError> {
        let Some(stream) = &self.stream else {
            return Ok(None);
        };
        match stream.blocking_read(CHUNK_BYTES) {
            Ok(chunk) => Ok(Some(chunk)),
            Err(StreamError::Closed) => Ok(None),
            Err(StreamError::LastOperationFailed(e)) => Err(BodyError::Stream(e.to_debug_string())),
        }
    }

    pub(crate) fn stream(&self) -> Option<&InputStream> {
        self.stream.as_ref()
    }
}

impl Read for IncomingBody {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match &mut self.stream {
            Some(stream) => stream.read(buf),
            None => Ok(0),
        }
    }
}

/// How much to ask the host for per read: large enough that a multi-megabyte
/// body is a handful of host calls, small enough to stay well under the
/// instance's memory limit.
pub(crate) const CHUNK_BYTES: u64 = 64 * 1024;

/// A response body.
pub enum Body {
    Empty,
    Bytes(Vec<u8>),
    /// Streams the request body back out as it arrives, without buffering it.
    Incoming(IncomingBody),
    /// Chunks produced on demand, for bodies too large to hold at once.
    Chunks(Box<dyn Iterator<Item = Vec<u8>>>),
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Body::Empty => f.write_str("Body::Empty"),
            Body::Bytes(bytes) => write!(f, "Body::Bytes({} bytes)", bytes.len()),
            Body::Incoming(_) => f.write_str("Body::Incoming"),
            Body::Chunks(_) => f.write_str("Body::Chunks"),
        }
    }
}

impl Body {
    /// A body whose chunks come from `chunks`, written as they are produced.
    pub fn from_chunks(chunks: impl Iterator<Item = Vec<u8>> + 'static) -> Self {
        Body::Chunks(Box::new(chunks))
    }
}

impl From<&'static str> for Body {
    fn from(s: &'static str) -> Self {
        Body::Bytes(s.as_bytes().to_vec())
    }
}

impl From<String> for Body {
    fn from(s: String) -> Self {
        Body::Bytes(s.into_bytes())
    }
}

impl From<Vec<u8>> for Body {
    fn from(b: Vec<u8>) -> Self {
        Body::Bytes(b)
    }
}

impl From<IncomingBody> for Body {
    fn from(b: IncomingBody) -> Self {
        Body::Incoming(b)
    }
}

impl From<()> for Body {
    fn from(_: ()) -> Self {
        Body::Empty
    }
}
