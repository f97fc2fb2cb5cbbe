//! TLS for the HTTPS listener: rustls with the node's SNI resolver
//! ([`crate::certs`]), ALPN `h2` and `http/1.1`.

use std::sync::Arc;

use rustls::ServerConfig;

use crate::certs::CertResolver;

/// Builds the rustls server configuration around `resolver`.
pub fn server_config(resolver: Arc<CertResolver>) -> Result<Arc<ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    //! The handshake rules the node's TLS holds to, checked on its own
    //! configuration: TLS 1.2 and 1.3 only, AEAD suites with forward
    //! secrecy only, no compression. rustls implements no renegotiation
    //! at all (a TLS 1.2 client's renegotiation request is refused with a
    //! `no_renegotiation` warning), so there is nothing to switch off.

    use super::*;
    use crate::certs::{CertResolver, OwnCertificates};
    use rustls::{Error, ServerConnection};

    fn config() -> Arc<ServerConfig> {
        // Development certificates: made for any name, so the handshake
        // gets as far as choosing a suite for the certificate's key.
        let own = OwnCertificates::load(&crate::config::TlsConfig::SelfSigned).unwrap();
        server_config(Arc::new(CertResolver::new(own))).unwrap()
    }

    /// A ClientHello record with `version` in both the record and the
    /// hello, these cipher suites and compression methods, and the
    /// extensions a TLS 1.2 client sends (groups, point formats, signature
    /// algorithms).
    fn client_hello(version: u16, suites: &[u16], compressions: &[u8]) -> Vec<u8> {
        let mut hello = Vec::new();
        hello.extend_from_slice(&version.to_be_bytes());
        hello.extend_from_slice(&[7u8; 32]); // random
        hello.push(0); // no session id
        hello.extend_from_slice(&((suites.len() * 2) as u16).to_be_bytes());
        for suite in suites {
            hello.extend_from_slice(&suite.to_be_bytes());
        }
        hello.push(compressions.len() as u8);
        hello.extend_from_slice(compressions);
        let extensions: Vec<u8> = [
            // supported_groups: x25519, secp256r1
            &[0x00, 0x0a, 0x00, 0x06, 0x00, 0x04, 0x00, 0x1d, 0x00, 0x17][..],
            // ec_point_formats: uncompressed
            &[0x00, 0x0b, 0x00, 0x02, 0x01, 0x00][..],
            // signature_algorithms: ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256
            &[0x00, 0x0d, 0x00, 0x06, 0x00, 0x04, 0x04, 0x03, 0x08, 0x04][..],
        ]
        .concat();
        hello.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
        hello.extend_from_slice(&extensions);
        let mut handshake = vec![0x01];
        handshake.extend_from_slice(&(hello.len() as u32).to_be_bytes()[1..]);
        handshake.extend_from_slice(&hello);
        let mut record = vec![0x16];
        record.extend_from_slice(&version.min(0x0303).to_be_bytes());
        record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
        record.extend_from_slice(&handshake);
        record
    }

    fn handshake(record: &[u8]) -> Result<(), Error> {
        let mut server = ServerConnection::new(config()).unwrap();
        let mut input = record;
        server.read_tls(&mut input).unwrap();
        server.process_new_packets().map(|_| ())
    }

    const ECDHE_ECDSA_AES128_GCM: u16 = 0xc02b;
    const ECDHE_RSA_AES128_GCM: u16 = 0xc02f;
    const ECDHE_ECDSA_AES128_CBC: u16 = 0xc009;
    const ECDHE_RSA_AES128_CBC: u16 = 0xc013;
    const RSA_AES128_GCM: u16 = 0x009c;

    #[test]
    fn alpn_offers_h2_then_http1() {
        assert_eq!(
            config().alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }

    #[test]
    fn every_suite_is_aead_with_forward_secrecy() {
        let config = config();
        let suites = &config.crypto_provider().cipher_suites;
        assert!(!suites.is_empty());
        for suite in suites {
            let name = format!("{:?}", suite.suite());
            assert!(
                name.contains("_GCM_") || name.contains("CHACHA20_POLY1305"),
                "{name} is not an AEAD suite"
            );
            // TLS 1.2 suites must be ECDHE; TLS 1.3 ones always are.
            assert!(
                name.starts_with("TLS13_") || name.starts_with("TLS_ECDHE_"),
                "{name} has no forward secrecy"
            );
        }
    }

    #[test]
    fn old_versions_non_aead_suites_and_compression_are_refused() {
        // The control: the same hello with TLS 1.2, ECDHE AES-GCM suites
        // and no compression is taken (the server answers it), so what
        // fails below fails for its one change.
        let aead = [ECDHE_ECDSA_AES128_GCM, ECDHE_RSA_AES128_GCM];
        let control = handshake(&client_hello(0x0303, &aead, &[0]));
        assert!(control.is_ok(), "{control:?}");
        use rustls::PeerIncompatible::*;
        let cbc = [ECDHE_ECDSA_AES128_CBC, ECDHE_RSA_AES128_CBC];
        for (what, record, why) in [
            (
                "TLS 1.1",
                client_hello(0x0302, &aead, &[0]),
                Tls12NotOffered,
            ),
            (
                "TLS 1.0",
                client_hello(0x0301, &aead, &[0]),
                Tls12NotOffered,
            ),
            (
                "CBC only",
                client_hello(0x0303, &cbc, &[0]),
                NoCipherSuitesInCommon,
            ),
            (
                "no forward secrecy",
                client_hello(0x0303, &[RSA_AES128_GCM], &[0]),
                NoCipherSuitesInCommon,
            ),
            (
                "deflate only",
                client_hello(0x0303, &aead, &[1]),
                NullCompressionRequired,
            ),
        ] {
            let err = handshake(&record).expect_err(what);
            assert_eq!(err, Error::PeerIncompatible(why), "{what}");
        }
    }
}
