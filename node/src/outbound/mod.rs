//! Outbound HTTP, the stage both guests and origin routes go through.
//!
//! Denied unless the app's allowlist names the destination (scheme, host or
//! `*.domain`, port). Names are resolved by the node, never by the guest, and
//! every address is classified ([`vet`]): loopback, private, link-local
//! (cloud metadata included), CGNAT, unique-local, unspecified, multicast and
//! the IPv6 forms that embed such IPv4 addresses are refused unless the
//! operator allowed that exact address. Connections go only to a vetted
//! address, through one pooled client ([`client`]) shared by every guest and
//! origin route (HTTP/1.1 and h2, rustls), with connect, first-byte and total
//! timeouts clamped by the node's policy. [`guest`] holds the wasi:http
//! hooks a guest's store uses.

pub mod client;
pub mod guest;
pub mod vet;

pub use client::OutboundClient;
pub use guest::{OutboundPolicy, SendRequestFuture};
