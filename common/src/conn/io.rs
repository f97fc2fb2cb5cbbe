//! Deadlines on a connection's socket: the first bytes of a request must
//! come in time, and a write the client does not take must not wait
//! forever.
//!
//! hyper's header-read timeout starts only once hyper-util has read enough
//! to tell HTTP/1 from HTTP/2, so without the first-bytes deadline a client
//! that connects (or finishes its TLS handshake) and sends nothing holds a
//! connection slot forever. And hyper never gives up on a write: a client
//! that stops reading keeps the connection, its buffers and whatever feeds
//! the response. A write (or flush) that stays blocked for the send
//! deadline fails the connection with `TimedOut`.

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

pub struct DeadlineIo<I> {
    inner: I,
    first_bytes: Option<Pin<Box<Sleep>>>,
    send_timeout: Duration,
    /// Armed while a write is blocked; allocated on the first block.
    send: Option<Pin<Box<Sleep>>>,
    send_armed: bool,
}

impl<I> DeadlineIo<I> {
    /// `first_bytes`: time to the first byte read; `send_timeout`: longest a
    /// write or flush may stay blocked.
    pub fn new(inner: I, first_bytes: Duration, send_timeout: Duration) -> Self {
        Self {
            inner,
            first_bytes: Some(Box::pin(tokio::time::sleep(first_bytes))),
            send_timeout,
            send: None,
            send_armed: false,
        }
    }

    /// Passes a write's outcome through, failing it once it has been
    /// blocked for longer than the send timeout.
    fn watch_send<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        if polled.is_ready() {
            self.send_armed = false;
            return polled;
        }
        if !self.send_armed {
            let deadline = Instant::now() + self.send_timeout;
            match self.send.as_mut() {
                Some(sleep) => sleep.as_mut().reset(deadline),
                None => self.send = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
            self.send_armed = true;
        }
        let Some(sleep) = self.send.as_mut() else {
            return Poll::Pending;
        };
        ready!(sleep.as_mut().poll(cx));
        Poll::Ready(Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the client took no bytes within the send timeout",
        )))
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for DeadlineIo<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Some(deadline) = self.first_bytes.as_mut() {
            if buf.filled().len() > before {
                self.first_bytes = None;
            } else if result.is_pending() && deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no request bytes within the first-bytes deadline",
                )));
            }
        }
        result
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for DeadlineIo<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch_send(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch_send(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch_send(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch_send(cx, polled)
    }
}
