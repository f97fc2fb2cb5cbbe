//! One access line per request, written when its response body ends (or
//! is dropped: a client that went away mid-body): the bytes really sent
//! and the duration to the last byte. Only wraps the responses of tailed
//! apps, or every response when the operator's access log is on.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use edge_common::api::{AccessLine, LogEvent};
use http_body::{Body, Frame, SizeHint};
use tokio::time::Instant;

use super::AppTail;

/// What is known of a request when its response starts.
pub struct AccessRecord {
    /// Ship the line (the app is tailed).
    pub tail: Option<Arc<AppTail>>,
    /// Write it to the node's log too.
    pub to_log: bool,
    pub tenant: Arc<str>,
    pub app: Arc<str>,
    pub request_id: String,
    pub method: String,
    pub path: String,
    pub status: u16,
    /// From the cache layer's own record of the response, never a header
    /// a guest or an origin could set.
    pub cache: &'static str,
    /// The node's own refusal code, likewise.
    pub error_code: Option<&'static str>,
    pub started: Instant,
    pub time_ms: u64,
}

impl AccessRecord {
    fn finish(&self, bytes: u64) {
        let duration_ms = self.started.elapsed().as_millis() as u64;
        if self.to_log {
            tracing::info!(
                target: "access",
                tenant = %self.tenant,
                app = %self.app,
                request_id = %self.request_id,
                method = %self.method,
                path = %self.path,
                status = self.status,
                duration_ms,
                cache = self.cache,
                bytes,
                error_code = self.error_code.unwrap_or(""),
                "{} {} {}",
                self.method,
                self.path,
                self.status,
            );
        }
        let Some(tail) = &self.tail else { return };
        if !tail.admit() {
            return;
        }
        let mut event = LogEvent::Access(AccessLine {
            time_ms: self.time_ms,
            node: String::new(),
            app: tail.app.clone(),
            request_id: self.request_id.clone(),
            method: self.method.clone(),
            path: self.path.clone(),
            status: self.status,
            duration_ms,
            cache: self.cache.to_string(),
            bytes,
            error_code: self.error_code.map(str::to_string),
        });
        event.bound();
        tail.send(event);
    }
}

/// A response body that counts what it sends and records the request
/// once it ends.
pub struct AccessBody<B> {
    inner: B,
    bytes: u64,
    record: Option<AccessRecord>,
}

impl<B> AccessBody<B> {
    pub fn new(inner: B, record: AccessRecord) -> Self {
        Self {
            inner,
            bytes: 0,
            record: Some(record),
        }
    }

    fn finish(&mut self) {
        if let Some(record) = self.record.take() {
            record.finish(self.bytes);
        }
    }
}

impl<B> Drop for AccessBody<B> {
    fn drop(&mut self) {
        self.finish();
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for AccessBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.bytes += data.len() as u64;
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => self.finish(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
