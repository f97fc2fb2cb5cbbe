//! Raw client bytes through hyper with the node's listener settings and its
//! dispatcher: every answer is a deliberate refusal, and the connection
//! ends after the client's EOF.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| edge_node::fuzzing::http1_head(data));
