//! ACME HTTP-01 challenges (RFC 8555 §8.3) that every node answers for the
//! control plane: whichever node a CA's validation request reaches, it
//! finds `http://{host}/.well-known/acme-challenge/{token}` answered with
//! the key authorization. The pending set comes with each snapshot and is
//! swapped with the routing table.

use std::collections::HashMap;

use edge_common::sync::AcmeChallenge;
use http::{Method, Request};

/// Where a CA fetches HTTP-01 challenges. The node answers a GET or HEAD
/// of a pending (host, token) itself, before routing: the host may have no
/// app yet. Any other request under it is routed as usual, so an app can
/// answer challenges of its own (a tenant running certbot behind it).
pub const CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

/// Pending challenges: host, then token, to key authorization. As large as
/// the signed snapshot that listed them, no larger.
#[derive(Debug, Default)]
pub struct AcmeChallenges {
    by_host: HashMap<String, HashMap<String, String>>,
}

impl AcmeChallenges {
    pub fn new(challenges: &[AcmeChallenge]) -> Self {
        let mut by_host: HashMap<String, HashMap<String, String>> = HashMap::new();
        for challenge in challenges {
            let host = challenge.host.trim_end_matches('.').to_ascii_lowercase();
            by_host
                .entry(host)
                .or_default()
                .insert(challenge.token.clone(), challenge.key_authorization.clone());
        }
        Self { by_host }
    }

    /// The key authorization for `token` on `host` (normalised as
    /// `router::request_host` does); the token must match exactly.
    pub fn answer(&self, host: &str, token: &str) -> Option<&str> {
        self.by_host.get(host)?.get(token).map(String::as_str)
    }
}

/// The token of a challenge request's path, if the path is under
/// [`CHALLENGE_PREFIX`] (possibly empty or malformed: no challenge has it).
pub fn challenge_token(path: &str) -> Option<&str> {
    path.strip_prefix(CHALLENGE_PREFIX)
}

/// A GET or HEAD under [`CHALLENGE_PREFIX`]: what a CA validating HTTP-01
/// sends, over plain HTTP, so never redirected to HTTPS, whoever answers.
pub fn is_challenge_request<B>(request: &Request<B>) -> bool {
    (request.method() == Method::GET || request.method() == Method::HEAD)
        && challenge_token(request.uri().path()).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_only_the_exact_host_and_token() {
        let challenges = AcmeChallenges::new(&[AcmeChallenge {
            host: "Shop.Test.".into(),
            token: "tok-EN_1".into(),
            key_authorization: "tok-EN_1.thumb".into(),
        }]);
        assert_eq!(
            challenges.answer("shop.test", "tok-EN_1"),
            Some("tok-EN_1.thumb")
        );
        assert_eq!(challenges.answer("shop.test", "tok-en_1"), None);
        assert_eq!(challenges.answer("other.test", "tok-EN_1"), None);
        assert_eq!(
            challenge_token("/.well-known/acme-challenge/abc"),
            Some("abc")
        );
        assert_eq!(challenge_token("/.well-known/acme-challenge"), None);
        assert_eq!(challenge_token("/x"), None);
        let request = |method: Method, path: &str| {
            Request::builder()
                .method(method)
                .uri(path)
                .body(())
                .unwrap()
        };
        assert!(is_challenge_request(&request(
            Method::GET,
            "/.well-known/acme-challenge/a"
        )));
        assert!(is_challenge_request(&request(
            Method::HEAD,
            "/.well-known/acme-challenge/"
        )));
        assert!(!is_challenge_request(&request(
            Method::POST,
            "/.well-known/acme-challenge/a"
        )));
        assert!(!is_challenge_request(&request(
            Method::GET,
            "/.well-known/acme-challenges/a"
        )));
    }
}
