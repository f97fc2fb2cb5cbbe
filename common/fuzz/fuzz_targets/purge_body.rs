//! Admin purge bodies applied to a cache holding two tenants' entries: the
//! other tenant's entries stay, and a purged entry never hits.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| edge_node::fuzzing::purge_body(data));
