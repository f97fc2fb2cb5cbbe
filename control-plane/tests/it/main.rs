//! Control-plane integration tests: one binary, real sockets on 127.0.0.1.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod auth;
mod cdn;
mod common;
mod connections;
mod deploy;
mod edgectl;
mod isolation;
mod keys;
mod migrate;
mod ops;
mod pg;
mod postgres;
mod purge;
mod quota;
mod replicas;
mod s3;
mod store;
mod tamper;
mod tls;
mod uploads;
