//! Tenants' TLS certificates (`/v1/apps/{app}/certificates`) and an app's
//! HTTPS options (`/v1/apps/{app}/https`). A private key goes in with an
//! upload and never comes out: no answer here has a field for it.

use serde::{Deserialize, Serialize};

use crate::names::{AppName, HostPattern};
use crate::sync::AppHttps;

/// `POST /v1/apps/{app}/certificates`: an uploaded certificate.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadCertificate {
    /// The chain, PEM, leaf first.
    pub chain_pem: String,
    /// The leaf's private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key_pem: String,
    /// The names to serve it for; each must be covered by the leaf's SANs
    /// and owned by the tenant's apps. Empty: every SAN of the leaf.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<HostPattern>,
}

// Hand-written so that a key never reaches a log through `{:?}`.
impl std::fmt::Debug for UploadCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UploadCertificate")
            .field("chain_pem", &format_args!("{} bytes", self.chain_pem.len()))
            .field("key_pem", &"<redacted>")
            .field("hosts", &self.hosts)
            .finish()
    }
}

/// `POST /v1/apps/{app}/certificates/acme`: a certificate the control
/// plane obtains (and renews) from its ACME CA, validated over HTTP-01.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssueCertificate {
    /// Exact names (HTTP-01 cannot validate wildcards), each owned by the
    /// tenant's apps.
    pub hosts: Vec<HostPattern>,
}

/// Where a certificate comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CertificateSource {
    Uploaded,
    Acme,
}

/// What a certificate is doing now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CertificateStatus {
    /// ACME: not issued yet (an order is under way or waiting for a retry
    /// with no failure so far).
    Pending,
    /// Served, and not yet two thirds through its lifetime.
    Issued,
    /// ACME: never issued, and the last attempt failed (`last_error`); it
    /// is retried with backoff.
    Failed,
    /// Served, but past two thirds of its lifetime: an ACME certificate is
    /// being renewed (see `last_error` if that fails); an uploaded one
    /// needs a new upload.
    Expiring,
}

impl CertificateStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Issued => "issued",
            Self::Failed => "failed",
            Self::Expiring => "expiring",
        }
    }
}

/// A certificate as listed (`GET /v1/apps/{app}/certificates`) and as
/// created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certificate {
    pub id: u64,
    pub app: AppName,
    pub hosts: Vec<HostPattern>,
    pub source: CertificateSource,
    pub status: CertificateStatus,
    /// The leaf's issuer (its distinguished name); none before issuance.
    pub issuer: Option<String>,
    pub not_before_unix: Option<u64>,
    pub not_after_unix: Option<u64>,
    /// ACME: when the control plane acts next (the next attempt or the
    /// renewal); none for an uploaded certificate.
    pub next_attempt_unix: Option<u64>,
    /// Failed attempts since the last success (ACME).
    pub attempts: u32,
    pub last_error: Option<String>,
    pub created_unix: u64,
}

/// `GET /v1/apps/{app}/certificates`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateList {
    pub certificates: Vec<Certificate>,
}

/// The answer to an upload, an ACME request or a renewal: the certificate,
/// and the revision that carries it to nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateCreated {
    pub certificate: Certificate,
    pub revision: u64,
}

/// `GET/PUT /v1/apps/{app}/https` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpsSet {
    pub https: AppHttps,
    pub revision: u64,
}
