use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
    PKCS_ECDSA_P256_SHA256,
};
use time::{Duration as Span, OffsetDateTime};

use super::*;

fn host(name: &str) -> HostPattern {
    HostPattern::try_from(name.to_string()).expect("host")
}

fn hosts(names: &[&str]) -> Vec<HostPattern> {
    names.iter().map(|n| host(n)).collect()
}

struct Ca(CertifiedIssuer<'static, KeyPair>);

impl Ca {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "Edge Test CA");
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
        Self(CertifiedIssuer::self_signed(params, key).expect("ca"))
    }

    /// A leaf for `names`, valid from `from` to `to` days from now: (chain
    /// PEM with the CA, key PEM).
    fn leaf(&self, names: &[&str], from: i64, to: i64) -> (String, String) {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("params");
        let now = OffsetDateTime::now_utc();
        params.not_before = now + Span::days(from);
        params.not_after = now + Span::days(to);
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.0).expect("leaf");
        (
            format!("{}{}", cert.pem(), self.0.pem()),
            key.serialize_pem(),
        )
    }
}

fn now() -> u64 {
    now_unix()
}

#[test]
fn a_good_chain_and_key_are_read_and_written_back_as_plain_pem() {
    let ca = Ca::new();
    let (chain, key) = ca.leaf(&["shop.test", "*.shop.test"], -1, 90);
    // Text around the sections (as openssl writes) and the key pasted into
    // the chain by mistake: only the certificates are kept.
    let messy_chain = format!("subject=CN = shop\n{chain}\n{key}");
    let checked = check(&messy_chain, &format!("junk\n{key}"), now()).expect("checked");
    assert_eq!(checked.names, hosts(&["shop.test", "*.shop.test"]));
    assert!(
        checked.issuer.contains("Edge Test CA"),
        "{}",
        checked.issuer
    );
    assert_eq!(checked.chain_pem.matches("BEGIN CERTIFICATE").count(), 2);
    assert!(!checked.chain_pem.contains("PRIVATE KEY"));
    assert!(
        checked
            .chain_pem
            .starts_with("-----BEGIN CERTIFICATE-----\n")
    );
    assert!(checked.not_after_unix > checked.not_before_unix);
    assert!(!format!("{checked:?}").contains("PRIVATE"));

    let kek = Keyring::parse(&Keyring::generate_key().expect("key")).expect("ring");
    let (tenant, app) = (
        "acme".parse().expect("tenant"),
        "shop".parse().expect("app"),
    );
    let material = checked.seal(&kek, &tenant, &app).expect("sealed");
    assert!(!material.sealed_key.windows(7).any(|w| w == b"PRIVATE"));
    let opened = kek
        .open(
            &material.sealed_key,
            &tls_key_aad(&tenant, &app, &material.chain_pem),
        )
        .expect("opens");
    // Bound to its tenant and app: it does not open as another's.
    let other: TenantId = "other".parse().expect("tenant");
    assert!(
        kek.open(
            &material.sealed_key,
            &tls_key_aad(&other, &app, &material.chain_pem)
        )
        .is_err()
    );
    let opened = String::from_utf8(opened).expect("utf-8");
    let bundle = certificate_bundle(&material.chain_pem, &opened);
    assert_eq!(material.bundle_sha256, sha256_hex(bundle.as_bytes()));
    assert_eq!(material.bundle_size, bundle.len() as u64);
    // The same key, in the same PEM form a node reads back.
    assert_eq!(
        PrivateKeyDer::from_pem_slice(opened.as_bytes())
            .expect("key")
            .secret_der(),
        PrivateKeyDer::from_pem_slice(key.as_bytes())
            .expect("key")
            .secret_der()
    );
}

#[test]
fn broken_mismatched_and_out_of_date_certificates_are_refused_with_their_code() {
    let ca = Ca::new();
    let (chain, key) = ca.leaf(&["shop.test"], -1, 90);
    let (_, other_key) = ca.leaf(&["shop.test"], -1, 90);
    let (expired, expired_key) = ca.leaf(&["shop.test"], -90, -1);
    let (early, early_key) = ca.leaf(&["shop.test"], 2, 90);
    let (no_dns, no_dns_key) = ca.leaf(&["*"], -1, 90);
    let broken_base64 = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
    let not_der = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    let huge = "x".repeat(MAX_CERTIFICATE_BUNDLE_BYTES as usize);
    let long_chain = chain.repeat(MAX_CHAIN_CERTIFICATES);
    let two_keys = format!("{key}{other_key}");
    let cases: Vec<(&str, &str, &str, &str)> = vec![
        ("", &key, "cert-invalid", "no CERTIFICATE"),
        ("hello", &key, "cert-invalid", "no CERTIFICATE"),
        (broken_base64, &key, "cert-invalid", "not PEM"),
        (not_der, &key, "cert-invalid", "does not parse"),
        (&long_chain, &key, "cert-invalid", "the most is 10"),
        (&chain, "", "cert-invalid", "no private key"),
        (&chain, &chain, "cert-invalid", "no private key"),
        (&chain, &two_keys, "cert-invalid", "2 private keys"),
        (&chain, &huge, "cert-invalid", "bytes together"),
        (
            &chain,
            &other_key,
            "cert-key-mismatch",
            "public keys differ",
        ),
        (&expired, &expired_key, "cert-expired", "expired at"),
        (&early, &early_key, "cert-not-yet-valid", "not valid before"),
        (&no_dns, &no_dns_key, "cert-invalid", "names no DNS host"),
    ];
    for (chain, key, code, says) in cases {
        let error = check(chain, key, now()).expect_err(code);
        assert_eq!(error.code(), code, "{error}");
        let message = error.to_string();
        assert!(message.contains(says), "{code}: {message}");
        assert!(!message.contains("PRIVATE KEY-----"), "{message}");
    }
}

#[test]
fn wildcards_cover_exactly_one_label() {
    let c = |name: &str, h: &str| covers(&host(name), &host(h));
    assert!(c("shop.test", "shop.test"));
    assert!(!c("shop.test", "www.shop.test"));
    assert!(c("*.shop.test", "www.shop.test"));
    assert!(!c("*.shop.test", "a.b.shop.test"));
    assert!(!c("*.shop.test", "shop.test"));
    assert!(c("*.shop.test", "*.shop.test"));
    assert!(!c("*.shop.test", "*.a.shop.test"));
    assert!(!c("www.shop.test", "*.shop.test"));
}

#[test]
fn upload_and_acme_hosts_follow_the_rules() {
    let apps: OwnedHosts = hosts(&["shop.test", "*.shop.test"]).into_iter().collect();
    let names = hosts(&["shop.test", "*.shop.test"]);
    assert_eq!(upload_hosts(&[], &names, &apps).expect("all"), names);
    assert_eq!(
        upload_hosts(&hosts(&["www.shop.test"]), &names, &apps).expect("one"),
        hosts(&["www.shop.test"])
    );
    let code = |r: Result<Vec<HostPattern>, CertError>| r.expect_err("refused").code();
    assert_eq!(
        code(upload_hosts(&hosts(&["a.b.shop.test"]), &names, &apps)),
        "cert-host-not-covered"
    );
    assert_eq!(
        code(upload_hosts(
            &[],
            &hosts(&["shop.test", "other.test"]),
            &apps
        )),
        "cert-host-not-owned"
    );
    assert_eq!(
        code(upload_hosts(&[HostPattern::Any], &names, &apps)),
        "cert-invalid"
    );
    assert_eq!(
        code(upload_hosts(
            &hosts(&["shop.test", "shop.test"]),
            &names,
            &apps
        )),
        "cert-invalid"
    );
    let many: Vec<HostPattern> = (0..=MAX_CERT_HOSTS)
        .map(|i| host(&format!("h{i}.shop.test")))
        .collect();
    assert_eq!(code(upload_hosts(&many, &names, &apps)), "cert-invalid");
    assert_eq!(code(upload_hosts(&[], &many, &apps)), "cert-invalid");

    assert_eq!(
        acme_hosts(&hosts(&["shop.test", "www.shop.test"]), &apps).expect("ok"),
        hosts(&["shop.test", "www.shop.test"])
    );
    assert_eq!(code(acme_hosts(&[], &apps)), "cert-invalid");
    assert_eq!(
        code(acme_hosts(&hosts(&["*.shop.test"]), &apps)),
        "cert-wildcard-not-supported"
    );
    assert_eq!(
        code(acme_hosts(&hosts(&["elsewhere.test"]), &apps)),
        "cert-host-not-owned"
    );
}
