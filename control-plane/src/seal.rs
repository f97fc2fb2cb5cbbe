//! Encryption at rest for the secrets the control plane stores: tenants'
//! TLS private keys and the ACME account key (and, later, app secrets).
//!
//! Envelope encryption with one key-encryption key (KEK): each value is
//! sealed with ChaCha20-Poly1305 (ring's AEAD; ring is already our TLS
//! crypto) under the current KEK, with a fresh random nonce, and bound by
//! its associated data to whose and what it is (a TLS key to its tenant,
//! app and chain; an ACME account to its directory), so a sealed value
//! copied into another tenant's or app's row, or next to another chain,
//! does not open there.
//!
//! A [`Keyring`] holds the current KEK and, after a rotation, the previous
//! ones: every sealed value names the KEK it was sealed with, so values
//! sealed before a rotation still open while `edge-cp keys rotate-kek`
//! re-seals them.
//!
//! Layout of a sealed value: `"EK1"`, the KEK id (8 bytes), the nonce (12
//! bytes), then the ciphertext and its 16-byte tag.

use edge_common::names::{AppName, TenantId};
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

const MAGIC: &[u8; 3] = b"EK1";
const ID_LEN: usize = 8;
/// Bytes of a KEK (ChaCha20-Poly1305 takes 256-bit keys).
pub const KEK_LEN: usize = 32;
/// Most keys a keyring holds: the current one and a few rotated out.
pub const MAX_KEYS: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error(
        "the key-encryption keyring is invalid: {0} (write 1 to {MAX_KEYS} keys of {KEK_LEN} bytes as 64 hex digits, one per line, the current first)"
    )]
    InvalidKeyring(String),
    #[error("a sealed value is damaged or not sealed by this control plane")]
    Malformed,
    #[error(
        "a sealed value names key-encryption key {0}, which the keyring does not hold (restore it from a backup, or rotate with it still in the keyring)"
    )]
    UnknownKey(String),
    #[error("a sealed value does not open: it was altered, or belongs elsewhere")]
    Tampered,
    #[error("no randomness for a nonce or a key")]
    Random,
}

/// One key-encryption key.
struct Kek {
    id: [u8; ID_LEN],
    key: LessSafeKey,
}

impl Kek {
    fn new(bytes: &[u8; KEK_LEN]) -> Result<Self, SealError> {
        let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
        let mut id = [0u8; ID_LEN];
        id.copy_from_slice(&digest.as_ref()[..ID_LEN]);
        let key = UnboundKey::new(&CHACHA20_POLY1305, bytes)
            .map_err(|_| SealError::InvalidKeyring("a key has the wrong length".into()))?;
        Ok(Self {
            id,
            key: LessSafeKey::new(key),
        })
    }
}

/// The current key-encryption key and the ones rotated out.
pub struct Keyring {
    /// The current key first.
    keys: Vec<Kek>,
    rng: SystemRandom,
}

// No key material in logs: only the ids.
impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current_id())
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl Keyring {
    /// Reads a keyring as `edge-cp keys` writes it: keys as 64 hex digits,
    /// one per line (or separated by spaces or commas, for an environment
    /// variable), the current one first; `#` starts a comment line.
    pub fn parse(text: &str) -> Result<Self, SealError> {
        let mut keys = Vec::new();
        for token in text
            .lines()
            .filter(|line| !line.trim_start().starts_with('#'))
            .flat_map(|line| line.split(|c: char| c == ',' || c.is_whitespace()))
            .filter(|token| !token.is_empty())
        {
            let bytes = decode_hex(token).ok_or_else(|| {
                SealError::InvalidKeyring(format!("key {} is not 64 hex digits", keys.len() + 1))
            })?;
            keys.push(Kek::new(&bytes)?);
        }
        if keys.is_empty() {
            return Err(SealError::InvalidKeyring("it holds no key".into()));
        }
        if keys.len() > MAX_KEYS {
            return Err(SealError::InvalidKeyring(format!(
                "it holds {} keys",
                keys.len()
            )));
        }
        Ok(Self {
            keys,
            rng: SystemRandom::new(),
        })
    }

    /// A new random key, as one keyring line (64 hex digits).
    pub fn generate_key() -> Result<String, SealError> {
        let mut bytes = [0u8; KEK_LEN];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| SealError::Random)?;
        Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// The current key's id (hex): which key seals from now on.
    pub fn current_id(&self) -> String {
        self.keys.first().map(|k| hex(&k.id)).unwrap_or_default()
    }

    /// Every key's id, the current first.
    pub fn ids(&self) -> Vec<String> {
        self.keys.iter().map(|k| hex(&k.id)).collect()
    }

    /// Seals `plaintext` under the current key, bound to `aad`.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, SealError> {
        let kek = self.keys.first().ok_or(SealError::Random)?;
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| SealError::Random)?;
        let mut out = Vec::with_capacity(
            MAGIC.len() + ID_LEN + NONCE_LEN + plaintext.len() + CHACHA20_POLY1305.tag_len(),
        );
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&kek.id);
        out.extend_from_slice(&nonce);
        let mut sealed = plaintext.to_vec();
        kek.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut sealed,
            )
            .map_err(|_| SealError::Random)?;
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens a value sealed by [`Keyring::seal`] with the same `aad`,
    /// under whichever key of the ring sealed it.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, SealError> {
        let header = MAGIC.len() + ID_LEN + NONCE_LEN;
        if sealed.len() < header + CHACHA20_POLY1305.tag_len() || !sealed.starts_with(MAGIC) {
            return Err(SealError::Malformed);
        }
        let id = &sealed[MAGIC.len()..MAGIC.len() + ID_LEN];
        let kek = self
            .keys
            .iter()
            .find(|k| k.id == id)
            .ok_or_else(|| SealError::UnknownKey(hex(id)))?;
        let nonce = Nonce::try_assume_unique_for_key(&sealed[MAGIC.len() + ID_LEN..header])
            .map_err(|_| SealError::Malformed)?;
        let mut buffer = sealed[header..].to_vec();
        let plaintext = kek
            .key
            .open_in_place(nonce, Aad::from(aad), &mut buffer)
            .map_err(|_| SealError::Tampered)?;
        Ok(plaintext.to_vec())
    }

    /// The id (hex) of the key `sealed` names, if it is a sealed value.
    pub fn sealed_with(sealed: &[u8]) -> Option<String> {
        (sealed.len() > MAGIC.len() + ID_LEN && sealed.starts_with(MAGIC))
            .then(|| hex(&sealed[MAGIC.len()..MAGIC.len() + ID_LEN]))
    }

    /// Whether the keyring holds the key `sealed` names.
    pub fn holds(&self, sealed: &[u8]) -> bool {
        sealed.len() > MAGIC.len() + ID_LEN
            && self
                .keys
                .iter()
                .any(|k| sealed[MAGIC.len()..MAGIC.len() + ID_LEN] == k.id)
    }

    /// Whether `sealed` was sealed under the current key (else a rotation
    /// has still to re-seal it).
    pub fn is_current(&self, sealed: &[u8]) -> bool {
        self.keys.first().is_some_and(|kek| {
            sealed.len() > MAGIC.len() + ID_LEN
                && sealed[MAGIC.len()..MAGIC.len() + ID_LEN] == kek.id
        })
    }
}

/// The associated data of a TLS private key: bound to the tenant and app
/// it belongs to and to its chain. (Not to the certificate's id: the id is
/// given by the store when the sealed key is already made.)
pub fn tls_key_aad(tenant: &TenantId, app: &AppName, chain_pem: &str) -> Vec<u8> {
    let digest = ring::digest::digest(&ring::digest::SHA256, chain_pem.as_bytes());
    format!("tls-key:{tenant}/{app}:{}", hex(digest.as_ref())).into_bytes()
}

/// The associated data of an app secret: bound to its tenant, app and
/// name, so a sealed value copied to another row does not open there.
pub fn secret_aad(tenant: &TenantId, app: &AppName, name: &str) -> Vec<u8> {
    format!("secret:{tenant}/{app}/{name}").into_bytes()
}

/// The associated data of an ACME account's credentials: bound to its
/// directory URL.
pub fn acme_account_aad(directory: &str) -> Vec<u8> {
    format!("acme-account:{directory}").into_bytes()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_hex(text: &str) -> Option<[u8; KEK_LEN]> {
    if text.len() != KEK_LEN * 2 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; KEK_LEN];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring_of(keys: &[&str]) -> Keyring {
        Keyring::parse(&keys.join("\n")).expect("keyring")
    }

    #[test]
    fn sealed_values_open_only_with_their_key_and_their_aad() {
        let key = Keyring::generate_key().expect("key");
        let ring = ring_of(&[&key]);
        let sealed = ring
            .seal(b"-----BEGIN PRIVATE KEY-----", b"tls-key:a")
            .expect("seal");
        assert!(
            !sealed.windows(5).any(|w| w == b"BEGIN"),
            "plaintext leaked"
        );
        assert_eq!(
            ring.open(&sealed, b"tls-key:a").expect("open"),
            b"-----BEGIN PRIVATE KEY-----"
        );
        assert!(matches!(
            ring.open(&sealed, b"tls-key:b"),
            Err(SealError::Tampered)
        ));
        let mut altered = sealed.clone();
        let last = altered.len() - 1;
        altered[last] ^= 1;
        assert!(matches!(
            ring.open(&altered, b"tls-key:a"),
            Err(SealError::Tampered)
        ));
        assert!(matches!(ring.open(b"EK1", b""), Err(SealError::Malformed)));
        let other = ring_of(&[&Keyring::generate_key().expect("key")]);
        assert!(matches!(
            other.open(&sealed, b"tls-key:a"),
            Err(SealError::UnknownKey(_))
        ));
        // Two seals of one value differ (fresh nonces).
        assert_ne!(
            sealed,
            ring.seal(b"-----BEGIN PRIVATE KEY-----", b"tls-key:a")
                .expect("seal")
        );
    }

    #[test]
    fn a_rotated_ring_opens_old_values_and_seals_with_the_new_key() {
        let (old, new) = (
            Keyring::generate_key().expect("key"),
            Keyring::generate_key().expect("key"),
        );
        let before = ring_of(&[&old]);
        let sealed = before.seal(b"secret", b"x").expect("seal");
        let after = ring_of(&[&new, &old]);
        assert!(!after.is_current(&sealed));
        assert_eq!(after.open(&sealed, b"x").expect("open"), b"secret");
        let resealed = after.seal(b"secret", b"x").expect("seal");
        assert!(after.is_current(&resealed));
        assert_eq!(after.ids().len(), 2);
        assert_eq!(after.current_id(), ring_of(&[&new]).current_id());
    }

    #[test]
    fn bad_keyrings_are_refused_with_the_reason() {
        for bad in ["", "# only a comment\n", "abcd", &"zz".repeat(32)] {
            assert!(
                matches!(Keyring::parse(bad), Err(SealError::InvalidKeyring(_))),
                "{bad:?}"
            );
        }
        let many = (0..=MAX_KEYS)
            .map(|_| Keyring::generate_key().expect("key"))
            .collect::<Vec<_>>()
            .join(",");
        assert!(Keyring::parse(&many).is_err());
        let key = Keyring::generate_key().expect("key");
        assert!(Keyring::parse(&format!("# current\n{key}\n")).is_ok());
        assert!(!format!("{:?}", ring_of(&[&key])).contains(&key));
    }
}
