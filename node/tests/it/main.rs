//! Integration tests: real nodes on 127.0.0.1, real components built from
//! `examples/`, real HTTP clients over real sockets.

#![allow(clippy::unwrap_used)]

mod access_log;
mod architecture;
mod attacks;
mod attacks_h2;
mod cache;
mod certificates;
mod client_addr;
mod common;
mod config;
mod connections;
mod examples;
mod guests;
mod kv;
mod limits;
mod load;
mod observability;
mod origin_cache;
mod origin_server;
mod outbound;
mod probe;
mod process;
mod routing;
mod shutdown;
mod tls;
mod wasi_p3;
