//! The edge HTTP cache (issue 5), in front of every app. So far: the
//! RFC 9111 rules as pure functions ([`policy`]); the byte-weighted store,
//! request collapsing, purge and the request-path integration come next.

pub mod policy;
