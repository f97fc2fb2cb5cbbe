//! API tokens: EdDSA-signed JWTs. Validation pins the algorithm, requires
//! `exp`, `nbf`, `aud`, `iss` and `sub`, and allows 5 s of clock skew.
//!
//! Roles: `admin` (everything), `tenant` (its own tenant's apps only; the
//! tenant id is in the token), `node` (sync, artifacts and reports; `sub`
//! is the node's name).

use std::time::Duration;

use edge_common::names::TenantId;
use edge_common::signing::SigningKey;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

pub const ISSUER: &str = "edge-cp";
pub const AUDIENCE: &str = "edge-api";
/// Clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY_SECS: u64 = 5;
/// Longest token lifetime `edge-cp token` issues.
pub const MAX_TTL: Duration = Duration::from_secs(366 * 24 * 3600);

/// The roles, as `GET /v1/whoami` shows them and tokens carry them.
pub use edge_common::api::Role;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    iss: String,
    aud: String,
    exp: u64,
    nbf: u64,
    iat: u64,
    role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tenant: Option<TenantId>,
}

/// Who is calling, after the token checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub role: Role,
    pub subject: String,
    /// Set for (and only for) tenant tokens.
    pub tenant: Option<TenantId>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("no bearer token: send `Authorization: Bearer <token>`")]
    Missing,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (nbf)")]
    NotYetValid,
    #[error("the token is not valid: {0}")]
    Invalid(String),
}

#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("a tenant token needs --tenant")]
    TenantRequired,
    #[error("only tenant tokens carry a tenant")]
    TenantNotAllowed,
    #[error("the lifetime must be between 1s and 366 days")]
    Ttl,
    #[error("cannot sign the token: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
}

pub struct Auth {
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// The key rotated out, still accepted until the operator retires it.
    previous: Option<DecodingKey>,
    validation: Validation,
}

impl Auth {
    /// From the PKCS#8 bytes of the token-signing key.
    pub fn new(pkcs8: &[u8]) -> Result<Self, edge_common::signing::KeyError> {
        Self::with_previous(pkcs8, None)
    }

    /// From the token-signing key and the one it replaced, whose tokens
    /// stay valid (until they expire) while the operator keeps it.
    pub fn with_previous(
        pkcs8: &[u8],
        previous: Option<&[u8]>,
    ) -> Result<Self, edge_common::signing::KeyError> {
        let decoding_key = |pkcs8: &[u8]| -> Result<DecodingKey, edge_common::signing::KeyError> {
            let public = SigningKey::from_pkcs8(pkcs8)?.verifying_key();
            let public = edge_common::signing::from_hex(&public.to_hex()).unwrap_or_default();
            Ok(DecodingKey::from_ed_der(&public))
        };
        let previous = previous.map(decoding_key).transpose()?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_required_spec_claims(&["exp", "nbf", "aud", "iss", "sub"]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_issuer(&[ISSUER]);
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        Ok(Self {
            encoding: EncodingKey::from_ed_der(pkcs8),
            decoding: decoding_key(pkcs8)?,
            previous,
            validation,
        })
    }

    pub fn issue(
        &self,
        role: Role,
        subject: &str,
        tenant: Option<TenantId>,
        ttl: Duration,
    ) -> Result<String, IssueError> {
        self.issue_at(role, subject, tenant, ttl, crate::store::now_unix())
    }

    /// [`Self::issue`] by an issuer whose clock reads `now` (Unix
    /// seconds): valid from `now` for `ttl`. For the clock-skew tests.
    pub fn issue_at(
        &self,
        role: Role,
        subject: &str,
        tenant: Option<TenantId>,
        ttl: Duration,
        now: u64,
    ) -> Result<String, IssueError> {
        match (role, &tenant) {
            (Role::Tenant, None) => return Err(IssueError::TenantRequired),
            (Role::Admin | Role::Node, Some(_)) => return Err(IssueError::TenantNotAllowed),
            _ => {}
        }
        if ttl < Duration::from_secs(1) || ttl > MAX_TTL {
            return Err(IssueError::Ttl);
        }
        let claims = Claims {
            sub: subject.to_string(),
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            iat: now,
            nbf: now,
            exp: now + ttl.as_secs(),
            role,
            tenant,
        };
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::EdDSA),
            &claims,
            &self.encoding,
        )?)
    }

    /// The key tokens are signed with (the fuzz target signs claims sets
    /// of its own making with it).
    #[doc(hidden)]
    pub fn encoding(&self) -> &EncodingKey {
        &self.encoding
    }

    /// Checks an `Authorization` header value.
    pub fn verify(&self, authorization: Option<&str>) -> Result<Principal, AuthError> {
        let token = authorization
            .and_then(|value| {
                value
                    .strip_prefix("Bearer ")
                    .or_else(|| value.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::Missing)?;
        let decoded = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation);
        let decoded = match (decoded, &self.previous) {
            (Err(e), Some(previous))
                if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::InvalidSignature) =>
            {
                jsonwebtoken::decode::<Claims>(token, previous, &self.validation)
            }
            (decoded, _) => decoded,
        };
        let data = decoded.map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                ErrorKind::InvalidSignature => AuthError::Invalid("bad signature".into()),
                ErrorKind::InvalidAudience => AuthError::Invalid("wrong audience".into()),
                ErrorKind::InvalidIssuer => AuthError::Invalid("wrong issuer".into()),
                ErrorKind::InvalidAlgorithm => AuthError::Invalid("algorithm not accepted".into()),
                ErrorKind::MissingRequiredClaim(claim) => {
                    AuthError::Invalid(format!("missing claim `{claim}`"))
                }
                _ => AuthError::Invalid("malformed token".into()),
            }
        })?;
        let claims = data.claims;
        match (claims.role, &claims.tenant) {
            (Role::Tenant, None) => {
                return Err(AuthError::Invalid("a tenant token without a tenant".into()));
            }
            (Role::Admin | Role::Node, Some(_)) => {
                return Err(AuthError::Invalid(
                    "only tenant tokens carry a tenant".into(),
                ));
            }
            _ => {}
        }
        Ok(Principal {
            role: claims.role,
            subject: claims.sub,
            tenant: claims.tenant,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        Auth::new(&SigningKey::generate_pkcs8().unwrap()).unwrap()
    }

    fn b64(bytes: &[u8]) -> String {
        // URL-safe base64 without padding, enough for hand-made tokens.
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
            for i in 0..=chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }

    fn hand_made(header: &str, claims: serde_json::Value, auth: &Auth) -> String {
        let signing_input = format!(
            "{}.{}",
            b64(header.as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig =
            jsonwebtoken::crypto::sign(signing_input.as_bytes(), &auth.encoding, Algorithm::EdDSA)
                .unwrap();
        format!("{signing_input}.{sig}")
    }

    fn claims(now: u64) -> serde_json::Value {
        serde_json::json!({
            "sub": "admin", "iss": ISSUER, "aud": AUDIENCE,
            "exp": now + 60, "nbf": now, "iat": now, "role": "admin"
        })
    }

    fn bearer(t: &str) -> String {
        format!("Bearer {t}")
    }

    #[test]
    fn issued_tokens_verify_with_their_role_and_tenant() {
        let auth = auth();
        let tenant = TenantId::try_from("acme".to_string()).unwrap();
        let t = auth
            .issue(
                Role::Tenant,
                "ci",
                Some(tenant.clone()),
                Duration::from_secs(60),
            )
            .unwrap();
        let p = auth.verify(Some(&bearer(&t))).unwrap();
        assert_eq!((p.role, p.tenant), (Role::Tenant, Some(tenant)));
        assert!(matches!(
            auth.issue(Role::Tenant, "x", None, Duration::from_secs(60)),
            Err(IssueError::TenantRequired)
        ));
        assert!(matches!(
            auth.issue(Role::Admin, "x", None, Duration::ZERO),
            Err(IssueError::Ttl)
        ));
    }

    #[test]
    fn every_bad_token_is_refused_with_its_reason() {
        let auth = auth();
        let now = crate::store::now_unix();
        assert_eq!(auth.verify(None), Err(AuthError::Missing));
        assert_eq!(auth.verify(Some("Basic abc")), Err(AuthError::Missing));
        assert!(matches!(
            auth.verify(Some("Bearer garbage")),
            Err(AuthError::Invalid(_))
        ));

        let good = hand_made(r#"{"alg":"EdDSA","typ":"JWT"}"#, claims(now), &auth);
        assert!(
            auth.verify(Some(&bearer(&good))).is_ok(),
            "the hand-made token is valid"
        );

        let mut expired = claims(now);
        expired["exp"] = (now - 30).into();
        assert_eq!(
            auth.verify(Some(&bearer(&hand_made(
                r#"{"alg":"EdDSA"}"#,
                expired,
                &auth
            )))),
            Err(AuthError::Expired)
        );

        // Within the 5 s leeway an expired token still passes; beyond, not.
        let mut skewed = claims(now);
        skewed["exp"] = (now - 2).into();
        assert!(
            auth.verify(Some(&bearer(&hand_made(
                r#"{"alg":"EdDSA"}"#,
                skewed,
                &auth
            ))))
            .is_ok()
        );

        let mut future = claims(now);
        future["nbf"] = (now + 600).into();
        assert_eq!(
            auth.verify(Some(&bearer(&hand_made(
                r#"{"alg":"EdDSA"}"#,
                future,
                &auth
            )))),
            Err(AuthError::NotYetValid)
        );

        for missing in ["exp", "nbf", "aud", "iss", "sub"] {
            let mut c = claims(now);
            c.as_object_mut().unwrap().remove(missing);
            assert!(
                matches!(
                    auth.verify(Some(&bearer(&hand_made(r#"{"alg":"EdDSA"}"#, c, &auth)))),
                    Err(AuthError::Invalid(_))
                ),
                "a token without `{missing}` is refused"
            );
        }

        let mut audience = claims(now);
        audience["aud"] = "someone-else".into();
        assert_eq!(
            auth.verify(Some(&bearer(&hand_made(
                r#"{"alg":"EdDSA"}"#,
                audience,
                &auth
            )))),
            Err(AuthError::Invalid("wrong audience".into()))
        );

        // alg=none: header says none, no signature.
        let none = format!(
            "{}.{}.",
            b64(br#"{"alg":"none","typ":"JWT"}"#),
            b64(claims(now).to_string().as_bytes())
        );
        assert!(matches!(
            auth.verify(Some(&bearer(&none))),
            Err(AuthError::Invalid(_))
        ));
        // HS256 with the public key as the secret (the classic confusion).
        let hs = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims(now),
            &EncodingKey::from_secret(b"secret"),
        )
        .unwrap();
        assert!(matches!(
            auth.verify(Some(&bearer(&hs))),
            Err(AuthError::Invalid(_))
        ));
        // Signed by another control plane's key.
        let other = auth_other_token(now);
        assert_eq!(
            auth.verify(Some(&bearer(&other))),
            Err(AuthError::Invalid("bad signature".into()))
        );
        // A tenant role without a tenant.
        let mut no_tenant = claims(now);
        no_tenant["role"] = "tenant".into();
        assert!(matches!(
            auth.verify(Some(&bearer(&hand_made(
                r#"{"alg":"EdDSA"}"#,
                no_tenant,
                &auth
            )))),
            Err(AuthError::Invalid(_))
        ));
    }

    fn auth_other_token(now: u64) -> String {
        let other = auth();
        hand_made(r#"{"alg":"EdDSA"}"#, claims(now), &other)
    }
}
