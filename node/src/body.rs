//! Body wrappers on the request path.
//!
//! [`LimitedRequestBody`] enforces the app's request-body limit while the
//! body streams in (a `Content-Length` is checked up front by dispatch; a
//! chunked or lying body is caught here). [`GuardedResponseBody`] enforces
//! the response-body limit and makes a body the guest failed to finish
//! end in an error. (The admission permits are held by the guest task,
//! not by the body.)

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::Sleep;

use crate::error::ResponseBody;

type HttpError = wasmtime_wasi_http::Error;

/// The `Content-Length` a request or response declares, if it is a number.
pub fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Bytes a body may still carry.
struct ByteBudget {
    remaining: u64,
    limit: u64,
}

impl ByteBudget {
    fn new(limit: u64) -> Self {
        Self {
            remaining: limit,
            limit,
        }
    }

    /// Charges a frame's data; false once the body goes over the limit.
    fn take(&mut self, frame: &Frame<Bytes>) -> bool {
        let len = frame.data_ref().map_or(0, |d| d.len() as u64);
        match self.remaining.checked_sub(len) {
            Some(left) => {
                self.remaining = left;
                true
            }
            None => {
                self.remaining = 0;
                false
            }
        }
    }
}

/// How a request body ended badly, if it did; shared between the body (in
/// the guest's store) and dispatch, which answers for it.
#[derive(Clone, Default)]
pub struct RequestBodyStatus(Arc<AtomicU8>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestBodyFailure {
    TooLarge,
    IdleTimeout,
    /// The client's body failed to arrive whole: bad chunked framing, or
    /// the connection closed mid-body.
    Malformed,
}

impl RequestBodyStatus {
    fn set(&self, failure: RequestBodyFailure) {
        let code = match failure {
            RequestBodyFailure::TooLarge => 1,
            RequestBodyFailure::IdleTimeout => 2,
            RequestBodyFailure::Malformed => 3,
        };
        self.0.store(code, Ordering::Relaxed);
    }

    pub fn failure(&self) -> Option<RequestBodyFailure> {
        match self.0.load(Ordering::Relaxed) {
            1 => Some(RequestBodyFailure::TooLarge),
            2 => Some(RequestBodyFailure::IdleTimeout),
            3 => Some(RequestBodyFailure::Malformed),
            _ => None,
        }
    }
}

/// A request body that fails once more than `limit` bytes arrive, or when
/// no byte arrives for `idle_timeout` while it is being read.
pub struct LimitedRequestBody<B> {
    inner: B,
    budget: ByteBudget,
    idle_timeout: Duration,
    idle: Option<Pin<Box<Sleep>>>,
    status: RequestBodyStatus,
}

impl<B> LimitedRequestBody<B> {
    pub fn new(inner: B, limit: u64, idle_timeout: Duration, status: RequestBodyStatus) -> Self {
        Self {
            inner,
            budget: ByteBudget::new(limit),
            idle_timeout,
            idle: None,
            status,
        }
    }
}

impl<B> Body for LimitedRequestBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<HttpError>,
{
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.idle = None;
                if !this.budget.take(&frame) {
                    this.status.set(RequestBodyFailure::TooLarge);
                    let limit = this.budget.limit;
                    return Poll::Ready(Some(Err(HttpError::HttpRequestBodySize(Some(limit)))));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) => {
                // Only the client's connection feeds this body: whatever
                // failed (hyper's framing checks, a closed connection), it
                // was the client's body.
                this.status.set(RequestBodyFailure::Malformed);
                Poll::Ready(Some(Err(err.into())))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                // The clock runs only while someone waits for the next frame.
                let timeout = this.idle_timeout;
                let idle = this
                    .idle
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if idle.as_mut().poll(cx).is_ready() {
                    this.status.set(RequestBodyFailure::IdleTimeout);
                    return Poll::Ready(Some(Err(HttpError::ConnectionReadTimeout)));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The guest's response body on its way to the client. It ends in an error
/// (which aborts the stream: HTTP/1 closes the connection without the final
/// chunk, HTTP/2 resets the stream) once more than `limit` bytes go out, or
/// when the guest failed (trapped, ran out of time) before finishing it:
/// wasi:http ends the stream when the store goes away, and a truncated body
/// must not look whole.
pub struct GuardedResponseBody {
    inner: ResponseBody,
    budget: ByteBudget,
    guest_failed: Arc<AtomicBool>,
    /// Counts the cut-off (`edge_limit_rejections_total`).
    exceeded: prometheus::IntCounter,
}

impl GuardedResponseBody {
    pub fn new(
        inner: ResponseBody,
        limit: u64,
        guest_failed: Arc<AtomicBool>,
        exceeded: prometheus::IntCounter,
    ) -> Self {
        Self {
            inner,
            budget: ByteBudget::new(limit),
            guest_failed,
            exceeded,
        }
    }
}

impl Body for GuardedResponseBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if !this.budget.take(&frame) {
                    this.exceeded.inc();
                    let limit = this.budget.limit;
                    return Poll::Ready(Some(Err(HttpError::HttpResponseBodySize(Some(limit)))));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            // The guest task records its failure before it drops the store,
            // which is what ends the inner stream.
            Poll::Ready(None) if this.guest_failed.load(Ordering::Acquire) => {
                Poll::Ready(Some(Err(HttpError::HttpResponseIncomplete)))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream() && !self.guest_failed.load(Ordering::Acquire)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full, StreamBody};

    const IDLE: Duration = Duration::from_secs(30);

    #[tokio::test]
    async fn request_bodies_stop_at_the_limit() {
        let chunks = (0..4).map(|_| Ok::<_, HttpError>(Frame::data(Bytes::from(vec![0u8; 100]))));
        let body = StreamBody::new(futures::stream::iter(chunks));
        let status = RequestBodyStatus::default();
        let limited = LimitedRequestBody::new(body, 250, IDLE, status.clone());
        let err = limited.collect().await.expect_err("over the limit");
        assert!(matches!(err, HttpError::HttpRequestBodySize(Some(250))));
        assert_eq!(status.failure(), Some(RequestBodyFailure::TooLarge));

        let status = RequestBodyStatus::default();
        let exact = LimitedRequestBody::new(
            Full::new(Bytes::from(vec![0u8; 250])).map_err(HttpError::from),
            250,
            IDLE,
            status.clone(),
        );
        assert_eq!(exact.collect().await.unwrap().to_bytes().len(), 250);
        assert_eq!(status.failure(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_request_body_times_out() {
        let stalled =
            StreamBody::new(futures::stream::pending::<Result<Frame<Bytes>, HttpError>>());
        let status = RequestBodyStatus::default();
        let body = LimitedRequestBody::new(stalled, 1000, IDLE, status.clone());
        let err = body.collect().await.expect_err("idle timeout");
        assert!(matches!(err, HttpError::ConnectionReadTimeout));
        assert_eq!(status.failure(), Some(RequestBodyFailure::IdleTimeout));
    }

    #[tokio::test]
    async fn response_bodies_stop_at_the_limit_and_report_once() {
        let counter = prometheus::IntCounter::new("t", "t").unwrap();
        let body = crate::error::full_body(vec![1u8; 300]);
        let guarded = GuardedResponseBody::new(body, 200, Arc::default(), counter.clone());
        assert!(guarded.collect().await.is_err());
        assert_eq!(counter.get(), 1);
    }
}
