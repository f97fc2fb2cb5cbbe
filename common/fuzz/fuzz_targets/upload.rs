//! Arbitrary bytes as an uploaded component, through the validator and
//! the compiler: a deliberate answer for each, never a panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| edge_cp::fuzzing::upload(data));
