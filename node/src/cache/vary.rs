//! Vary normalisation: the values of the request headers a response's
//! `Vary` names are put in one canonical spelling before they key a
//! variant, so that spellings meaning the same thing share it
//! (`gzip, br` and `br,gzip`; `en-US,en;q=0.9` and `en-us, en;q=0.9`).
//! Only entries that have a `Vary` pay for this.
//!
//! - `Accept-Encoding`, `Accept-Language`: lowercased, whitespace removed,
//!   members with `q=0` dropped (except `*` and `identity`, whose `q=0`
//!   excludes what is not listed, so it changes the answer), sorted by q
//!   descending with the q-values themselves left out of the key. Codings
//!   of equal q are sorted by name (their order means nothing); language
//!   tags of equal q keep their order.
//! - Any other header: insignificant whitespace (around commas, leading
//!   and trailing, runs of spaces) dropped; case and order kept, since
//!   they may matter to the origin.

use http::{HeaderMap, HeaderValue, header};

/// The canonical value of the request's `name` fields (several lines are
/// one comma-joined value), `None` if absent.
pub fn normalized(request: &HeaderMap, name: &str) -> Option<HeaderValue> {
    let mut values = request.get_all(name).iter();
    let first = values.next()?;
    let joined;
    let value = match values.next() {
        None => first.as_bytes(),
        Some(second) => {
            let mut all = first.as_bytes().to_vec();
            for v in std::iter::once(second).chain(values) {
                all.extend_from_slice(b",");
                all.extend_from_slice(v.as_bytes());
            }
            joined = all;
            &joined
        }
    };
    // Obs-text (non-ASCII) is kept byte for byte: no spelling to fold.
    let Ok(text) = std::str::from_utf8(value) else {
        return HeaderValue::from_bytes(value).ok();
    };
    let canonical = if name.eq_ignore_ascii_case(header::ACCEPT_ENCODING.as_str()) {
        preference_list(text, true)
    } else if name.eq_ignore_ascii_case(header::ACCEPT_LANGUAGE.as_str()) {
        preference_list(text, false)
    } else {
        collapse_whitespace(text)
    };
    HeaderValue::from_str(&canonical)
        .ok()
        .or_else(|| HeaderValue::from_bytes(value).ok())
}

/// Whether the request's `name` fields normalise to `stored` (the
/// canonical value kept in the entry). The common case, a request spelled
/// the canonical way already, costs no allocation.
pub fn matches(request: &HeaderMap, name: &str, stored: Option<&HeaderValue>) -> bool {
    let mut values = request.get_all(name).iter();
    match (values.next(), values.next(), stored) {
        (None, _, None) => true,
        (None, _, Some(_)) | (Some(_), _, None) => false,
        (Some(only), None, Some(stored)) if only == stored => true,
        _ => normalized(request, name).as_ref() == stored,
    }
}

/// A q-weighted list (`gzip;q=0.8, br`) as its members in preference
/// order, without the q-values: `br,gzip`.
fn preference_list(value: &str, sort_equal_q: bool) -> String {
    let mut members: Vec<(u16, String)> = Vec::new();
    for member in value.split(',') {
        let member: String = member
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .map(|c| c.to_ascii_lowercase())
            .collect();
        if member.is_empty() {
            continue;
        }
        let mut parts = member.split(';');
        let token = parts.next().unwrap_or_default();
        let mut q = 1000;
        let mut params = Vec::new();
        for param in parts {
            match param.strip_prefix("q=") {
                // An invalid q-value is read as no q-value at all (1):
                // the member stays, so nothing acceptable is dropped.
                Some(weight) => q = qvalue(weight).unwrap_or(1000),
                None if !param.is_empty() => params.push(param),
                None => {}
            }
        }
        let mut key = token.to_string();
        for param in params {
            key.push(';');
            key.push_str(param);
        }
        if q == 0 {
            // "Not this", which only changes the answer for `*` and
            // `identity` (they exclude what the list does not name).
            if token == "*" || token == "identity" {
                key.push_str(";q=0");
            } else {
                continue;
            }
        }
        members.push((q, key));
    }
    if sort_equal_q {
        members.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    } else {
        // Stable: language tags of equal weight keep their order.
        members.sort_by_key(|m| std::cmp::Reverse(m.0));
    }
    members.dedup_by(|a, b| a.1 == b.1);
    let mut out = String::with_capacity(value.len());
    for (i, (_, key)) in members.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(key);
    }
    out
}

/// RFC 9110 §12.4.2 qvalue in thousandths: `0`, `0.5`, `1.000`.
fn qvalue(s: &str) -> Option<u16> {
    let (whole, fraction) = s.split_once('.').unwrap_or((s, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = format!("{fraction:0<3}").parse::<u16>().ok()?;
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// Drops whitespace around commas, at both ends, and folds runs of spaces
/// and tabs into one space.
fn collapse_whitespace(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for (i, member) in value.split(',').enumerate() {
        if i > 0 {
            out.push(',');
        }
        let mut words = member.split_ascii_whitespace();
        if let Some(word) = words.next() {
            out.push_str(word);
        }
        for word in words {
            out.push(' ');
            out.push_str(word);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(name: &str, values: &[&str]) -> String {
        let mut request = HeaderMap::new();
        for v in values {
            request.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        normalized(&request, name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_else(|| "<absent>".into())
    }

    #[test]
    fn accept_encoding_spellings_that_mean_the_same_share_a_key() {
        let ae = |v: &str| norm("accept-encoding", &[v]);
        assert_eq!(ae("gzip, br"), "br,gzip");
        assert_eq!(ae("br,gzip"), "br,gzip");
        assert_eq!(ae(" GZIP ,  Br "), "br,gzip");
        assert_eq!(ae("gzip;q=1.0, br;q=1"), "br,gzip");
        assert_eq!(ae("gzip;q=0.5, br"), "br,gzip");
        assert_eq!(ae("zstd;q=0.9, gzip;q=0.5, br;q=1"), "br,zstd,gzip");
        assert_eq!(ae("gzip, deflate;q=0"), "gzip", "q=0 means not acceptable");
        assert_eq!(ae("gzip, deflate;q=0.000"), "gzip");
        assert_eq!(ae("gzip, gzip"), "gzip");
        assert_eq!(norm("accept-encoding", &["gzip", "br"]), "br,gzip");
        // Exclusions by `*` and `identity` change the answer: kept.
        assert_eq!(ae("gzip, *;q=0"), "gzip,*;q=0");
        assert_ne!(ae("gzip, *;q=0"), ae("gzip"));
        assert_eq!(ae("identity;q=0, br"), "br,identity;q=0");
        assert_eq!(ae("*"), "*");
        // Invalid q-values keep the member (read as q=1).
        assert_eq!(ae("gzip;q=2, br;q=abc"), "br,gzip");
        assert_eq!(ae(""), "");
        assert_eq!(norm("accept-encoding", &[]), "<absent>");
    }

    #[test]
    fn accept_language_keeps_the_order_of_equal_weights() {
        let al = |v: &str| norm("accept-language", &[v]);
        assert_eq!(al("en-US,en;q=0.9"), "en-us,en");
        assert_eq!(al("en-us, en;q=0.9"), "en-us,en");
        assert_eq!(al("fr;q=0.5, de, en-GB;q=0.8"), "de,en-gb,fr");
        assert_eq!(al("de, fr"), "de,fr");
        assert_eq!(al("fr, de"), "fr,de", "equal q: order is the client's");
        assert_eq!(al("fr, de;q=0"), "fr");
        assert_eq!(al("fr, *;q=0"), "fr,*;q=0");
    }

    #[test]
    fn other_headers_lose_only_insignificant_whitespace() {
        let other = |v: &str| norm("x-device", &[v]);
        assert_eq!(other("  Mobile ,  Tablet   Pro "), "Mobile,Tablet Pro");
        assert_eq!(other("Mobile,Tablet Pro"), "Mobile,Tablet Pro");
        assert_ne!(other("mobile"), other("Mobile"), "case may matter");
        assert_ne!(other("a,b"), other("b,a"), "order may matter");
        assert_eq!(norm("x-device", &["a ", " b"]), "a,b");
    }

    #[test]
    fn matching_normalises_the_request_only_when_needed() {
        let stored = normalized(
            &[(header::ACCEPT_ENCODING, "br, gzip".parse().unwrap())]
                .into_iter()
                .collect(),
            "accept-encoding",
        );
        let request = |v: &str| -> HeaderMap {
            [(header::ACCEPT_ENCODING, v.parse().unwrap())]
                .into_iter()
                .collect()
        };
        assert!(matches(
            &request("br,gzip"),
            "accept-encoding",
            stored.as_ref()
        ));
        assert!(matches(
            &request("gzip , BR;q=1"),
            "accept-encoding",
            stored.as_ref()
        ));
        assert!(!matches(
            &request("gzip"),
            "accept-encoding",
            stored.as_ref()
        ));
        assert!(!matches(
            &HeaderMap::new(),
            "accept-encoding",
            stored.as_ref()
        ));
        assert!(matches(&HeaderMap::new(), "accept-encoding", None));
        assert!(!matches(&request("gzip"), "accept-encoding", None));
    }
}
