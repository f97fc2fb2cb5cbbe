//! Tenants' TLS certificates before they are stored: the chain and key
//! read and checked ([`check`]), the key sealed under the key-encryption
//! key ([`Checked::seal`], or both at once with [`material`], which the
//! ACME worker uses for what its CA sends), and the hostname rules an
//! upload or an ACME request must meet ([`upload_hosts`], [`acme_hosts`]).
//! Pure: no store, no HTTP; the API maps [`CertError`] to its responses.
//!
//! The chain and key are written back as plain PEM: only the chain's
//! `CERTIFICATE` sections, only the key's one private-key section. So a
//! key pasted into the chain by mistake is never stored in the clear, and
//! the bundle a node fetches holds exactly a chain and a key.

use std::time::{Duration, UNIX_EPOCH};

use edge_common::names::{AppName, HostPattern, TenantId};
use edge_common::signing::sha256_hex;
use edge_common::sync::{MAX_CERTIFICATE_BUNDLE_BYTES, certificate_bundle};
use edge_common::tls::{CertifiedKeyError, certified_key};
use rustls_pki_types::pem::{PemObject, SectionKind};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::extensions::GeneralName;

use crate::seal::{Keyring, SealError, tls_key_aad};
use crate::store::{CertMaterial, OwnedHosts, now_unix};

/// Hostnames one certificate may be served for: more than any real
/// certificate lists (public CAs stop at 100 SANs), and each is a key in
/// every node's SNI map.
pub const MAX_CERT_HOSTS: usize = 100;
/// Certificates in an uploaded chain: a leaf and a few intermediates; real
/// chains have 2 to 4.
pub const MAX_CHAIN_CERTIFICATES: usize = 10;

/// Why a certificate is refused. Messages name the host or the rule, never
/// any key material.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// `cert-invalid`: unparseable, empty, too big, no usable name, too
    /// many hosts.
    #[error("{0}")]
    Invalid(String),
    /// `cert-key-mismatch`.
    #[error("the private key does not belong to the leaf certificate (their public keys differ)")]
    KeyMismatch,
    /// `cert-expired`.
    #[error("the leaf certificate expired at {not_after} (its notAfter)")]
    Expired { not_after: String },
    /// `cert-not-yet-valid`.
    #[error("the leaf certificate is not valid before {not_before} (its notBefore)")]
    NotYetValid { not_before: String },
    /// `cert-host-not-covered`: a listed host the leaf's names do not
    /// cover.
    #[error(
        "{host} is not covered by the certificate's names ({names}); a wildcard covers exactly one label"
    )]
    HostNotCovered { host: String, names: String },
    /// `cert-host-not-owned`: a host none of the tenant's apps claims (or
    /// another tenant's; which is not said).
    #[error("{host} {rule}")]
    HostNotOwned { host: String, rule: &'static str },
    /// `cert-wildcard-not-supported`: ACME validates over HTTP-01, which
    /// cannot prove a wildcard.
    #[error(
        "{host}: ACME certificates are validated over HTTP-01, which cannot validate a wildcard; upload a wildcard certificate instead"
    )]
    WildcardNotSupported { host: String },
    /// Not the client's fault: no randomness to seal with.
    #[error("cannot seal the private key: {0}")]
    Seal(#[from] SealError),
}

impl CertError {
    /// The stable code of the API's refusal.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "cert-invalid",
            Self::KeyMismatch => "cert-key-mismatch",
            Self::Expired { .. } => "cert-expired",
            Self::NotYetValid { .. } => "cert-not-yet-valid",
            Self::HostNotCovered { .. } => "cert-host-not-covered",
            Self::HostNotOwned { .. } => "cert-host-not-owned",
            Self::WildcardNotSupported { .. } => "cert-wildcard-not-supported",
            Self::Seal(_) => "seal-failed",
        }
    }
}

fn invalid(message: impl Into<String>) -> CertError {
    CertError::Invalid(message.into())
}

/// A chain and key that parse, belong together and are valid now.
pub struct Checked {
    /// The chain as stored: its certificates only, PEM, leaf first.
    pub chain_pem: String,
    key_pem: String,
    /// The leaf's DNS names (its subjectAltName), as host patterns.
    pub names: Vec<HostPattern>,
    /// The leaf's issuer (its distinguished name).
    pub issuer: String,
    pub not_before_unix: u64,
    pub not_after_unix: u64,
}

// The key stays out of every log line.
impl std::fmt::Debug for Checked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checked")
            .field("names", &self.names)
            .field("issuer", &self.issuer)
            .field("not_before_unix", &self.not_before_unix)
            .field("not_after_unix", &self.not_after_unix)
            .finish_non_exhaustive()
    }
}

impl Checked {
    /// What the store keeps: the chain, the key sealed under the current
    /// key-encryption key (bound to the tenant, the app and this chain), the
    /// bundle's digest and size, and the leaf's issuer and validity.
    pub fn seal(
        &self,
        kek: &Keyring,
        tenant: &TenantId,
        app: &AppName,
    ) -> Result<CertMaterial, CertError> {
        let aad = tls_key_aad(tenant, app, &self.chain_pem);
        let sealed_key = kek.seal(self.key_pem.as_bytes(), &aad)?;
        let bundle = certificate_bundle(&self.chain_pem, &self.key_pem);
        Ok(CertMaterial {
            chain_pem: self.chain_pem.clone(),
            sealed_key,
            bundle_sha256: sha256_hex(bundle.as_bytes()),
            bundle_size: bundle.len() as u64,
            issuer: self.issuer.clone(),
            not_before_unix: self.not_before_unix,
            not_after_unix: self.not_after_unix,
        })
    }
}

/// [`check`] (at the current time) then [`Checked::seal`]: a
/// certificate's material from its chain and key (an upload's, or what an
/// ACME CA issued).
pub fn material(
    chain_pem: &str,
    key_pem: &str,
    kek: &Keyring,
    tenant: &TenantId,
    app: &AppName,
) -> Result<CertMaterial, CertError> {
    check(chain_pem, key_pem, now_unix())?.seal(kek, tenant, app)
}

/// Reads a chain (PEM, leaf first) and its leaf's private key (PEM:
/// PKCS#8, PKCS#1 or SEC1) and checks that they fit in a bundle, parse,
/// belong together and are valid at `now_unix`.
pub fn check(chain_pem: &str, key_pem: &str, now_unix: u64) -> Result<Checked, CertError> {
    let max = MAX_CERTIFICATE_BUNDLE_BYTES;
    if (chain_pem.len() + key_pem.len()) as u64 > max {
        return Err(invalid(format!(
            "the chain and key are {} bytes together; the most is {max}",
            chain_pem.len() + key_pem.len()
        )));
    }
    let chain = read_chain(chain_pem)?;
    let key = read_key(key_pem)?;

    let leaf_der = chain
        .first()
        .ok_or_else(|| invalid("chain_pem holds no CERTIFICATE"))?;
    let leaf = parse_certificate(leaf_der, 0)?;
    for (i, der) in chain.iter().enumerate().skip(1) {
        parse_certificate(der, i)?;
    }

    // The node serves the bundle through the same function: what passes
    // here loads there.
    certified_key(chain.clone(), &key).map_err(|e| match e {
        CertifiedKeyError::KeyMismatch => CertError::KeyMismatch,
        CertifiedKeyError::UnsupportedKey(_) => invalid(format!("key_pem: {e}")),
        _ => invalid(e.to_string()),
    })?;

    let validity = leaf.validity();
    let not_before_unix = u64::try_from(validity.not_before.timestamp()).unwrap_or(0);
    let not_after_unix = u64::try_from(validity.not_after.timestamp()).unwrap_or(0);
    if now_unix > not_after_unix {
        return Err(CertError::Expired {
            not_after: date(not_after_unix),
        });
    }
    if now_unix < not_before_unix {
        return Err(CertError::NotYetValid {
            not_before: date(not_before_unix),
        });
    }
    let names = dns_names(&leaf)?;
    let issuer = leaf.issuer().to_string();

    let chain_pem = encode(chain.iter().map(|der| ("CERTIFICATE", der.as_ref())));
    let key_pem = encode([(key_label(&key), key.secret_der())]);
    let bundle_size = certificate_bundle(&chain_pem, &key_pem).len() as u64;
    if bundle_size > max {
        return Err(invalid(format!(
            "the chain and key take {bundle_size} bytes as PEM; the most is {max}"
        )));
    }
    Ok(Checked {
        chain_pem,
        key_pem,
        names,
        issuer,
        not_before_unix,
        not_after_unix,
    })
}

/// Every `CERTIFICATE` of the chain, in order; other sections are left out.
fn read_chain(chain_pem: &str) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let mut chain = Vec::new();
    for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(chain_pem.as_bytes()) {
        let (kind, der) = section.map_err(|e| invalid(format!("chain_pem is not PEM: {e}")))?;
        if kind == SectionKind::Certificate {
            chain.push(CertificateDer::from(der));
        }
    }
    if chain.is_empty() {
        return Err(invalid("chain_pem holds no CERTIFICATE"));
    }
    if chain.len() > MAX_CHAIN_CERTIFICATES {
        return Err(invalid(format!(
            "chain_pem holds {} certificates; the most is {MAX_CHAIN_CERTIFICATES}",
            chain.len()
        )));
    }
    Ok(chain)
}

/// The one private key of `key_pem` (other sections, such as the chain of
/// a combined file, are left out).
fn read_key(key_pem: &str) -> Result<PrivateKeyDer<'static>, CertError> {
    let mut keys = Vec::new();
    for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(key_pem.as_bytes()) {
        // The error says where the PEM is broken, never what it holds.
        let (kind, der) = section.map_err(|e| invalid(format!("key_pem is not PEM: {e}")))?;
        let key = match kind {
            SectionKind::PrivateKey => PrivateKeyDer::Pkcs8(der.into()),
            SectionKind::RsaPrivateKey => PrivateKeyDer::Pkcs1(der.into()),
            SectionKind::EcPrivateKey => PrivateKeyDer::Sec1(der.into()),
            _ => continue,
        };
        keys.push(key);
    }
    match keys.len() {
        1 => Ok(keys.remove(0)),
        0 => Err(invalid(
            "key_pem holds no private key (PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)",
        )),
        n => Err(invalid(format!(
            "key_pem holds {n} private keys; send the leaf's only"
        ))),
    }
}

fn key_label(key: &PrivateKeyDer<'_>) -> &'static str {
    match key {
        PrivateKeyDer::Pkcs1(_) => "RSA PRIVATE KEY",
        PrivateKeyDer::Sec1(_) => "EC PRIVATE KEY",
        _ => "PRIVATE KEY",
    }
}

fn parse_certificate<'a>(
    der: &'a CertificateDer<'_>,
    index: usize,
) -> Result<x509_parser::certificate::X509Certificate<'a>, CertError> {
    x509_parser::parse_x509_certificate(der.as_ref())
        .map(|(_, cert)| cert)
        .map_err(|e| {
            invalid(format!(
                "certificate {} of chain_pem does not parse: {e}",
                index + 1
            ))
        })
}

/// The leaf's DNS names that are host patterns (`*.x.y` or exact); none
/// is an error, since no client would accept the certificate.
fn dns_names(
    leaf: &x509_parser::certificate::X509Certificate<'_>,
) -> Result<Vec<HostPattern>, CertError> {
    let san = leaf.subject_alternative_name().map_err(|e| {
        invalid(format!(
            "the leaf's subjectAltName extension does not parse: {e}"
        ))
    })?;
    let mut names: Vec<HostPattern> = Vec::new();
    for name in san.iter().flat_map(|san| san.value.general_names.iter()) {
        if let GeneralName::DNSName(dns) = name
            && let Ok(pattern) = HostPattern::try_from(dns.to_string())
            && pattern != HostPattern::Any
            && !names.contains(&pattern)
        {
            names.push(pattern);
        }
    }
    if names.is_empty() {
        return Err(invalid(
            "the leaf certificate names no DNS host in its subjectAltName (clients ignore the common name)",
        ));
    }
    Ok(names)
}

fn encode<'a>(sections: impl IntoIterator<Item = (&'static str, &'a [u8])>) -> String {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    sections
        .into_iter()
        .map(|(label, der)| pem::encode_config(&pem::Pem::new(label, der.to_vec()), config))
        .collect()
}

/// A Unix time as an RFC 3339 date and time, for messages.
fn date(unix: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(unix)).to_string()
}

/// Whether a certificate name covers `host` (RFC 6125 §6.4.3): an exact
/// name covers itself; `*.example.com` covers one more label in front
/// (`a.example.com`, not `a.b.example.com` nor `example.com`) and the same
/// wildcard.
pub fn covers(name: &HostPattern, host: &HostPattern) -> bool {
    match (name, host) {
        (HostPattern::Exact(name), HostPattern::Exact(host)) => name == host,
        (HostPattern::Wildcard(suffix), HostPattern::Exact(host)) => one_label_under(host, suffix),
        (HostPattern::Wildcard(a), HostPattern::Wildcard(b)) => a == b,
        _ => false,
    }
}

/// `host` is one label (non-empty, no dot) followed by `suffix`
/// (`.example.com`).
fn one_label_under(host: &str, suffix: &str) -> bool {
    host.strip_suffix(suffix)
        .is_some_and(|label| !label.is_empty() && !label.contains('.'))
}

const NOT_OWNED: &str = "is not a hostname of your apps: list it in one of your apps first (an exact name, or the wildcard one label above it)";
const WILDCARD_NOT_OWNED: &str = "is not claimed by any of your apps: a wildcard certificate needs an app with that same wildcard";

/// Ownership follows [`OwnedHosts::owns`], the rule snapshots apply too.
fn check_owned(owned: &OwnedHosts, host: &HostPattern) -> Result<(), CertError> {
    if owned.owns(host) {
        return Ok(());
    }
    Err(CertError::HostNotOwned {
        host: host.to_string(),
        rule: match host {
            HostPattern::Wildcard(_) => WILDCARD_NOT_OWNED,
            _ => NOT_OWNED,
        },
    })
}

/// Requested hostnames: 1 to [`MAX_CERT_HOSTS`], no `*`, none twice.
fn check_list(hosts: &[HostPattern]) -> Result<(), CertError> {
    if hosts.len() > MAX_CERT_HOSTS {
        return Err(invalid(format!(
            "{} hosts listed; a certificate serves at most {MAX_CERT_HOSTS}",
            hosts.len()
        )));
    }
    for (i, host) in hosts.iter().enumerate() {
        if *host == HostPattern::Any {
            return Err(invalid("`*` is not a hostname a certificate can serve"));
        }
        if hosts[..i].contains(host) {
            return Err(invalid(format!("{host} is listed twice")));
        }
    }
    Ok(())
}

/// The hostnames an uploaded certificate is served for: those `requested`
/// (each covered by one of the leaf's `names`), or if none are, every one
/// of its names; each owned by the tenant's apps.
pub fn upload_hosts(
    requested: &[HostPattern],
    names: &[HostPattern],
    owned: &OwnedHosts,
) -> Result<Vec<HostPattern>, CertError> {
    let hosts = if requested.is_empty() {
        if names.len() > MAX_CERT_HOSTS {
            return Err(invalid(format!(
                "the certificate names {} hosts; list at most {MAX_CERT_HOSTS} of them in `hosts`",
                names.len()
            )));
        }
        names.to_vec()
    } else {
        check_list(requested)?;
        if let Some(host) = requested
            .iter()
            .find(|host| !names.iter().any(|name| covers(name, host)))
        {
            return Err(CertError::HostNotCovered {
                host: host.to_string(),
                names: names
                    .iter()
                    .map(HostPattern::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        requested.to_vec()
    };
    for host in &hosts {
        check_owned(owned, host)?;
    }
    Ok(hosts)
}

/// The hostnames of an ACME request: 1 to [`MAX_CERT_HOSTS`] exact names
/// (HTTP-01 validates no wildcard), each owned by the tenant's apps.
pub fn acme_hosts(
    requested: &[HostPattern],
    owned: &OwnedHosts,
) -> Result<Vec<HostPattern>, CertError> {
    if requested.is_empty() {
        return Err(invalid("list the hostnames to issue the certificate for"));
    }
    check_list(requested)?;
    if let Some(host) = requested
        .iter()
        .find(|h| matches!(h, HostPattern::Wildcard(_)))
    {
        return Err(CertError::WildcardNotSupported {
            host: host.to_string(),
        });
    }
    for host in requested {
        check_owned(owned, host)?;
    }
    Ok(requested.to_vec())
}

#[cfg(test)]
mod tests;
