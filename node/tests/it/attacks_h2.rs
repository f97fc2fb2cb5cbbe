//! The HTTP/2 attack corpus, frame by frame over raw sockets against the
//! real `edge-node` binary (its resident memory is measured from /proc
//! before and after each flood): CONTINUATION flood, HPACK bomb, SETTINGS
//! and PING floods, rapid reset, `WINDOW_UPDATE` overflow, and malformed
//! requests (connection-specific fields, uppercase names). Each case
//! asserts how the node ends it, that the origin saw nothing it should not
//! (or a bounded amount, for rapid reset), that the node's memory stayed
//! bounded, and that a well-behaved client is answered after it. The zero
//! window held against a large response and `:authority` against `Host`
//! are in `probe.rs`.

use std::net::SocketAddr;
use std::process::Child;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::origin_server::{Script, ScriptedOrigin};
use crate::probe::well_behaved_client_is_served;
use crate::process::{sigterm, spawn_node_with};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PROTOCOL_ERROR: u32 = 0x1;
const FLOW_CONTROL_ERROR: u32 = 0x3;
const ENHANCE_YOUR_CALM: u32 = 0xb;

/// Growth of the node's resident memory a flood may cause (the node's
/// buffers and caches, and the allocator keeping freed pages).
const MAX_RSS_GROWTH_KIB: u64 = 64 << 10;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HPACK integer with an `prefix`-bit prefix, `flags` in the first
/// byte's high bits (RFC 7541 §5.1).
fn hpack_int(out: &mut Vec<u8>, flags: u8, prefix: u8, mut value: usize) {
    let max = (1usize << prefix) - 1;
    if value < max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
}

/// A literal field with a new name, not indexed (or, with `index`, added
/// to the dynamic table), no Huffman coding.
fn literal(out: &mut Vec<u8>, name: &str, value: &[u8], index: bool) {
    out.push(if index { 0x40 } else { 0x00 });
    hpack_int(out, 0, 7, name.len());
    out.extend_from_slice(name.as_bytes());
    hpack_int(out, 0, 7, value.len());
    out.extend_from_slice(value);
}

/// A GET of `/p` on web.test, as a header block.
fn request_block(extra: &[(&str, &str)]) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in [
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/p"),
        (":authority", "web.test"),
    ]
    .iter()
    .chain(extra)
    {
        literal(&mut block, name, value.as_bytes(), false);
    }
    block
}

/// What the node sent on a connection, read in the background.
#[derive(Debug, Default, Clone)]
struct Seen {
    goaway: Option<u32>,
    resets: Vec<(u32, u32)>,
    /// Streams that got response headers.
    answered: Vec<u32>,
    eof: bool,
}

struct Conn {
    stream: tokio::net::tcp::OwnedWriteHalf,
    seen: std::sync::Arc<std::sync::Mutex<Seen>>,
    reader: tokio::task::JoinHandle<()>,
}

impl Conn {
    /// Connects and sends the preface and empty SETTINGS; `read` starts
    /// the reader at once (a flood that never reads passes false and
    /// calls [`Conn::read`] later).
    async fn open(addr: SocketAddr, read: bool) -> (Conn, Option<tokio::net::tcp::OwnedReadHalf>) {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (read_half, mut write) = stream.into_split();
        write.write_all(PREFACE).await.unwrap();
        write.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Seen::default()));
        let mut conn = Conn {
            stream: write,
            seen,
            reader: tokio::spawn(async {}),
        };
        if read {
            conn.read(read_half);
            (conn, None)
        } else {
            (conn, Some(read_half))
        }
    }

    fn read(&mut self, mut read: tokio::net::tcp::OwnedReadHalf) {
        let seen = self.seen.clone();
        self.reader = tokio::spawn(async move {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 16384];
            loop {
                let n = match read.read(&mut chunk).await {
                    Ok(0) | Err(_) => {
                        seen.lock().unwrap().eof = true;
                        return;
                    }
                    Ok(n) => n,
                };
                buf.extend_from_slice(&chunk[..n]);
                while buf.len() >= 9 {
                    let len = u32::from_be_bytes([0, buf[0], buf[1], buf[2]]) as usize;
                    if buf.len() < 9 + len {
                        break;
                    }
                    let (kind, stream) = (
                        buf[3],
                        u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff,
                    );
                    let payload = &buf[9..9 + len];
                    let mut seen = seen.lock().unwrap();
                    match kind {
                        GOAWAY if payload.len() >= 8 => {
                            seen.goaway = Some(u32::from_be_bytes([
                                payload[4], payload[5], payload[6], payload[7],
                            ]))
                        }
                        RST_STREAM if payload.len() >= 4 => seen.resets.push((
                            stream,
                            u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]),
                        )),
                        HEADERS => seen.answered.push(stream),
                        _ => {}
                    }
                    drop(seen);
                    buf.drain(..9 + len);
                }
            }
        });
    }

    /// Sends `bytes`; false once the node stopped taking them.
    async fn send(&mut self, bytes: &[u8]) -> bool {
        matches!(
            tokio::time::timeout(Duration::from_secs(10), self.stream.write_all(bytes)).await,
            Ok(Ok(()))
        )
    }

    /// What the node sent, once it ended the connection or after `wait`.
    async fn outcome(self, wait: Duration) -> Seen {
        let _ = tokio::time::timeout(wait, self.reader).await;
        self.seen.lock().unwrap().clone()
    }
}

fn rss_kib(node: &Child) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", node.id())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

struct Node {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Node {
    fn drop(&mut self) {
        sigterm(&self.child);
        let _ = self.child.wait();
    }
}

fn start_node(origin: &ScriptedOrigin) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "[listen]\nhttp = \"127.0.0.1:0\"\n\n[[apps]]\nname = \"web\"\ntenant = \"t\"\n\
             hosts = [\"web.test\"]\norigin = \"{}\"\n",
            origin.url()
        ),
    )
    .unwrap();
    let (child, addrs) = spawn_node_with(&["--config", config.to_str().unwrap()], &["http"]);
    Node {
        child,
        addr: addrs[0],
        _dir: dir,
    }
}

/// Runs `flood` against a fresh connection and checks the node after it:
/// memory bounded, and a well-behaved client answered.
async fn after_flood(node: &Node, name: &str, rss_before: u64) {
    let rss_after = rss_kib(&node.child);
    assert!(
        rss_after.saturating_sub(rss_before) < MAX_RSS_GROWTH_KIB,
        "{name}: the node grew from {rss_before} KiB to {rss_after} KiB"
    );
    eprintln!("{name}: the node's RSS {rss_before} KiB -> {rss_after} KiB");
    well_behaved_client_is_served(node.addr, "web.test").await;
}

#[tokio::test]
async fn the_http2_attack_corpus() {
    let origin = ScriptedOrigin::start().await;
    origin.script("/p", Script::ok("page").cc("no-store"));
    origin.script("/", Script::ok("home").cc("no-store"));
    let node = start_node(&origin);
    let addr = node.addr;
    well_behaved_client_is_served(addr, "web.test").await;

    // CONTINUATION flood: one header block that never ends.
    let rss = rss_kib(&node.child);
    let (mut conn, _) = Conn::open(addr, true).await;
    let mut first = request_block(&[]);
    literal(&mut first, "x-flood", b"a", false);
    conn.send(&frame(HEADERS, 0, 1, &first)).await;
    let mut junk = Vec::new();
    literal(&mut junk, "x-junk", &vec![b'j'; 16_000], false);
    let mut sent = 0;
    for _ in 0..4_000 {
        if !conn.send(&frame(CONTINUATION, 0, 1, &junk)).await {
            break;
        }
        sent += 1;
    }
    let seen = conn.outcome(Duration::from_secs(10)).await;
    // Cut long before the 4,000th frame: ENHANCE_YOUR_CALM.
    assert_eq!(
        seen.goaway,
        Some(ENHANCE_YOUR_CALM),
        "CONTINUATION flood: {seen:?}"
    );
    assert!(
        sent < 4_000 && seen.eof,
        "CONTINUATION flood: {sent} frames taken; {seen:?}"
    );
    after_flood(&node, "CONTINUATION flood", rss).await;

    // HPACK bomb: one 4 KB field in the dynamic table, referenced 12,000
    // times in one header block that fits a frame (48 MB once decoded).
    let rss = rss_kib(&node.child);
    let (mut conn, _) = Conn::open(addr, true).await;
    let mut block = request_block(&[]);
    literal(&mut block, "x-bomb", &vec![b'b'; 4_000], true);
    block.extend(std::iter::repeat_n(0x80 | 62, 12_000));
    conn.send(&frame(HEADERS, END_HEADERS | END_STREAM, 1, &block))
        .await;
    let seen = conn.outcome(Duration::from_secs(10)).await;
    // The decoder stops at the header list limit: ENHANCE_YOUR_CALM.
    assert_eq!(seen.goaway, Some(ENHANCE_YOUR_CALM), "HPACK bomb: {seen:?}");
    assert!(seen.answered.is_empty() && seen.eof, "HPACK bomb: {seen:?}");
    assert_eq!(origin.requests("/p"), 0, "HPACK bomb reached the origin");
    after_flood(&node, "HPACK bomb", rss).await;

    // SETTINGS and PING floods, never reading the acknowledgements.
    for (name, kind, payload) in [
        ("SETTINGS flood", SETTINGS, Vec::new()),
        ("PING flood", PING, vec![0u8; 8]),
    ] {
        let rss = rss_kib(&node.child);
        let (mut conn, read_half) = Conn::open(addr, false).await;
        let one = frame(kind, 0, 0, &payload);
        let batch: Vec<u8> = one
            .iter()
            .copied()
            .cycle()
            .take(one.len() * 1_000)
            .collect();
        let mut sent = 0;
        for _ in 0..200 {
            if !conn.send(&batch).await {
                break;
            }
            sent += 1_000;
        }
        if let Some(read_half) = read_half {
            conn.read(read_half);
        }
        let seen = conn.outcome(Duration::from_secs(5)).await;
        // The node answers each in turn and reads no faster than the
        // flood takes its answers (bounded memory, checked below); it
        // does not end the connection.
        assert!(sent > 0, "{name}: {seen:?}");
        after_flood(&node, name, rss).await;
    }

    // Rapid reset: streams opened and cancelled at once.
    let rss = rss_kib(&node.child);
    let before = origin.requests("/p");
    let (mut conn, _) = Conn::open(addr, true).await;
    let block = request_block(&[]);
    let mut opened = 0;
    for i in 0..20_000u32 {
        let stream = 2 * i + 1;
        let mut bytes = frame(HEADERS, END_HEADERS | END_STREAM, stream, &block);
        bytes.extend(frame(RST_STREAM, 0, stream, &8u32.to_be_bytes()));
        if !conn.send(&bytes).await {
            break;
        }
        opened += 1;
    }
    let seen = conn.outcome(Duration::from_secs(10)).await;
    let forwarded = origin.requests("/p") - before;
    assert_eq!(
        seen.goaway,
        Some(ENHANCE_YOUR_CALM),
        "rapid reset: {seen:?}"
    );
    assert!(opened < 20_000, "rapid reset: all {opened} streams taken");
    // A cancelled stream is never worth an origin request once the node
    // has seen the reset; a few may race it.
    assert!(forwarded <= 20, "rapid reset: the origin got {forwarded}");
    after_flood(&node, "rapid reset", rss).await;

    // WINDOW_UPDATE past 2^31 - 1.
    let (mut conn, _) = Conn::open(addr, true).await;
    conn.send(&frame(WINDOW_UPDATE, 0, 0, &0x7fff_ffffu32.to_be_bytes()))
        .await;
    let seen = conn.outcome(Duration::from_secs(10)).await;
    assert_eq!(
        seen.goaway,
        Some(FLOW_CONTROL_ERROR),
        "WINDOW_UPDATE overflow: {seen:?}"
    );
    assert!(seen.eof, "WINDOW_UPDATE overflow: {seen:?}");

    // Malformed requests: connection-specific fields, an uppercase name.
    // RFC 9113 §8.2: a stream error for the first three, a connection
    // error for the uppercase name (the decoder's).
    for (name, extra, stream_reset) in [
        ("connection field", ("connection", "keep-alive"), true),
        (
            "transfer-encoding field",
            ("transfer-encoding", "chunked"),
            true,
        ),
        ("te other than trailers", ("te", "gzip"), true),
        ("uppercase name", ("X-Upper", "a"), false),
    ] {
        let before = origin.requests("/p");
        let (mut conn, _) = Conn::open(addr, true).await;
        conn.send(&frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            1,
            &request_block(&[extra]),
        ))
        .await;
        let seen = conn.outcome(Duration::from_secs(3)).await;
        if stream_reset {
            assert_eq!(seen.resets, [(1, PROTOCOL_ERROR)], "{name}: {seen:?}");
        } else {
            assert_eq!(seen.goaway, Some(PROTOCOL_ERROR), "{name}: {seen:?}");
        }
        assert!(seen.answered.is_empty(), "{name}: {seen:?}");
        assert_eq!(origin.requests("/p"), before, "{name} reached the origin");
    }
    well_behaved_client_is_served(addr, "web.test").await;
}
