//! RFC 9213 targeted cache-control fields: `CDN-Cache-Control` (every CDN
//! honours it) and `Edge-Cache-Control` (this node only), which speak to
//! the edge cache ahead of `Surrogate-Control` and `Cache-Control`.
//!
//! Unlike `Cache-Control` they are Structured Field Dictionaries (RFC
//! 8941): `max-age=60, no-store, private=?0`. A field that does not parse
//! as one, or is empty, is ignored whole (RFC 9213 §2.1), and the next
//! field on the target list decides. Both are passed on to the client
//! unchanged: a CDN further down may be addressed by them too.

use std::time::Duration;

use http::{HeaderMap, HeaderName};
use sfv::{BareItem, Dictionary, ListEntry, Parser, Version};

use super::directives::CacheControl;

/// This node's own targeted field (documented in README's cache section).
pub const EDGE_CACHE_CONTROL: HeaderName = HeaderName::from_static("edge-cache-control");
/// RFC 9213 §3: the field every CDN obeys.
pub const CDN_CACHE_CONTROL: HeaderName = HeaderName::from_static("cdn-cache-control");

/// The fields this cache obeys, most specific first (RFC 9213 §2.2's
/// target list).
pub const TARGET_LIST: [HeaderName; 2] = [EDGE_CACHE_CONTROL, CDN_CACHE_CONTROL];

/// The directives of the first field on the target list with a valid,
/// non-empty value, or `None` when none has one (then `Surrogate-Control`
/// or `Cache-Control` decide).
pub fn targeted_directives(headers: &HeaderMap) -> Option<CacheControl> {
    TARGET_LIST
        .iter()
        .find_map(|name| parse_targeted(headers, name))
}

/// Whether any targeted field is present (valid or not): cheap, for the
/// "says nothing about caching" shortcut.
pub fn any_present(headers: &HeaderMap) -> bool {
    TARGET_LIST.iter().any(|name| headers.contains_key(name))
}

/// One targeted field's directives; `None` if it is absent, empty or not a
/// Dictionary.
fn parse_targeted(headers: &HeaderMap, name: &HeaderName) -> Option<CacheControl> {
    // Several field lines are one comma-joined value (RFC 9110 §5.3); the
    // lines are bounded by the server's header limits.
    let mut joined = String::new();
    for value in headers.get_all(name) {
        // Not visible ASCII: not a structured field at all.
        let value = value.to_str().ok()?.trim();
        if value.is_empty() {
            continue;
        }
        if !joined.is_empty() {
            joined.push_str(", ");
        }
        joined.push_str(value);
    }
    if joined.is_empty() {
        return None;
    }
    let dictionary: Dictionary = Parser::new(&joined)
        .with_version(Version::Rfc8941)
        .parse()
        .ok()?;
    let mut cc = CacheControl {
        targeted: true,
        ..CacheControl::default()
    };
    for (key, entry) in &dictionary {
        let seconds = || match entry {
            ListEntry::Item(item) => delta_seconds(&item.bare_item),
            ListEntry::InnerList(_) => None,
        };
        let flag = || match entry {
            // `?0` is an explicit "no"; any other value (a list of field
            // names for `no-cache` / `private`) restricts more, not less,
            // so it counts as set.
            ListEntry::Item(item) => item.bare_item.as_boolean() != Some(false),
            ListEntry::InnerList(_) => true,
        };
        // A directive whose value has the wrong type is ignored, not the
        // field (RFC 9213 §2.1).
        match key.as_str() {
            "max-age" => cc.max_age = seconds().or(cc.max_age),
            "s-maxage" => cc.s_maxage = seconds().or(cc.s_maxage),
            "stale-while-revalidate" => {
                cc.stale_while_revalidate = seconds().or(cc.stale_while_revalidate)
            }
            "stale-if-error" => cc.stale_if_error = seconds().or(cc.stale_if_error),
            "no-store" => cc.no_store = flag(),
            "no-cache" => cc.no_cache = flag(),
            "private" => cc.private = flag(),
            "public" => cc.public = flag(),
            "must-revalidate" => cc.must_revalidate = flag(),
            "proxy-revalidate" => cc.proxy_revalidate = flag(),
            "immutable" => cc.immutable = flag(),
            "must-understand" => cc.must_understand = flag(),
            _ => {}
        }
    }
    // Its `max-age` is this cache's lifetime (an `s-maxage` next to it
    // still wins), but is not copied into `s-maxage`: that would also make
    // answers to requests with `Authorization` shareable (RFC 9111 §3.5),
    // which only an explicit `s-maxage` or `public` may do.
    Some(cc)
}

/// A non-negative Integer, capped at 2^31 like delta-seconds (RFC 9111
/// §1.2.2); anything else (a negative number, a Decimal, a String) is not
/// a lifetime.
fn delta_seconds(item: &BareItem) -> Option<Duration> {
    let value = i64::from(item.as_integer()?);
    let secs = u64::try_from(value).ok()?.min(1 << 31);
    Some(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::cache::test_support::headers;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn directives_are_read_as_a_dictionary() {
        let cc = targeted_directives(&headers(&[(
            "cdn-cache-control",
            "max-age=60, stale-while-revalidate=30;x=1, stale-if-error=600, must-revalidate",
        )]))
        .unwrap();
        assert!(cc.targeted);
        assert_eq!(cc.max_age, Some(secs(60)));
        assert_eq!(
            cc.s_maxage, None,
            "max-age alone does not share authorized answers"
        );
        assert_eq!(cc.stale_while_revalidate, Some(secs(30)));
        assert_eq!(cc.stale_if_error, Some(secs(600)));
        assert!(cc.must_revalidate && !cc.no_store);

        let cc = targeted_directives(&headers(&[(
            "edge-cache-control",
            "max-age=10, s-maxage=90, no-store, private=?0, no-cache=(\"set-cookie\"), immutable",
        )]))
        .unwrap();
        assert_eq!((cc.max_age, cc.s_maxage), (Some(secs(10)), Some(secs(90))));
        assert!(cc.no_store && cc.no_cache && cc.immutable);
        assert!(!cc.private, "?0 is an explicit no");
        // Two field lines are one Dictionary.
        let cc = targeted_directives(&headers(&[
            ("cdn-cache-control", "max-age=5"),
            ("cdn-cache-control", "no-cache"),
        ]))
        .unwrap();
        assert_eq!(cc.max_age, Some(secs(5)));
        assert!(cc.no_cache);
    }

    #[test]
    fn the_most_specific_valid_field_wins_whole() {
        let both = headers(&[
            ("edge-cache-control", "max-age=10"),
            ("cdn-cache-control", "no-store, max-age=600"),
        ]);
        let cc = targeted_directives(&both).unwrap();
        assert_eq!(cc.max_age, Some(secs(10)));
        assert!(!cc.no_store, "nothing of CDN-Cache-Control is merged in");
        // An invalid Edge-Cache-Control falls back to CDN-Cache-Control.
        for invalid in [
            "max-age=\"60",
            "max-age=60,",
            "Max-Age=60",
            "max-age=60 no-store",
            "=5",
            "max-age=(1 2",
        ] {
            let cc = targeted_directives(&headers(&[
                ("edge-cache-control", invalid),
                ("cdn-cache-control", "max-age=600"),
            ]))
            .unwrap_or_else(|| panic!("{invalid}: CDN-Cache-Control decides"));
            assert_eq!(cc.max_age, Some(secs(600)), "{invalid}");
        }
        // Empty is not a value either.
        let cc = targeted_directives(&headers(&[
            ("edge-cache-control", ""),
            ("cdn-cache-control", "max-age=7"),
        ]))
        .unwrap();
        assert_eq!(cc.max_age, Some(secs(7)));
        // Nothing valid: Cache-Control's turn.
        assert!(targeted_directives(&headers(&[("cdn-cache-control", "max-age=1.5.5")])).is_none());
        assert!(targeted_directives(&headers(&[("cache-control", "max-age=60")])).is_none());
        assert!(any_present(&headers(&[("cdn-cache-control", "bogus=")])));
    }

    #[test]
    fn a_directive_of_the_wrong_type_is_ignored_not_the_field() {
        let cc = targeted_directives(&headers(&[(
            "cdn-cache-control",
            "max-age=\"60\", s-maxage=-5, stale-if-error=1.5, no-store",
        )]))
        .unwrap();
        assert_eq!(
            (cc.max_age, cc.s_maxage, cc.stale_if_error),
            (None, None, None)
        );
        assert!(cc.no_store);
        let huge = targeted_directives(&headers(&[(
            "cdn-cache-control",
            "max-age=999999999999999",
        )]))
        .unwrap();
        assert_eq!(huge.max_age, Some(secs(1 << 31)));
    }
}
