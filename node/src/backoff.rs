//! Jitter for the retry backoffs of the control-plane clients (the sync
//! long poll, the key-value stream). A leaf: imports no stage.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// `base` scaled by a random factor in [0.5, 1.5): nodes that lost the
/// control plane together do not come back in lockstep.
pub fn jitter(base: Duration) -> Duration {
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    base.mul_f64(0.5 + (random % 1000) as f64 / 1000.0)
}
