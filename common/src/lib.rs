//! What the control plane and the edge node must agree on byte for byte: the
//! wasmtime configuration, the world a guest may import, names and limits,
//! and the signed sync wire format.
//!
//! A precompiled component only loads into an engine whose code-generation
//! settings match the ones it was compiled with. Both sides therefore build
//! their `wasmtime::Config` with [`engine::compile_config`]; the node then adds
//! runtime-only knobs (the pooling allocator) that do not change the code.

pub mod conn;
pub mod engine;
pub mod fsutil;
pub mod limits;
pub mod logging;
pub mod names;
pub mod origin;
pub mod signing;
pub mod sync;
pub mod world;

pub use engine::{CompileSettings, compile_config, engine_hash};
pub use limits::AppLimits;
