//! The edge HTTP cache (issue 5), in front of every app. So far: the
//! RFC 9111 rules as pure functions ([`policy`]) and the byte-weighted,
//! tenant-keyed store with Vary variants and surrogate-key purge
//! ([`store`]), and request collapsing ([`collapse`]). The request-path
//! integration, origin routes, purge fan-out and metrics come next.

pub mod collapse;
pub mod layer;
pub mod policy;
pub mod purge;
pub mod store;
