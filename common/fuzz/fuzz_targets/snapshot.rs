//! Signed snapshots as a node receives them: arbitrary bytes as the
//! signed envelope, verified against a fixed key (never a panic, never
//! accepted unsigned), and arbitrary bytes as the payload a node parses
//! after the signature checked (a parsed snapshot serialises and parses
//! back to the same).
#![no_main]

use std::sync::OnceLock;

use edge_common::signing::{SigningKey, VerifyingKey};
use edge_common::sync::{SignedSnapshot, Snapshot};
use libfuzzer_sys::fuzz_target;

fn key() -> &'static VerifyingKey {
    static KEY: OnceLock<VerifyingKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let pkcs8 = SigningKey::generate_pkcs8().expect("a key");
        SigningKey::from_pkcs8(&pkcs8)
            .expect("a key")
            .verifying_key()
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(signed) = serde_json::from_slice::<SignedSnapshot>(data) {
        // Nobody holds the key's private half: nothing verifies.
        assert!(signed.verify(key()).is_err());
    }
    if let Ok(snapshot) = serde_json::from_slice::<Snapshot>(data) {
        let again = serde_json::to_string(&snapshot).expect("a parsed snapshot serialises");
        let back: Snapshot = serde_json::from_str(&again).expect("and parses back");
        assert_eq!(serde_json::to_string(&back).expect("serialises"), again);
    }
});
