//! The node's configuration file, parsed and validated: never a panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| edge_node::fuzzing::node_config(data));
