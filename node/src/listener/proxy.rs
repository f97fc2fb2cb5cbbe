//! The PROXY protocol (v1 text, v2 binary) on a listener the operator put
//! behind a TCP load balancer: the header comes first on the connection,
//! before TLS or HTTP, and names the client. Parsed by the `ppp` crate;
//! read here, exactly up to the header's end, so that not one byte of the
//! TLS ClientHello or HTTP request after it is consumed. The caller bounds
//! the whole read with a timeout.

use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncReadExt};

/// v2's fixed part: a 12-byte signature, version and command, family and
/// protocol, and a 2-byte length.
const V2_FIXED: usize = 16;
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// v1's longest header (the specification's 107 bytes, CRLF included).
const V1_MAX: usize = 107;
/// The most v2 address and TLV bytes taken. Balancers add a few TLVs
/// (AWS's VPC endpoint id, a TLS summary) of well under this; more is
/// refused rather than buffered.
const V2_MAX_PAYLOAD: usize = 1024;

/// Why a connection's PROXY header was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProxyHeaderError {
    #[error("no PROXY protocol header")]
    Missing,
    #[error("PROXY protocol v2 header of {0} bytes is too long")]
    TooLong(usize),
    #[error("invalid PROXY protocol header: {0}")]
    Invalid(String),
    #[error("reading the PROXY protocol header: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads the header; the client's address, or `None` when the header says
/// the connection is the balancer's own (v2 `LOCAL`, v1 `UNKNOWN`: health
/// checks), whose TCP peer then stands.
pub async fn read_header<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let mut buf = vec![0u8; 6];
    stream.read_exact(&mut buf).await?;
    if buf == b"PROXY " {
        // Byte by byte up to the CRLF: never past the header.
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n") {
            if buf.len() >= V1_MAX {
                return Err(ProxyHeaderError::Invalid("v1 header without CRLF".into()));
            }
            stream.read_exact(&mut byte).await?;
            buf.push(byte[0]);
        }
    } else if V2_SIGNATURE.starts_with(&buf) {
        buf.resize(V2_FIXED, 0);
        stream.read_exact(&mut buf[6..]).await?;
        let payload = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
        if payload > V2_MAX_PAYLOAD {
            return Err(ProxyHeaderError::TooLong(payload));
        }
        buf.resize(V2_FIXED + payload, 0);
        stream.read_exact(&mut buf[V2_FIXED..]).await?;
    } else {
        return Err(ProxyHeaderError::Missing);
    }
    parse(&buf)
}

fn parse(header: &[u8]) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    use ppp::{HeaderResult, v1, v2};
    let invalid = |e: &dyn std::fmt::Display| ProxyHeaderError::Invalid(e.to_string());
    match HeaderResult::parse(header) {
        HeaderResult::V1(Ok(h)) => Ok(match h.addresses {
            v1::Addresses::Tcp4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
            v1::Addresses::Tcp6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
            v1::Addresses::Unknown => None,
        }),
        HeaderResult::V1(Err(e)) => Err(invalid(&e)),
        HeaderResult::V2(Ok(h)) => {
            if h.command == v2::Command::Local {
                return Ok(None);
            }
            match h.addresses {
                v2::Addresses::IPv4(a) => {
                    Ok(Some(SocketAddr::from((a.source_address, a.source_port))))
                }
                v2::Addresses::IPv6(a) => {
                    Ok(Some(SocketAddr::from((a.source_address, a.source_port))))
                }
                // A PROXY'd connection must name its client: a unix
                // socket or no address is no client the node can use.
                v2::Addresses::Unix(_) | v2::Addresses::Unspecified => {
                    Err(ProxyHeaderError::Invalid(
                        "v2 PROXY header without an IP source address".into(),
                    ))
                }
            }
        }
        HeaderResult::V2(Err(e)) => Err(invalid(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(bytes: &[u8]) -> (Result<Option<SocketAddr>, ProxyHeaderError>, Vec<u8>) {
        let mut cursor = std::io::Cursor::new(bytes.to_vec());
        let result = read_header(&mut cursor).await;
        let mut rest = Vec::new();
        cursor.read_to_end(&mut rest).await.unwrap();
        (result, rest)
    }

    fn v2(command: u8, family: u8, addresses: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(command);
        h.push(family);
        h.extend_from_slice(&(addresses.len() as u16).to_be_bytes());
        h.extend_from_slice(addresses);
        h
    }

    #[tokio::test]
    async fn v1_and_v2_give_the_source_and_leave_what_follows() {
        let (addr, rest) =
            read(b"PROXY TCP4 198.51.100.7 10.0.0.1 5555 443\r\nGET / HTTP/1.1\r\n").await;
        assert_eq!(addr.unwrap(), Some("198.51.100.7:5555".parse().unwrap()));
        assert_eq!(rest, b"GET / HTTP/1.1\r\n");
        let (addr, _) = read(b"PROXY TCP6 2001:db8::7 2001:db8::1 5555 443\r\n").await;
        assert_eq!(addr.unwrap(), Some("[2001:db8::7]:5555".parse().unwrap()));
        let (addr, _) = read(b"PROXY UNKNOWN\r\n").await;
        assert_eq!(addr.unwrap(), None);

        let mut ipv4 = vec![198, 51, 100, 9, 10, 0, 0, 1];
        ipv4.extend_from_slice(&4000u16.to_be_bytes());
        ipv4.extend_from_slice(&443u16.to_be_bytes());
        let mut bytes = v2(0x21, 0x11, &ipv4);
        bytes.extend_from_slice(b"\x16\x03\x01");
        let (addr, rest) = read(&bytes).await;
        assert_eq!(addr.unwrap(), Some("198.51.100.9:4000".parse().unwrap()));
        assert_eq!(rest, b"\x16\x03\x01");
        let (addr, _) = read(&v2(0x20, 0x00, &[])).await;
        assert_eq!(addr.unwrap(), None, "LOCAL: the balancer's own connection");
    }

    #[tokio::test]
    async fn bad_headers_are_refused() {
        for bad in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            b"PROXY TCP4 1.2.3.4\r\n",
            b"PROXY TCP4 999.2.3.4 1.2.3.4 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2 and then a very long line that never ends with a carriage return and line feed at all, ever",
            b"PROXY ",
        ] {
            let (result, _) = read(bad).await;
            assert!(result.is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let too_long = v2(0x21, 0x11, &vec![0; 2000]);
        assert!(matches!(
            read(&too_long).await.0,
            Err(ProxyHeaderError::TooLong(2000))
        ));
        let (result, _) = read(&v2(0x21, 0x11, &[1, 2, 3])).await;
        assert!(result.is_err(), "addresses shorter than the family says");
    }
}
