//! Control-plane integration tests: one binary, real sockets on 127.0.0.1.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod acme;
mod auth;
mod cdn;
mod certs;
mod chaos;
mod common;
mod compression;
mod connections;
mod deploy;
mod edgectl;
mod examples;
mod isolation;
mod kek;
mod keys;
mod kv;
mod kv_e2e;
mod languages;
mod logs;
mod migrate;
mod new_project;
mod ops;
mod outbound;
mod pebble;
mod pg;
mod postgres;
mod purge;
mod quota;
mod replicas;
mod s3;
mod secrets;
mod store;
mod tamper;
mod tls;
mod uploads;
