//! Who is calling and over what: the headers the node sets on every
//! request to a component, after removing any the client sent itself, so
//! they can be trusted.
//!
//! - `x-edge-client-ip`: the client's address (the TCP peer, the address a
//!   PROXY protocol header gave, or behind an operator's trusted proxy the
//!   address it forwarded);
//! - `x-edge-tls-version` (`TLSv1.3`), `x-edge-tls-cipher` (the IANA name,
//!   `TLS13_AES_128_GCM_SHA256`), `x-edge-sni`: over HTTPS only.

use std::net::IpAddr;

pub const CLIENT_IP: &str = "x-edge-client-ip";
pub const TLS_VERSION: &str = "x-edge-tls-version";
pub const TLS_CIPHER: &str = "x-edge-tls-cipher";
pub const SNI: &str = "x-edge-sni";

/// The client's address, if the node named one (a request from a
/// background cache refresh has none).
pub fn client_addr<B>(req: &http::Request<B>) -> Option<IpAddr> {
    req.headers().get(CLIENT_IP)?.to_str().ok()?.parse().ok()
}

/// What TLS the client connected with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    pub version: String,
    pub cipher: String,
    /// The server name the client asked for (SNI), if it sent one.
    pub sni: Option<String>,
}

/// The connection's TLS facts; `None` over plain HTTP.
pub fn tls_info<B>(req: &http::Request<B>) -> Option<TlsInfo> {
    let get = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    Some(TlsInfo {
        version: get(TLS_VERSION)?,
        cipher: get(TLS_CIPHER)?,
        sni: get(SNI),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_the_node_set() {
        let req = http::Request::builder()
            .header(CLIENT_IP, "2001:db8::1")
            .header(TLS_VERSION, "TLSv1.3")
            .header(TLS_CIPHER, "TLS13_AES_128_GCM_SHA256")
            .body(())
            .unwrap();
        assert_eq!(client_addr(&req), Some("2001:db8::1".parse().unwrap()));
        let tls = tls_info(&req).unwrap();
        assert_eq!((tls.version.as_str(), tls.sni), ("TLSv1.3", None));
        let plain = http::Request::new(());
        assert_eq!(client_addr(&plain), None);
        assert_eq!(tls_info(&plain), None);
    }
}
