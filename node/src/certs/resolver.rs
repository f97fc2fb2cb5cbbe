//! The SNI resolver: two certificate sets behind atomic swaps, looked up
//! by hash map (see the module doc of `certs` for the order).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::development::DevelopmentCertificates;
use super::load::{TlsError, load_files};
use crate::config::TlsConfig;
use crate::names::HostPattern;

/// Which of two certificates for the same name in one set wins: the higher
/// rank. Synced certificates rank by (notAfter, id), so a renewal takes
/// over from the certificate it renews; file certificates by their place
/// in the file, first listed first.
pub type Rank = (u64, u64);

struct Ranked {
    rank: Rank,
    key: Arc<CertifiedKey>,
}

/// Certificates by exact name and by wildcard parent.
#[derive(Default)]
pub struct CertSet {
    exact: HashMap<String, Ranked>,
    /// `*.example.com` is kept under `.example.com`: a name's parent is
    /// everything from its first dot, so one lookup finds it, and `*`
    /// stands for exactly one label (RFC 6125 §6.4.3).
    wildcard: HashMap<String, Ranked>,
    /// For unknown names and clients without SNI (file certificates only).
    default: Option<Arc<CertifiedKey>>,
}

impl CertSet {
    /// Serves `key` for `hosts` unless a name already has a higher-ranked
    /// certificate. `*` (any name) is not a name: it is ignored here; the
    /// file certificates make it their default.
    pub fn insert(&mut self, hosts: &[HostPattern], key: &Arc<CertifiedKey>, rank: Rank) {
        for host in hosts {
            let map = match host {
                HostPattern::Exact(name) => (&mut self.exact, name),
                HostPattern::Wildcard(parent) => (&mut self.wildcard, parent),
                HostPattern::Any => continue,
            };
            let (map, name) = map;
            match map.get(name.as_str()) {
                Some(held) if held.rank >= rank => {}
                _ => {
                    map.insert(
                        name.clone(),
                        Ranked {
                            rank,
                            key: key.clone(),
                        },
                    );
                }
            }
        }
    }

    fn exact(&self, name: &str) -> Option<&Arc<CertifiedKey>> {
        self.exact.get(name).map(|r| &r.key)
    }

    fn wildcard(&self, parent: &str) -> Option<&Arc<CertifiedKey>> {
        self.wildcard.get(parent).map(|r| &r.key)
    }
}

/// The node's own certificates: from `tls.certificates`, or made on demand
/// in development mode. Replaced whole on `SIGHUP`.
#[derive(Default)]
pub struct OwnCertificates {
    set: CertSet,
    development: Option<DevelopmentCertificates>,
    /// Each file certificate's metric name (`file:INDEX`, its place in
    /// `tls.certificates`) and notAfter, when the leaf could be read.
    pub expiry: Vec<(String, i64)>,
}

impl OwnCertificates {
    /// Reads every certificate `tls` names; any failure fails the whole.
    pub fn load(tls: &TlsConfig) -> Result<Self, TlsError> {
        let mut own = OwnCertificates::default();
        match tls {
            TlsConfig::SelfSigned => own.development = Some(DevelopmentCertificates::new()?),
            TlsConfig::Files { certificates } => {
                let (mut marked, mut catch_all) = (None, None);
                for (i, cert) in certificates.iter().enumerate() {
                    let loaded = load_files(&cert.cert_path, &cert.key_path)?;
                    own.set
                        .insert(&cert.hosts, &loaded.key, (u64::MAX - i as u64, 0));
                    if cert.default {
                        marked.get_or_insert_with(|| loaded.key.clone());
                    }
                    if cert.hosts.contains(&HostPattern::Any) {
                        catch_all.get_or_insert_with(|| loaded.key.clone());
                    }
                    if let Some(not_after) = loaded.not_after_unix {
                        own.expiry.push((format!("file:{i}"), not_after));
                    }
                }
                // `default = true` says it outright; a `*` host says it too.
                own.set.default = marked.or(catch_all);
            }
        }
        Ok(own)
    }
}

/// Picks the certificate for each handshake. rustls calls it once per
/// handshake and the connection keeps what it returned, so a swap changes
/// new handshakes only.
pub struct CertResolver {
    own: ArcSwap<OwnCertificates>,
    synced: ArcSwap<CertSet>,
}

impl std::fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertResolver")
            .field("own", &self.own.load().set.exact.len())
            .field("synced", &self.synced.load().exact.len())
            .finish()
    }
}

impl CertResolver {
    pub fn new(own: OwnCertificates) -> Self {
        Self {
            own: ArcSwap::from_pointee(own),
            synced: ArcSwap::from_pointee(CertSet::default()),
        }
    }

    /// From now on, serves `own` as the node's own certificates; returns
    /// the ones replaced.
    pub fn replace_own(&self, own: OwnCertificates) -> Arc<OwnCertificates> {
        self.own.swap(Arc::new(own))
    }

    /// From now on, serves `synced` as the control plane's certificates.
    pub fn replace_synced(&self, synced: CertSet) {
        self.synced.store(Arc::new(synced));
    }

    /// The certificate for a client that sent `sni` (already lowercase
    /// from rustls; `None`: no SNI).
    pub fn pick(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let own = self.own.load();
        if let Some(sni) = sni {
            let synced = self.synced.load();
            let name = normalize(sni);
            let found = synced
                .exact(&name)
                .or_else(|| own.set.exact(&name))
                .or_else(|| {
                    let parent = parent_of(&name)?;
                    synced.wildcard(parent).or_else(|| own.set.wildcard(parent))
                });
            if let Some(key) = found {
                return Some(key.clone());
            }
        }
        own.set.default.clone().or_else(|| {
            own.development
                .as_ref()
                .and_then(|development| development.for_name(sni))
        })
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.pick(hello.server_name())
    }
}

/// `sni` without a trailing dot, lowercase; borrowed when it already is
/// (rustls lowercases SNI, so a handshake allocates nothing here).
fn normalize(sni: &str) -> Cow<'_, str> {
    let name = sni.strip_suffix('.').unwrap_or(sni);
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    }
}

/// `.b.c` for `a.b.c`: the key a `*.b.c` certificate is kept under. A name
/// without a dot, or starting with one, has no wildcard parent.
fn parent_of(name: &str) -> Option<&str> {
    match name.find('.') {
        Some(at) if at > 0 && at + 1 < name.len() => Some(&name[at..]),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CertificateConfig;

    fn key() -> Arc<CertifiedKey> {
        let made = rcgen::generate_simple_self_signed(vec!["x.test".to_string()]).unwrap();
        let der = rustls_pki_types::PrivateKeyDer::Pkcs8(made.signing_key.serialize_der().into());
        let signer = rustls::crypto::ring::sign::any_supported_type(&der).unwrap();
        Arc::new(CertifiedKey::new(vec![made.cert.der().clone()], signer))
    }

    fn hosts(list: &[&str]) -> Vec<HostPattern> {
        list.iter()
            .map(|h| HostPattern::try_from(h.to_string()).unwrap())
            .collect()
    }

    fn same(a: Option<Arc<CertifiedKey>>, b: &Arc<CertifiedKey>) -> bool {
        a.is_some_and(|a| Arc::ptr_eq(&a, b))
    }

    fn own(set: CertSet) -> OwnCertificates {
        OwnCertificates {
            set,
            ..OwnCertificates::default()
        }
    }

    #[test]
    fn exact_names_then_the_wildcard_of_the_parent() {
        let (exact, wild, deeper) = (key(), key(), key());
        let mut set = CertSet::default();
        set.insert(&hosts(&["shop.test"]), &exact, (1, 1));
        set.insert(&hosts(&["*.shop.test"]), &wild, (1, 2));
        set.insert(&hosts(&["*.eu.shop.test"]), &deeper, (1, 3));
        let resolver = CertResolver::new(OwnCertificates::default());
        resolver.replace_synced(set);
        assert!(same(resolver.pick(Some("shop.test")), &exact));
        assert!(same(resolver.pick(Some("www.shop.test")), &wild));
        assert!(same(resolver.pick(Some("WWW.Shop.Test.")), &wild));
        // `*` is one label: a.eu.shop.test is not under *.shop.test.
        assert!(same(resolver.pick(Some("a.eu.shop.test")), &deeper));
        assert!(resolver.pick(Some("a.b.eu.shop.test")).is_none());
        assert!(resolver.pick(Some("other.test")).is_none());
        assert!(resolver.pick(Some("test")).is_none());
        assert!(resolver.pick(None).is_none());
    }

    #[test]
    fn more_specific_wins_then_synced_over_file() {
        let (file_exact, file_wild, synced_exact, synced_wild) = (key(), key(), key(), key());
        let mut files = CertSet::default();
        files.insert(&hosts(&["a.shop.test", "b.shop.test"]), &file_exact, (9, 0));
        files.insert(&hosts(&["*.shop.test", "*.other.test"]), &file_wild, (8, 0));
        let resolver = CertResolver::new(own(files));
        let mut synced = CertSet::default();
        synced.insert(&hosts(&["b.shop.test"]), &synced_exact, (1, 1));
        synced.insert(&hosts(&["*.shop.test"]), &synced_wild, (1, 2));
        resolver.replace_synced(synced);
        // A file's exact name beats a synced wildcard.
        assert!(same(resolver.pick(Some("a.shop.test")), &file_exact));
        // Same specificity: the synced certificate.
        assert!(same(resolver.pick(Some("b.shop.test")), &synced_exact));
        assert!(same(resolver.pick(Some("c.shop.test")), &synced_wild));
        assert!(same(resolver.pick(Some("x.other.test")), &file_wild));
        // The synced set goes: the files' certificates come back.
        resolver.replace_synced(CertSet::default());
        assert!(same(resolver.pick(Some("b.shop.test")), &file_exact));
        assert!(same(resolver.pick(Some("c.shop.test")), &file_wild));
    }

    #[test]
    fn within_a_set_the_higher_rank_holds_a_name() {
        let (old, renewed) = (key(), key());
        let mut set = CertSet::default();
        set.insert(&hosts(&["a.test", "*.a.test"]), &renewed, (200, 1));
        set.insert(&hosts(&["a.test", "*.a.test"]), &old, (100, 2));
        let resolver = CertResolver::new(OwnCertificates::default());
        resolver.replace_synced(set);
        assert!(same(resolver.pick(Some("a.test")), &renewed));
        assert!(same(resolver.pick(Some("x.a.test")), &renewed));
    }

    #[test]
    fn unknown_names_and_no_sni_get_the_default_or_a_development_certificate() {
        let (default, synced) = (key(), key());
        let files = CertSet {
            default: Some(default.clone()),
            ..CertSet::default()
        };
        let resolver = CertResolver::new(own(files));
        let mut set = CertSet::default();
        set.insert(&hosts(&["a.test"]), &synced, (1, 1));
        resolver.replace_synced(set);
        assert!(same(resolver.pick(Some("unknown.test")), &default));
        assert!(same(resolver.pick(None), &default));
        assert!(same(resolver.pick(Some("a.test")), &synced));

        let development = OwnCertificates {
            development: Some(DevelopmentCertificates::new().unwrap()),
            ..OwnCertificates::default()
        };
        resolver.replace_own(development);
        let mut set = CertSet::default();
        set.insert(&hosts(&["a.test"]), &synced, (1, 1));
        resolver.replace_synced(set);
        assert!(same(resolver.pick(Some("a.test")), &synced));
        let made = resolver
            .pick(Some("dev.test"))
            .expect("a development certificate");
        assert!(!Arc::ptr_eq(&made, &synced));
        assert!(resolver.pick(None).is_some());
    }

    #[test]
    fn a_synced_catch_all_is_never_a_default() {
        let tenant = key();
        let mut set = CertSet::default();
        set.insert(&hosts(&["*"]), &tenant, (1, 1));
        assert!(set.exact.is_empty() && set.wildcard.is_empty() && set.default.is_none());
        let resolver = CertResolver::new(OwnCertificates::default());
        resolver.replace_synced(set);
        assert!(resolver.pick(Some("any.test")).is_none());
        assert!(resolver.pick(None).is_none());
    }

    #[test]
    fn file_certificates_load_with_the_default_marked_or_catch_all() {
        let dir = tempfile::tempdir().unwrap();
        let mut certificates = Vec::new();
        for (i, (names, default)) in [(vec!["a.test"], false), (vec!["*"], false)]
            .into_iter()
            .enumerate()
        {
            let made = rcgen::generate_simple_self_signed(vec![format!("n{i}.test")]).unwrap();
            let cert_path = dir.path().join(format!("{i}.pem"));
            let key_path = dir.path().join(format!("{i}.key"));
            std::fs::write(&cert_path, made.cert.pem()).unwrap();
            std::fs::write(&key_path, made.signing_key.serialize_pem()).unwrap();
            certificates.push(CertificateConfig {
                hosts: hosts(&names),
                cert_path,
                key_path,
                default,
            });
        }
        let own = OwnCertificates::load(&TlsConfig::Files {
            certificates: certificates.clone(),
        })
        .unwrap();
        assert!(own.set.default.is_some());
        assert_eq!(
            own.expiry
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>(),
            ["file:0", "file:1"]
        );
        // A key that is not the certificate's is refused at load.
        certificates[0].key_path = certificates[1].key_path.clone();
        let err = OwnCertificates::load(&TlsConfig::Files { certificates })
            .err()
            .expect("mismatch refused");
        assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err}");
    }
}
