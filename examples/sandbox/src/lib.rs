//! A component that reaches for the filesystem and the network the way a
//! language runtime does, through Rust's std (wasi:filesystem and
//! wasi:sockets underneath). The node links both so such components load,
//! but gives nothing through them: every probe must answer an error.
//!
//! - `GET /fs`: lists `/` and `.`, opens `/etc/passwd`, creates `/tmp/x`;
//! - `GET /tcp?ADDR`: connects to ADDR (`127.0.0.1:8080`);
//! - `GET /listen`: binds a TCP listener on 127.0.0.1;
//! - `GET /udp?ADDR`: binds a UDP socket and sends a datagram to ADDR;
//! - `GET /dns?NAME`: resolves NAME.
//!
//! Each answers one line per probe: `NAME: ok ...` or `NAME: error KIND`.
//!
//! Build: `cargo build --release --target wasm32-wasip2` in `examples/`.

use std::io::Write;
use std::net::{TcpListener, TcpStream, ToSocketAddrs, UdpSocket};

use edge_sdk::{Body, Request, Response};

fn line<T: std::fmt::Debug>(name: &str, result: std::io::Result<T>) -> String {
    match result {
        Ok(value) => format!("{name}: ok {value:?}\n"),
        Err(err) => format!("{name}: error {:?}\n", err.kind()),
    }
}

fn fs() -> String {
    let mut out = String::new();
    out += &line("read_dir /", std::fs::read_dir("/").map(|d| d.count()));
    out += &line("read_dir .", std::fs::read_dir(".").map(|d| d.count()));
    out += &line("open /etc/passwd", std::fs::read("/etc/passwd"));
    out += &line(
        "create /tmp/x",
        std::fs::File::create("/tmp/x").and_then(|mut f| f.write_all(b"x")),
    );
    out
}

fn tcp(addr: &str) -> String {
    line(
        "tcp connect",
        TcpStream::connect(addr).and_then(|mut s| s.write_all(b"GET / HTTP/1.0\r\n\r\n")),
    )
}

fn listen() -> String {
    line(
        "tcp listen",
        TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()),
    )
}

fn udp(addr: &str) -> String {
    line(
        "udp send",
        UdpSocket::bind("0.0.0.0:0").and_then(|s| s.send_to(b"x", addr)),
    )
}

fn dns(name: &str) -> String {
    line(
        "dns",
        (name, 80).to_socket_addrs().map(|a| a.collect::<Vec<_>>()),
    )
}

fn sandbox(req: Request) -> Response {
    let arg = req.uri().query().unwrap_or("");
    let body = match req.uri().path() {
        "/fs" => fs(),
        "/tcp" => tcp(arg),
        "/listen" => listen(),
        "/udp" => udp(arg),
        "/dns" => dns(arg),
        _ => "probes: /fs /tcp?ADDR /listen /udp?ADDR /dns?NAME\n".to_string(),
    };
    Response::new(Body::from(body))
}

edge_sdk::handler!(sandbox);
