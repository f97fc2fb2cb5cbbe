//! Randomness from the host (`wasi:random/random`: the node's
//! cryptographically secure generator), for ids, tokens and splits.

/// `len` random bytes.
pub fn bytes(len: u64) -> Vec<u8> {
    wasip2::random::random::get_random_bytes(len)
}

/// A random `u64`.
pub fn u64() -> u64 {
    wasip2::random::random::get_random_u64()
}
