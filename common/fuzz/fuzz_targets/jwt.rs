//! Token validation: arbitrary bearer tokens are refused, and a claims set
//! signed with the right key passes only when every claim holds.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| edge_cp::fuzzing::jwt(data));
