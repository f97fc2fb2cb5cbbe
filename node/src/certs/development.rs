//! `tls.source = "self-signed"`, for development only: a short-lived
//! certificate for each SNI name a client asks for, signed on first use, so
//! that no certificate lists the other names the node hosts.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::crypto::ring::sign::any_supported_type;
use rustls::sign::CertifiedKey;
use rustls_pki_types::PrivateKeyDer;

use super::load::TlsError;

/// How long a development certificate is valid. Short on purpose: it is
/// not for production, and a leaked one expires. A node running longer
/// makes new ones (see [`DevelopmentCertificates::REISSUE_AFTER`]).
const DEVELOPMENT_VALIDITY: Duration = Duration::from_secs(90 * 24 * 3600);

/// Self-signed certificates for development, one per SNI name, all with the
/// one key generated at start-up.
pub struct DevelopmentCertificates {
    key: rcgen::KeyPair,
    signing_key: Arc<dyn rustls::sign::SigningKey>,
    /// By SNI name (`""`: no SNI). Bounded: a client sending random names
    /// evicts old ones, which are simply made again when asked for.
    issued: moka::sync::Cache<String, Arc<CertifiedKey>>,
}

impl std::fmt::Debug for DevelopmentCertificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DevelopmentCertificates")
    }
}

impl DevelopmentCertificates {
    /// Names kept at once.
    const MAX_NAMES: u64 = 1024;
    /// Made again this long after issue, well before they expire.
    const REISSUE_AFTER: Duration = Duration::from_secs(30 * 24 * 3600);

    pub fn new() -> Result<Self, TlsError> {
        let key = rcgen::KeyPair::generate()?;
        let der = PrivateKeyDer::Pkcs8(key.serialize_der().into());
        Ok(Self {
            signing_key: any_supported_type(&der)?,
            key,
            issued: moka::sync::Cache::builder()
                .max_capacity(Self::MAX_NAMES)
                .time_to_live(Self::REISSUE_AFTER)
                .build(),
        })
    }

    /// The certificate for `sni`; without one, for `localhost` and the
    /// loopback addresses.
    pub fn for_name(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let name = sni.map(|n| n.trim_end_matches('.').to_ascii_lowercase());
        let key = name.clone().unwrap_or_default();
        if let Some(found) = self.issued.get(&key) {
            return Some(found);
        }
        let names = match name {
            Some(name) => vec![name],
            None => vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
        };
        match self.issue(names) {
            Ok(certified) => {
                let certified = Arc::new(certified);
                self.issued.insert(key, certified.clone());
                Some(certified)
            }
            Err(err) => {
                tracing::warn!("cannot make a development certificate: {err}");
                None
            }
        }
    }

    fn issue(&self, names: Vec<String>) -> Result<CertifiedKey, rcgen::Error> {
        let mut params = rcgen::CertificateParams::new(names)?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs() as i64;
        let at = |secs: i64| {
            time::OffsetDateTime::from_unix_timestamp(secs).map_err(|_| rcgen::Error::Time)
        };
        // An hour back: clocks of clients on the same machine may lag.
        params.not_before = at(now - 3600)?;
        params.not_after = at(now + DEVELOPMENT_VALIDITY.as_secs() as i64)?;
        let cert = params.self_signed(&self.key)?;
        Ok(CertifiedKey::new(
            vec![cert.der().clone()],
            self.signing_key.clone(),
        ))
    }
}
