//! Cache-Control, the targeted fields, Surrogate-Control and the freshness,
//! age and reuse rules (see edge_node::fuzzing::cache_control for the
//! layout and the invariants).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| edge_node::fuzzing::cache_control(data));
