//! What the control plane, the edge node and `edgectl` must agree on byte
//! for byte: the wasmtime configuration, the world a guest may import,
//! names and limits, the signed sync wire format and the HTTP API's bodies.
//!
//! A precompiled component only loads into an engine whose code-generation
//! settings match the ones it was compiled with. Both sides therefore build
//! their `wasmtime::Config` with [`engine::compile_config`]; the node then adds
//! runtime-only knobs (the pooling allocator) that do not change the code.

//!
//! Features keep a client light: `engine` (the wasmtime configuration and
//! the guest world), `server` (serving client connections, [`conn`]),
//! `tls` (a chain and key as rustls serves them, [`tls`]) and `logging`
//! (stderr logging for the binaries). Without them this is data
//! and the API's types ([`api`]), which is all `edgectl` needs.

pub mod api;
pub mod chaos;
#[cfg(feature = "server")]
pub mod conn;
#[cfg(feature = "engine")]
pub mod engine;
pub mod fsutil;
pub mod kv;
pub mod limits;
#[cfg(feature = "logging")]
pub mod logging;
pub mod names;
pub mod origin;
pub mod outbound;
#[cfg(feature = "server")]
pub mod runtime_metrics;
pub mod secrets;
pub mod signing;
pub mod sync;
pub mod text;
#[cfg(feature = "tls")]
pub mod tls;
#[cfg(feature = "engine")]
pub mod world;

#[cfg(feature = "engine")]
pub use engine::{CompileSettings, compile_config, engine_hash};
pub use limits::AppLimits;
