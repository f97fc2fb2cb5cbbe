//! Host patterns, the routing table and the request's host: a request is
//! only routed to an entry whose pattern and prefix match it, and an exact
//! name wins.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| edge_node::fuzzing::router(data));
