//! Entry points for the control plane's fuzz targets (`common/fuzz`, run
//! by `ops/fuzz`): each takes arbitrary bytes,
//! drives what a caller's bytes reach, and panics when an invariant the
//! API relies on does not hold. They live in the crate so they reach the
//! private parts they check, and so the committed seed corpora also run
//! under `cargo test` on the stable toolchain. Not a stable API.

use std::sync::OnceLock;

use edge_common::CompileSettings;
use edge_common::api::Role;
use edge_common::signing::SigningKey;
use jsonwebtoken::{Algorithm, Header};

use crate::auth::{AUDIENCE, Auth, ISSUER, LEEWAY_SECS};
use crate::compile::{Compiler, UploadError};

fn auth() -> &'static Auth {
    static AUTH: OnceLock<Auth> = OnceLock::new();
    AUTH.get_or_init(|| {
        let key = SigningKey::generate_pkcs8().expect("a signing key");
        Auth::new(&key).expect("the token key")
    })
}

/// Token validation, two ways. The bytes as a bearer token: none is
/// signed by this process's key, so none may pass. The bytes as a JSON
/// claims set signed with the right key: it passes only if every claim
/// the API relies on holds (issuer, audience, times within the leeway,
/// a tenant exactly on tenant tokens).
pub fn jwt(data: &[u8]) {
    let auth = auth();
    let raw = String::from_utf8_lossy(data);
    let verdict = auth.verify(Some(&format!("Bearer {raw}")));
    assert!(
        verdict.is_err(),
        "a token this key never signed: {verdict:?}"
    );

    let Ok(claims) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let Ok(token) = jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, auth.encoding())
    else {
        return;
    };
    let Ok(principal) = auth.verify(Some(&format!("Bearer {token}"))) else {
        return;
    };
    let now = crate::store::now_unix();
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["aud"], AUDIENCE);
    assert_eq!(claims["sub"].as_str(), Some(principal.subject.as_str()));
    let exp = claims["exp"].as_u64().expect("exp is a number");
    let nbf = claims["nbf"].as_u64().expect("nbf is a number");
    assert!(exp + LEEWAY_SECS >= now, "expired at {exp}, now {now}");
    assert!(
        nbf <= now + LEEWAY_SECS,
        "not valid before {nbf}, now {now}"
    );
    assert_eq!(
        principal.role == Role::Tenant,
        principal.tenant.is_some(),
        "{principal:?}"
    );
}

fn compiler() -> &'static Compiler {
    static COMPILER: OnceLock<Compiler> = OnceLock::new();
    COMPILER.get_or_init(|| Compiler::new(&CompileSettings::default(), 1).expect("a compiler"))
}

/// Arbitrary bytes as an uploaded component, through every check an
/// upload goes through and, when they pass, the compilation. What is
/// refused for its header is exactly what lacks the component header, and
/// what passes comes back as an artifact.
pub fn upload(data: &[u8]) {
    let component_header = data.len() >= 8 && data.starts_with(b"\0asm") && data[6..8] != [0, 0];
    match compiler().compile_now(data) {
        Ok(artifact) => {
            assert!(component_header);
            assert!(!artifact.is_empty());
        }
        Err(UploadError::NotWasm | UploadError::CoreModule) => assert!(!component_header),
        Err(_) => assert!(component_header),
    }
}

#[cfg(test)]
mod tests {
    //! The committed seed corpora (`common/fuzz/corpus/<target>/`)
    //! through each entry point.

    use std::path::Path;

    fn each_seed(target: &str, run: fn(&[u8])) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../common/fuzz/corpus")
            .join(target);
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).expect("the seed corpus") {
            let bytes = std::fs::read(entry.expect("a seed").path()).expect("a seed");
            run(&bytes);
            seen += 1;
        }
        assert!(seen >= 3, "{target}: only {seen} seeds");
    }

    #[test]
    fn jwt_seeds() {
        each_seed("jwt", super::jwt);
    }

    #[test]
    fn upload_seeds() {
        each_seed("upload", super::upload);
    }

    /// A valid claims set is accepted (so the fuzz target's second half is
    /// reachable from the seeds), and the seeds hold one.
    #[test]
    fn a_seed_claims_set_is_accepted() {
        let seed = std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../common/fuzz/corpus/jwt/admin-claims"),
        )
        .expect("the admin claims seed");
        let claims: serde_json::Value = serde_json::from_slice(&seed).expect("JSON");
        let auth = super::auth();
        let token = jsonwebtoken::encode(
            &super::Header::new(super::Algorithm::EdDSA),
            &claims,
            auth.encoding(),
        )
        .expect("signed");
        assert!(auth.verify(Some(&format!("Bearer {token}"))).is_ok());
    }
}
