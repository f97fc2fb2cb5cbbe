//! What a connection is doing, as its driver needs to know it: how many
//! requests are in progress (for the idle timeout), and whether a response
//! body has waited too long for the client to take its next bytes (for the
//! response idle timeout).
//!
//! The driver cannot watch each body's clock: a body the client does not
//! take is not polled at all (HTTP/2 with a shut window never polls it;
//! HTTP/1 stops once its write buffer is full). So a body counts itself, in
//! one of four buckets by the driver's current epoch, while it waits for its
//! next poll; the driver advances the epoch every `response_idle / 2` and
//! finds a stall when a bucket from two epochs back is still occupied. Per
//! frame that is two atomic adds on the connection's own counters, and no
//! timer per body.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};

/// Epoch buckets: the one being filled, the two being watched, and the one
/// checked (and found empty, or the connection is gone) at the last tick.
const BUCKETS: usize = 4;

/// The shared state of one connection.
pub struct Activity {
    in_flight: AtomicU32,
    /// Requests ever started: unchanged between two looks, with none in
    /// flight at either, means none ran in between. No clock is read per
    /// request.
    started: AtomicU64,
    epoch: AtomicU32,
    waiting: [AtomicU32; BUCKETS],
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            in_flight: AtomicU32::new(0),
            started: AtomicU64::new(0),
            epoch: AtomicU32::new(0),
            waiting: Default::default(),
        })
    }

    /// Marks a request in progress until the guard (moved into its response
    /// body with [`TrackedBody`]) is dropped.
    pub fn request(self: &Arc<Self>) -> RequestGuard {
        self.started.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        RequestGuard(self.clone())
    }

    /// Requests in progress.
    #[cfg(test)]
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// A look for idleness: `Some(n)`, the requests started so far, when
    /// none is in progress; `None` while one is. The same `Some` twice
    /// means the connection was idle for all the time between.
    pub(super) fn idle_mark(&self) -> Option<u64> {
        // Read before the count: a request that starts in between shows up
        // as a new mark next time.
        let started = self.started.load(Ordering::Acquire);
        (self.in_flight.load(Ordering::Acquire) == 0).then_some(started)
    }

    /// Moves to the next epoch; true when a body that started waiting two
    /// epochs ago (at least two check periods) still waits.
    pub(super) fn advance_and_check_stalled(&self) -> bool {
        let next = self.epoch.load(Ordering::Relaxed).wrapping_add(1);
        // The bucket `next` fills from now on held epoch `next - 4`, which
        // the previous tick checked and found empty.
        self.epoch.store(next, Ordering::Release);
        let watched = next.wrapping_sub(3) as usize % BUCKETS;
        self.waiting[watched].load(Ordering::Acquire) > 0
    }

    fn start_waiting(&self) -> u8 {
        let bucket = self.epoch.load(Ordering::Acquire) as usize % BUCKETS;
        self.waiting[bucket].fetch_add(1, Ordering::AcqRel);
        bucket as u8
    }

    fn stop_waiting(&self, bucket: u8) {
        self.waiting[bucket as usize].fetch_sub(1, Ordering::AcqRel);
    }
}

/// A request in progress on its connection.
pub struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body on its way to the client: holds its request's place in
/// [`Activity`] until it is done or dropped, and counts itself as waiting
/// on the client from the moment it is handed over (HTTP/2 may never poll
/// it) and after every frame it gives, until it is polled again.
pub struct TrackedBody<B> {
    inner: B,
    request: RequestGuard,
    waiting: Option<u8>,
}

impl<B: Body> TrackedBody<B> {
    pub fn new(inner: B, request: RequestGuard) -> Self {
        let waiting = (!inner.is_end_stream()).then(|| request.0.start_waiting());
        Self {
            inner,
            request,
            waiting,
        }
    }
}

impl<B> TrackedBody<B> {
    fn stop_waiting(&mut self) {
        if let Some(bucket) = self.waiting.take() {
            self.request.0.stop_waiting(bucket);
        }
    }
}

impl<B> Drop for TrackedBody<B> {
    fn drop(&mut self) {
        self.stop_waiting();
    }
}

impl<B: Body + Unpin> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.get_mut();
        this.stop_waiting();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        // Pending is the backend's time, not the client's; after the last
        // frame there is nothing left to wait for.
        if matches!(polled, Poll::Ready(Some(Ok(_)))) && !this.inner.is_end_stream() {
            this.waiting = Some(this.request.0.start_waiting());
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
