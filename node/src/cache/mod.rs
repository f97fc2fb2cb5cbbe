//! The edge HTTP cache, in front of every app and of components' fetches:
//! the RFC 9111 rules ([`policy`]), the byte-weighted, tenant-keyed store
//! with Vary variants and surrogate keys ([`store`]), request collapsing
//! ([`collapse`]), purges ([`purge`]), and the request-path layer that
//! drives them ([`layer`]).

pub mod collapse;
pub mod layer;
pub mod policy;
pub mod purge;
pub mod result;
pub mod store;
