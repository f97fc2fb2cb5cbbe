//! Validated names: tenants, apps and hostnames.
//!
//! Tenant and app names become metric label values and log fields, so they
//! come only from configuration (never from a request) and are short and
//! plain by construction.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A name made of lowercase ASCII letters, digits and `-`, 1 to 63 bytes,
/// not starting or ending with `-`.
fn check_label(kind: &str, s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid {kind} `{s}`: use 1-63 lowercase letters, digits and `-`, not starting or ending with `-`"
        ))
    }
}

macro_rules! label_newtype {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                check_label($kind, &s)?;
                Ok(Self(s))
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                Self::try_from(s.to_string())
            }
        }

        impl From<$name> for String {
            fn from(name: $name) -> String {
                name.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

label_newtype!(
    /// A tenant id, for example `acme`.
    TenantId,
    "tenant id"
);
label_newtype!(
    /// An app name, unique within its tenant, for example `hello`.
    AppName,
    "app name"
);

/// A hostname an app answers to, or a certificate serves.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum HostPattern {
    /// One exact hostname, lowercase, without port.
    Exact(String),
    /// `*.example.com`: any name with at least one more label in front of the
    /// suffix (stored as `.example.com`), as in RFC 6125 wildcards.
    Wildcard(String),
    /// `*`: every hostname. Used by `edge-node serve` and catch-all apps.
    Any,
}

impl HostPattern {
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(name) => name == host,
            HostPattern::Wildcard(suffix) => {
                host.len() > suffix.len() && host.ends_with(suffix.as_str())
            }
            HostPattern::Any => true,
        }
    }
}

impl HostPattern {
    /// Whether some hostname matches both patterns. Two tenants' hostnames
    /// may never overlap: an exact name beats a wildcard in routing, so
    /// either could take the other's traffic.
    pub fn overlaps(&self, other: &HostPattern) -> bool {
        use HostPattern::*;
        match (self, other) {
            (Any, _) | (_, Any) => true,
            (Exact(a), Exact(b)) => a == b,
            (Exact(name), wildcard @ Wildcard(_)) | (wildcard @ Wildcard(_), Exact(name)) => {
                wildcard.matches(name)
            }
            (Wildcard(a), Wildcard(b)) => a.ends_with(b.as_str()) || b.ends_with(a.as_str()),
        }
    }
}

impl TryFrom<String> for HostPattern {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if s == "*" {
            return Ok(HostPattern::Any);
        }
        let lower = s.to_ascii_lowercase();
        if let Some(rest) = lower.strip_prefix("*.") {
            check_dns_name(rest).map_err(|e| format!("invalid hostname `{s}`: {e}"))?;
            return Ok(HostPattern::Wildcard(format!(".{rest}")));
        }
        check_dns_name(&lower).map_err(|e| format!("invalid hostname `{s}`: {e}"))?;
        Ok(HostPattern::Exact(lower))
    }
}

impl From<HostPattern> for String {
    fn from(host: HostPattern) -> String {
        host.to_string()
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact(name) => f.write_str(name),
            HostPattern::Wildcard(suffix) => write!(f, "*{suffix}"),
            HostPattern::Any => f.write_str("*"),
        }
    }
}

/// A DNS name (or an IPv4 literal): dot-separated labels of letters, digits
/// and `-`, at most 253 bytes. Expects lowercase input.
pub fn check_dns_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 253 {
        return Err("must be 1 to 253 bytes");
    }
    // Over bytes, not `str::split`: every request's host goes through here,
    // and the string searcher cost more than the checks for short labels.
    for label in name.as_bytes().split(|&b| b == b'.') {
        if label.is_empty() || label.len() > 63 {
            return Err("each dot-separated label must be 1 to 63 bytes");
        }
        if !label
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err("use letters, digits, `-` and `.` only");
        }
        if label.first() == Some(&b'-') || label.last() == Some(&b'-') {
            return Err("a label may not start or end with `-`");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(s: &str) -> Result<HostPattern, String> {
        HostPattern::try_from(s.to_string())
    }

    #[test]
    fn each_dns_name_rule_has_its_own_answer_checked_label_by_label() {
        let long = "a".repeat(64);
        for (name, answer) in [
            ("a.test", Ok(())),
            ("xn--bcher-kva.example", Ok(())),
            ("127.0.0.1", Ok(())),
            ("", Err("must be 1 to 253 bytes")),
            (&*"a.".repeat(127), Err("must be 1 to 253 bytes")),
            (
                "a..test",
                Err("each dot-separated label must be 1 to 63 bytes"),
            ),
            (
                "a.test.",
                Err("each dot-separated label must be 1 to 63 bytes"),
            ),
            (
                &*format!("{long}.test"),
                Err("each dot-separated label must be 1 to 63 bytes"),
            ),
            ("a_b.test", Err("use letters, digits, `-` and `.` only")),
            ("A.test", Err("use letters, digits, `-` and `.` only")),
            ("\u{e9}.test", Err("use letters, digits, `-` and `.` only")),
            ("-a.test", Err("a label may not start or end with `-`")),
            ("a.test-", Err("a label may not start or end with `-`")),
            // The first label with a problem decides, and within a label,
            // length before characters before hyphens.
            ("-a._b", Err("a label may not start or end with `-`")),
            ("_-.a", Err("use letters, digits, `-` and `.` only")),
        ] {
            assert_eq!(check_dns_name(name), answer, "{name:?}");
        }
    }

    #[test]
    fn hostnames_are_lowercased_and_checked() {
        assert_eq!(
            host("Hello.Test").unwrap(),
            HostPattern::Exact("hello.test".into())
        );
        assert_eq!(
            host("127.0.0.1").unwrap(),
            HostPattern::Exact("127.0.0.1".into())
        );
        assert!(host("").is_err());
        assert!(host("bad host").is_err());
        assert!(host("a..b").is_err());
        assert!(host("-a.test").is_err());
        assert!(host("a.test:8080").is_err());
        assert!(host(&"a".repeat(64)).is_err());
        assert!(host("*.*.test").is_err());
    }

    #[test]
    fn wildcards_need_one_more_label() {
        let w = host("*.example.com").unwrap();
        assert!(w.matches("a.example.com"));
        assert!(w.matches("a.b.example.com"));
        assert!(!w.matches("example.com"));
        assert!(!w.matches(".example.com"));
        assert!(!w.matches("aexample.com"));
        assert!(host("*").unwrap().matches("anything.test"));
    }

    #[test]
    fn overlaps_cover_exact_names_under_wildcards() {
        let o = |a: &str, b: &str| host(a).unwrap().overlaps(&host(b).unwrap());
        assert!(o("a.test", "a.test"));
        assert!(!o("a.test", "b.test"));
        assert!(o("*.shop.test", "www.shop.test"));
        assert!(o("www.shop.test", "*.shop.test"));
        assert!(!o("*.shop.test", "shop.test"));
        assert!(o("*.shop.test", "*.a.shop.test"));
        assert!(o("*.a.shop.test", "*.shop.test"));
        assert!(!o("*.shop.test", "*.myshop.test"));
        assert!(!o("*.shop.test", "*.test.shop"));
        assert!(o("*", "x.test"));
    }

    #[test]
    fn labels_are_plain() {
        assert!(AppName::try_from("hello-2".to_string()).is_ok());
        for bad in ["", "Hello", "a_b", "-a", "a-", "a b", "ä"] {
            assert!(AppName::try_from(bad.to_string()).is_err(), "{bad}");
        }
        assert!(TenantId::try_from("x".repeat(64)).is_err());
    }
}
