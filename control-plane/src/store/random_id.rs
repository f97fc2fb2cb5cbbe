//! Random identifiers the store makes: a store's epoch, a key-value
//! store's id. Its own module, importing nothing of the store's, so the
//! rows modules and the dump can both use it.

/// The system's secure random source failed.
#[derive(Debug, thiserror::Error)]
#[error("the system random source failed")]
pub(crate) struct RandomUnavailable;

/// 16 bytes from the system's secure random source, hex.
pub(crate) fn random_id() -> Result<String, RandomUnavailable> {
    let mut id = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut id)
        .map_err(|_| RandomUnavailable)?;
    Ok(edge_common::signing::to_hex(&id))
}
