//! The edge HTTP cache, in front of every app and of components' fetches:
//! the RFC 9111 rules ([`policy`]), the byte-weighted, tenant-keyed store
//! (bodies in [`body`])
//! with Vary variants and surrogate keys ([`store`]), request collapsing
//! ([`collapse`]), ranges and partial entries ([`range`], [`parts`]), purges ([`purge`], through the [`index`]), the request-path layer that uses
//! them ([`layer`]), and the one driver every caller goes through
//! ([`serve`]). Behind the memory store, the [`disk`] tier, reached through
//! its hooks in [`tiers`]. Keys ([`key`]), bodies ([`body`]) and parsed
//! directives ([`directives`]) are leaves that import nothing of the cache,
//! so that the files here never import each other (checked by the node's
//! `architecture` test).

pub mod body;
pub mod collapse;
pub mod compress;
pub mod directives;
pub mod disk;
pub mod encoded;
pub mod index;
pub mod key;
pub mod layer;
pub mod parts;
pub mod policy;
pub mod post;
#[cfg(test)]
mod properties;
pub mod purge;
pub mod range;
pub mod result;
pub mod serve;
pub mod status;
pub mod store;
pub mod targeted;
#[cfg(test)]
mod test_support;
pub mod tiers;
pub mod vary;
