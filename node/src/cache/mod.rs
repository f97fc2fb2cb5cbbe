//! The edge HTTP cache (issue 5), in front of every app. So far: the
//! RFC 9111 rules as pure functions ([`policy`]) and the byte-weighted,
//! tenant-keyed store with Vary variants and surrogate-key purge
//! ([`store`]); request collapsing and the request-path integration come
//! next.

pub mod policy;
pub mod store;
