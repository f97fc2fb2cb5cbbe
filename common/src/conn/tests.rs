use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn one_address_cannot_take_every_slot() {
    let slots = ConnectionSlots::new(4, 2);
    let a1 = slots.try_acquire(ip("192.0.2.1")).unwrap();
    let _a2 = slots.try_acquire(ip("192.0.2.1")).unwrap();
    assert_eq!(
        slots.try_acquire(ip("192.0.2.1")).err(),
        Some(SlotRefused::AddressFull)
    );
    // The mapped form is the same client.
    assert_eq!(
        slots.try_acquire(ip("::ffff:192.0.2.1")).err(),
        Some(SlotRefused::AddressFull)
    );
    let _b = slots.try_acquire(ip("192.0.2.2")).unwrap();
    drop(a1);
    assert_eq!(slots.open_from(ip("192.0.2.1")), 1);
    let _a3 = slots.try_acquire(ip("192.0.2.1")).unwrap();
    let _c = slots.try_acquire(ip("192.0.2.3")).unwrap();
    assert_eq!(
        slots.try_acquire(ip("192.0.2.4")).err(),
        Some(SlotRefused::ServerFull)
    );
}

#[test]
fn ipv6_clients_count_by_their_64() {
    let slots = ConnectionSlots::new(10, 1);
    let _a = slots.try_acquire(ip("2001:db8:1:2::1")).unwrap();
    assert_eq!(
        slots.try_acquire(ip("2001:db8:1:2:ffff::9")).err(),
        Some(SlotRefused::AddressFull)
    );
    let _b = slots.try_acquire(ip("2001:db8:1:3::1")).unwrap();
}

#[test]
fn the_address_map_forgets_closed_addresses() {
    let slots = ConnectionSlots::new(1000, 5);
    for i in 0..200u8 {
        let slot = slots.try_acquire(ip(&format!("10.0.0.{i}"))).unwrap();
        drop(slot);
    }
    assert_eq!(slots.addresses(), 0);
}

type TestBody = StreamBody<futures_channel_like::Receiver>;

/// A body fed by hand, frame by frame.
mod futures_channel_like {
    use super::*;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    pub struct Receiver(pub tokio::sync::mpsc::Receiver<Bytes>);

    impl futures::Stream for Receiver {
        type Item = Result<Frame<Bytes>, std::convert::Infallible>;
        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
        }
    }
}

fn fed_body() -> (tokio::sync::mpsc::Sender<Bytes>, TestBody) {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    (tx, StreamBody::new(futures_channel_like::Receiver(rx)))
}

#[tokio::test]
async fn a_body_never_polled_counts_as_waiting_on_the_client() {
    let activity = Activity::new();
    let (_tx, body) = fed_body();
    let tracked = TrackedBody::new(body, activity.request());
    assert!(!activity.advance_and_check_stalled());
    assert!(!activity.advance_and_check_stalled());
    // Two full periods after it was handed over, nobody has polled it.
    assert!(activity.advance_and_check_stalled());
    drop(tracked);
    assert_eq!(activity.in_flight(), 0);
    assert!(!activity.advance_and_check_stalled());
}

#[tokio::test]
async fn a_body_waiting_on_its_backend_is_not_stalled() {
    let activity = Activity::new();
    let (tx, body) = fed_body();
    let mut tracked = TrackedBody::new(body, activity.request());
    // Polled and pending: the backend's turn, for as long as it takes.
    let pending = futures::poll!(tracked.frame());
    assert!(pending.is_pending());
    for _ in 0..10 {
        assert!(!activity.advance_and_check_stalled());
    }
    tx.send(Bytes::from_static(b"x")).await.unwrap();
    assert!(tracked.frame().await.is_some());
    // Given a frame and not polled since: the client's turn.
    assert!(!activity.advance_and_check_stalled());
    assert!(!activity.advance_and_check_stalled());
    assert!(activity.advance_and_check_stalled());
}

#[tokio::test]
async fn finished_bodies_do_not_wait() {
    let activity = Activity::new();
    let body = http_body_util::Full::new(Bytes::from_static(b"done"));
    let mut tracked = TrackedBody::new(body, activity.request());
    assert_eq!(activity.in_flight(), 1);
    assert!(tracked.frame().await.is_some());
    for _ in 0..5 {
        assert!(!activity.advance_and_check_stalled());
    }
    drop(tracked);
    assert_eq!(activity.in_flight(), 0);
}

#[test]
fn idle_marks_change_with_every_request() {
    let activity = Activity::new();
    assert_eq!(activity.idle_mark(), Some(0));
    let guard = activity.request();
    assert_eq!(activity.idle_mark(), None);
    drop(guard);
    assert_eq!(activity.idle_mark(), Some(1));
    // A request that came and went between two looks changes the mark.
    drop(activity.request());
    assert_eq!(activity.idle_mark(), Some(2));
}

#[tokio::test(start_paused = true)]
async fn a_blocked_write_fails_after_the_send_timeout() {
    // A 64-byte pipe whose far end never reads.
    let (near, _far) = tokio::io::duplex(64);
    let mut io = DeadlineIo::new(near, Duration::from_secs(10), Duration::from_secs(3));
    let started = tokio::time::Instant::now();
    let err = io.write_all(&[0u8; 1024]).await.expect_err("blocked");
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    assert!(started.elapsed() >= Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn writes_that_progress_are_never_cut() {
    let (near, mut far) = tokio::io::duplex(64);
    let mut io = DeadlineIo::new(near, Duration::from_secs(10), Duration::from_secs(3));
    let reader = tokio::spawn(async move {
        let mut buf = [0u8; 64];
        let mut total = 0;
        // Slower in all than the send timeout, but never blocked for it.
        while total < 640 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            total += far.read(&mut buf).await.unwrap();
        }
        total
    });
    io.write_all(&[0u8; 640]).await.expect("progressing writes");
    assert_eq!(reader.await.unwrap(), 640);
}

#[tokio::test(start_paused = true)]
async fn silent_connections_fail_at_the_first_bytes_deadline() {
    let (near, _silent) = tokio::io::duplex(64);
    let mut io = DeadlineIo::new(near, Duration::from_secs(2), Duration::from_secs(30));
    let mut buf = [0u8; 8];
    let err = io.read(&mut buf).await.expect_err("silent");
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);

    let (near, mut talking) = tokio::io::duplex(64);
    let mut io = DeadlineIo::new(near, Duration::from_secs(2), Duration::from_secs(30));
    talking.write_all(b"GET").await.unwrap();
    assert_eq!(io.read(&mut buf).await.unwrap(), 3);
    // Past the first bytes, reads wait as long as they need to.
    let wait = tokio::time::timeout(Duration::from_secs(60), io.read(&mut buf)).await;
    assert!(wait.is_err());
}
