//! Serving client connections so that no client can hold what others need:
//! the edge node's listeners and the control plane's API share this code.
//!
//! - [`ConnectionSlots`]: a node-wide cap and a per-client-address cap,
//!   taken when a connection is accepted, released when it ends;
//! - [`serve`], with `DeadlineIo`: a connection must send its first bytes
//!   in time, and every write toward the client must make progress in
//!   time; with `Activity`: a connection with no request in progress
//!   (HTTP/1) or no open stream (HTTP/2) is closed gracefully (GOAWAY) after
//!   its idle timeout, and one whose response body has not been taken by the
//!   client for the response idle timeout is dropped, with everything behind
//!   it (the backend's body, an origin's connection).

mod activity;
mod io;
mod slots;

use activity::{Activity, TrackedBody};
use io::DeadlineIo;
pub use slots::{ConnectionSlot, ConnectionSlots, SlotRefused};

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use http_body::Body;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulConnection;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Serves HTTP on `io` (a fresh connection, after any TLS handshake) with
/// `handler` answering each request, under `timeouts`, until the
/// connection ends; `drain` resolving starts a graceful close. The one
/// way the node's listeners, its admin listener and the control plane
/// serve a connection.
pub async fn serve<I, H, F, B>(
    builder: &auto::Builder<TokioExecutor>,
    io: I,
    timeouts: &ConnectionTimeouts,
    drain: impl Future<Output = ()>,
    handler: H,
) -> ConnectionEnd
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body + Unpin + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let activity = Activity::new();
    let requests = activity.clone();
    // The handler is called inside the request's future, so that its
    // (large) future is built in place there rather than built, then moved
    // in: every move of a request future is a copy of all of it.
    let handler = std::sync::Arc::new(handler);
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let in_progress = requests.request();
        let handler = handler.clone();
        async move {
            let response = handler(request).await;
            Ok::<_, std::convert::Infallible>(
                response.map(|body| TrackedBody::new(body, in_progress)),
            )
        }
    });
    let io = DeadlineIo::new(io, timeouts.first_bytes, timeouts.response_idle);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    drive(conn, &activity, timeouts, drain).await
}

/// Whether a connection failed on one of its deadlines (`DeadlineIo`'s,
/// or hyper's header-read timeout).
fn timed_out(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(err);
    while let Some(current) = source {
        if current
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
            || current
                .downcast_ref::<hyper::Error>()
                .is_some_and(|e| e.is_timeout())
        {
            return true;
        }
        source = current.source();
    }
    false
}

/// How long a connection may wait on its client, at each stage.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionTimeouts {
    /// From connect (or the TLS handshake) to the first byte of a request.
    pub first_bytes: Duration,
    /// With no request in progress (HTTP/1) or no open stream (HTTP/2).
    pub idle: Duration,
    /// A response the client takes nothing of: the socket does not accept a
    /// byte, or (HTTP/2) the stream's flow-control window stays shut.
    pub response_idle: Duration,
}

impl ConnectionTimeouts {
    /// How often [`drive`] advances the stall epoch: a stalled response is
    /// caught two epochs after its last progress, so between
    /// `response_idle` and 1.5 × `response_idle`.
    fn epoch_every(&self) -> Duration {
        (self.response_idle / 2).max(Duration::from_millis(10))
    }

    /// How often [`drive`] looks for idleness: three looks in a row that
    /// find the same requests started and none in progress (so idle for
    /// two periods, `idle`) close the connection, between `idle` and
    /// 1.5 × `idle` after its last request.
    fn idle_check_every(&self) -> Duration {
        (self.idle / 2).max(Duration::from_millis(10))
    }

    /// Time a connection told to close for idleness gets to finish on its
    /// own before it is dropped: a client that never acknowledges the
    /// GOAWAY keeps nothing.
    fn close_grace(&self) -> Duration {
        self.first_bytes.max(Duration::from_secs(1))
    }
}

/// How a connection ended.
#[derive(Debug)]
pub enum ConnectionEnd {
    /// The client or the server closed it in the normal way.
    Closed,
    /// hyper ended it with an error (a protocol error, a reset, or one of
    /// the deadlines: see [`ConnectionEnd::closed_by_server`]).
    Failed(BoxError),
    /// Closed after `idle` with no request (reported once it has closed).
    Idle,
    /// A response made no progress toward the client for `response_idle`:
    /// the connection was dropped.
    Stalled,
    /// Closed for idleness, still open after the grace: dropped.
    CloseOverdue,
}

impl ConnectionEnd {
    /// Why the server closed the connection for the client's behaviour
    /// (the `reason` label of the node's `edge_connections_closed_total`):
    /// `idle`, `response-stalled`, `close-overdue`, or `timeout` (first
    /// bytes, request head, a write the client did not take). `None` when
    /// it ended in the normal way or on another error.
    pub fn closed_by_server(&self) -> Option<&'static str> {
        match self {
            ConnectionEnd::Closed => None,
            ConnectionEnd::Idle => Some("idle"),
            ConnectionEnd::Stalled => Some("response-stalled"),
            ConnectionEnd::CloseOverdue => Some("close-overdue"),
            ConnectionEnd::Failed(err) => timed_out(&**err).then_some("timeout"),
        }
    }
}

/// Serves `conn` until it ends. `drain` resolving starts a graceful close
/// (the server is shutting down); the caller bounds how long the whole
/// drain may take.
async fn drive<C>(
    conn: C,
    activity: &Activity,
    timeouts: &ConnectionTimeouts,
    drain: impl Future<Output = ()>,
) -> ConnectionEnd
where
    C: GracefulConnection,
    C::Error: Into<BoxError>,
{
    let mut conn = pin!(conn);
    let mut drain = pin!(drain);
    let (epoch_every, idle_every) = (timeouts.epoch_every(), timeouts.idle_check_every());
    let start = Instant::now();
    let (mut next_epoch, mut next_idle_check) = (start + epoch_every, start + idle_every);
    let mut wake = pin!(tokio::time::sleep_until(next_epoch.min(next_idle_check)));
    // Set once the connection has been told to close: for idleness (and
    // until when it may take), or because the server drains (the caller
    // bounds that).
    let mut closing: Option<Option<Instant>> = None;
    // The last look's mark, and how many looks in a row found it.
    let (mut idle_mark, mut idle_looks) = (None, 0u32);
    loop {
        tokio::select! {
            biased;
            result = conn.as_mut() => {
                return match (result, closing) {
                    (Ok(()), Some(Some(_))) => ConnectionEnd::Idle,
                    (Ok(()), _) => ConnectionEnd::Closed,
                    (Err(err), _) => ConnectionEnd::Failed(err.into()),
                };
            }
            () = drain.as_mut(), if closing.is_none() => {
                conn.as_mut().graceful_shutdown();
                closing = Some(None);
            }
            () = wake.as_mut() => {
                let now = Instant::now();
                if now >= next_epoch {
                    if activity.advance_and_check_stalled() {
                        return ConnectionEnd::Stalled;
                    }
                    next_epoch = now + epoch_every;
                }
                if now >= next_idle_check {
                    match closing {
                        Some(Some(give_up)) if now >= give_up => {
                            return ConnectionEnd::CloseOverdue;
                        }
                        Some(_) => {}
                        None => {
                            let mark = activity.idle_mark();
                            idle_looks = match mark {
                                Some(_) if mark == idle_mark => idle_looks + 1,
                                Some(_) => 1,
                                None => 0,
                            };
                            idle_mark = mark;
                            if idle_looks >= 3 {
                                conn.as_mut().graceful_shutdown();
                                closing = Some(Some(now + timeouts.close_grace()));
                            }
                        }
                    }
                    next_idle_check = now + idle_every;
                }
                wake.as_mut().reset(next_epoch.min(next_idle_check));
            }
        }
    }
}

#[cfg(test)]
mod tests;
