//! Control-plane integration tests: one binary, real sockets on 127.0.0.1.

mod auth;
mod common;
mod deploy;
mod edgectl;
mod isolation;
mod store;
mod tamper;
mod uploads;
