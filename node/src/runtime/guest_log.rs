//! Guest stdout/stderr → the node's log, one event per line, tagged with the
//! tenant, app and request id. Bounded twice: a line longer than
//! `guest_log_line_bytes` is cut, and a request that writes more than
//! `guest_log_bytes_per_request` has the rest dropped with one notice, so a
//! chatty guest can neither grow the node's memory nor flood its log.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use edge_common::api::{GuestLine, GuestStream, LogEvent};
use edge_common::text::terminal_safe;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

#[derive(Debug, Clone, Copy)]
pub struct GuestLogLimits {
    pub line_bytes: usize,
    pub bytes_per_request: usize,
}

/// Who is logging.
#[derive(Clone)]
pub struct LogContext {
    pub tenant: Arc<str>,
    pub app: Arc<str>,
    pub request_id: crate::request_id::RequestId,
    /// Set when someone tails the app: its lines are shipped too.
    pub tail: Option<Arc<crate::logs::AppTail>>,
    pub limits: GuestLogLimits,
}

struct Shared {
    ctx: LogContext,
    budget_left: AtomicUsize,
    notice_sent: AtomicBool,
}

/// The stdout or stderr of one request's guest.
pub struct GuestLog {
    shared: Arc<Shared>,
    stream: &'static str,
}

impl GuestLog {
    /// stdout and stderr, sharing one per-request budget.
    pub fn pair(ctx: LogContext) -> (GuestLog, GuestLog) {
        let shared = Arc::new(Shared {
            budget_left: AtomicUsize::new(ctx.limits.bytes_per_request),
            notice_sent: AtomicBool::new(false),
            ctx,
        });
        (
            GuestLog {
                shared: shared.clone(),
                stream: "stdout",
            },
            GuestLog {
                shared,
                stream: "stderr",
            },
        )
    }

    fn writer(&self) -> LineWriter {
        LineWriter {
            shared: self.shared.clone(),
            stream: self.stream,
            line: Vec::new(),
            cut: false,
        }
    }
}

impl IsTerminal for GuestLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestLog {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.writer())
    }

    // Overridden so a guest's stdout is a plain in-memory sink: the default
    // adapter spawns a task per stream, i.e. per request.
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.writer())
    }
}

/// Splits written bytes into lines and logs each complete line.
struct LineWriter {
    shared: Arc<Shared>,
    stream: &'static str,
    line: Vec<u8>,
    cut: bool,
}

impl LineWriter {
    fn push(&mut self, mut bytes: &[u8]) {
        let max = self.shared.ctx.limits.line_bytes;
        while !bytes.is_empty() {
            let (chunk, newline) = match bytes.iter().position(|&b| b == b'\n') {
                Some(i) => (&bytes[..i], true),
                None => (bytes, false),
            };
            let room = max.saturating_sub(self.line.len());
            if chunk.len() > room {
                self.cut = true;
            }
            self.line.extend_from_slice(&chunk[..chunk.len().min(room)]);
            bytes = &bytes[chunk.len() + usize::from(newline)..];
            if newline {
                self.emit();
            }
        }
    }

    fn emit(&mut self) {
        let shared = &self.shared;
        let len = self.line.len();
        let charged =
            shared
                .budget_left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                    left.checked_sub(len.max(1))
                });
        if charged.is_ok() {
            let lossy = String::from_utf8_lossy(&self.line);
            // Escaped for the node's log; a tail gets the line as written
            // (its JSON escapes it, and `edgectl logs` cleans it for a
            // terminal).
            let line = lossy.trim_end_matches('\r');
            let ctx = &shared.ctx;
            tracing::info!(
                target: "guest",
                tenant = %ctx.tenant,
                app = %ctx.app,
                request_id = %ctx.request_id,
                stream = self.stream,
                cut = self.cut,
                "{}",
                terminal_safe(line),
            );
            if let Some(tail) = &ctx.tail {
                self.ship(tail, line);
            }
        } else if !shared.notice_sent.swap(true, Ordering::Relaxed) {
            let ctx = &shared.ctx;
            tracing::warn!(
                target: "guest",
                tenant = %ctx.tenant,
                app = %ctx.app,
                request_id = %ctx.request_id,
                limit_bytes = ctx.limits.bytes_per_request,
                "guest log output over the per-request limit; the rest is dropped",
            );
        }
        self.line.clear();
        self.cut = false;
    }

    fn ship(&self, tail: &Arc<crate::logs::AppTail>, text: &str) {
        let ctx = &self.shared.ctx;
        if !tail.admit() {
            return;
        }
        let app = tail.app.clone();
        let stream = if self.stream == "stderr" {
            GuestStream::Stderr
        } else {
            GuestStream::Stdout
        };
        let mut event = LogEvent::Log(GuestLine {
            time_ms: crate::logs::now_ms(),
            node: String::new(),
            app,
            request_id: ctx.request_id.to_string(),
            stream,
            line: text.to_string(),
            cut: self.cut,
        });
        event.bound();
        tail.send(event);
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.line.is_empty() {
            self.emit();
        }
    }
}

impl AsyncWrite for LineWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.get_mut().push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LineWriter {
    async fn ready(&mut self) {}
}

#[wasmtime_wasi::async_trait]
impl OutputStream for LineWriter {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 << 10)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer(line_bytes: usize, bytes_per_request: usize) -> LineWriter {
        let ctx = LogContext {
            tenant: "t".into(),
            app: "a".into(),
            request_id: crate::request_id::RequestId(1),
            tail: None,
            limits: GuestLogLimits {
                line_bytes,
                bytes_per_request,
            },
        };
        GuestLog::pair(ctx).0.writer()
    }

    #[test]
    fn lines_are_cut_at_the_limit() {
        let mut w = writer(4, 1000);
        w.push(b"abcdefgh");
        assert_eq!(w.line, b"abcd");
        assert!(w.cut);
        w.push(b"\nxy");
        assert_eq!(w.line, b"xy");
        assert!(!w.cut);
    }

    #[test]
    fn the_request_budget_is_shared_and_bounded() {
        let mut w = writer(100, 10);
        w.push(b"12345\n");
        assert_eq!(w.shared.budget_left.load(Ordering::Relaxed), 5);
        w.push(b"123456\n");
        assert!(w.shared.notice_sent.load(Ordering::Relaxed));
        assert_eq!(w.shared.budget_left.load(Ordering::Relaxed), 5);
    }
}
