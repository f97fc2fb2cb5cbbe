//! The API's connections under a flood: silent connections, idle ones and
//! one address taking every slot. The well-behaved client connects from
//! 127.0.0.2; every wait is a deadline that only turns a hang into a
//! failure.

use std::net::SocketAddr;
use std::time::Duration;

use edge_cp::{ControlPlane, CpConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn start(dir: &std::path::Path) -> edge_cp::server::ServerHandle {
    let mut config = CpConfig::new(dir, "127.0.0.1:0".parse().unwrap());
    config.connections.max_connections = 40;
    config.connections.max_connections_per_ip = 16;
    config.connections.header_read_timeout = Duration::from_secs(1);
    config.connections.idle_timeout = Duration::from_secs(1);
    ControlPlane::start(config).await.unwrap()
}

async fn healthz_from_another_address(addr: SocketAddr) -> u16 {
    reqwest::Client::builder()
        .no_proxy()
        .local_address(Some("127.0.0.2".parse().unwrap()))
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .expect("the API answers")
        .status()
        .as_u16()
}

async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut rest))
        .await
        .is_ok()
}

#[tokio::test]
async fn silent_and_idle_connections_cannot_lock_out_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let cp = start(dir.path()).await;
    // The attack: more silent connections than the API has slots.
    let mut silent = Vec::new();
    for _ in 0..60 {
        silent.push(TcpStream::connect(cp.addr).await.unwrap());
    }
    assert_eq!(healthz_from_another_address(cp.addr).await, 200);
    // Past the per-address share, connections are closed on accept; the
    // rest at the first-bytes deadline.
    for stream in &mut silent {
        assert!(
            closed_by_server(stream).await,
            "a silent connection stayed open"
        );
    }
    // An idle keep-alive connection is closed too.
    let mut idle = TcpStream::connect(cp.addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: cp\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 256];
    let n = idle.read(&mut head).await.unwrap();
    assert!(head[..n].starts_with(b"HTTP/1.1 200"));
    assert!(
        closed_by_server(&mut idle).await,
        "an idle connection stayed open"
    );
    // And the slots are free again.
    let mut again = TcpStream::connect(cp.addr).await.unwrap();
    again
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: cp\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    again.read_to_end(&mut answer).await.unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 200"));
    cp.shutdown().await;
}
