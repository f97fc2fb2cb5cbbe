//! Vary normalisation and the cache key: a request matches its own variant,
//! the canonical spelling is a fixed point, and a key never names another
//! tenant.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| edge_node::fuzzing::vary_and_key(data));
