//! The edge HTTP cache, in front of every app and of components' fetches:
//! the RFC 9111 rules ([`policy`]), the byte-weighted, tenant-keyed store
//! (bodies in [`body`])
//! with Vary variants and surrogate keys ([`store`]), request collapsing
//! ([`collapse`]), purges ([`purge`]), the request-path layer that uses
//! them ([`layer`]), and the one driver every caller goes through
//! ([`serve`]).

pub mod body;
pub mod collapse;
pub mod layer;
pub mod policy;
pub mod purge;
pub mod result;
pub mod serve;
pub mod store;
