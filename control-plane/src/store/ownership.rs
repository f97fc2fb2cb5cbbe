//! Which hostnames a tenant may have a certificate served for: one rule,
//! used by every store backend when it builds a snapshot (a certificate
//! keeps only the names its tenant still owns) and by the API when it
//! checks an upload or an ACME request.
//!
//! A tenant owns, for certificates:
//! - an exact name that one of its apps lists exactly, or that a one-label
//!   wildcard of one of its apps covers (`*.example.com` owns
//!   `a.example.com`, not `a.b.example.com`: a TLS wildcard covers one
//!   label, RFC 6125 §6.4.3, and a deeper name may belong to another
//!   tenant's `*.b.example.com`);
//! - a wildcard only if one of its apps lists that same wildcard (a
//!   tenant's `a.example.com` does not make `*.example.com` its own);
//! - never `*` (no certificate is for every name).
//!
//! Lookups are hash-set probes, never scans: a snapshot checks every host
//! of every certificate.

use std::collections::HashSet;

use edge_common::names::HostPattern;

/// The host patterns one tenant's apps list, for ownership lookups.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnedHosts(HashSet<HostPattern>);

impl OwnedHosts {
    pub fn new() -> Self {
        Self::default()
    }

    /// Notes one hostname of one of the tenant's apps.
    pub fn insert(&mut self, host: HostPattern) {
        self.0.insert(host);
    }

    /// Whether the tenant may have a certificate served for `host`.
    pub fn owns(&self, host: &HostPattern) -> bool {
        match host {
            HostPattern::Exact(name) => {
                self.0.contains(host)
                    || name.find('.').is_some_and(|dot| {
                        // `.example.com` of `a.example.com`: how the
                        // one-label wildcard above it is stored.
                        self.0
                            .contains(&HostPattern::Wildcard(name[dot..].to_string()))
                    })
            }
            HostPattern::Wildcard(_) => self.0.contains(host),
            HostPattern::Any => false,
        }
    }

    /// `hosts` without the names the tenant does not own, in their order.
    pub fn filter(&self, hosts: &[HostPattern]) -> Vec<HostPattern> {
        hosts.iter().filter(|h| self.owns(h)).cloned().collect()
    }
}

impl FromIterator<HostPattern> for OwnedHosts {
    fn from_iter<I: IntoIterator<Item = HostPattern>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(s: &str) -> HostPattern {
        HostPattern::try_from(s.to_string()).expect("valid host")
    }

    fn owned(hosts: &[&str]) -> OwnedHosts {
        hosts.iter().map(|h| host(h)).collect()
    }

    #[test]
    fn an_exact_name_is_owned_when_listed_or_under_a_one_label_wildcard() {
        let o = owned(&["shop.example.com", "*.apps.example.com"]);
        assert!(o.owns(&host("shop.example.com")));
        assert!(o.owns(&host("a.apps.example.com")));
        assert!(!o.owns(&host("a.b.apps.example.com")), "two labels deep");
        assert!(!o.owns(&host("apps.example.com")), "the wildcard's parent");
        assert!(!o.owns(&host("other.example.com")));
        assert!(!o.owns(&host("example.com")));
    }

    #[test]
    fn a_wildcard_is_owned_only_when_listed_itself() {
        let o = owned(&["*.apps.example.com", "www.example.com", "*"]);
        assert!(o.owns(&host("*.apps.example.com")));
        assert!(!o.owns(&host("*.example.com")), "an exact name under it");
        assert!(!o.owns(&host("*.b.apps.example.com")), "nested under it");
        assert!(!o.owns(&host("*")), "never every name");
        assert!(!o.owns(&host("anything.test")), "`*` owns no exact name");
    }

    #[test]
    fn filter_keeps_order_and_drops_what_is_not_owned() {
        let o = owned(&["b.test", "*.w.test"]);
        let kept = o.filter(&[
            host("x.w.test"),
            host("a.test"),
            host("b.test"),
            host("*.w.test"),
        ]);
        assert_eq!(
            kept,
            vec![host("x.w.test"), host("b.test"), host("*.w.test")]
        );
        assert!(OwnedHosts::new().filter(&[host("b.test")]).is_empty());
    }

    #[test]
    fn a_single_label_name_has_no_wildcard_parent() {
        let o = owned(&["*.localhost"]);
        assert!(!o.owns(&host("localhost")));
        assert!(o.owns(&host("a.localhost")));
    }
}
