//! The wasmtime configuration shared by compilation and loading.

use serde::{Deserialize, Serialize};

/// Settings that change the machine code wasmtime generates. Changing any of
/// them changes the engine's compatibility hash, so artifacts compiled before
/// the change are recompiled rather than loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompileSettings {
    /// Virtual address space reserved per linear memory, in bytes.
    /// Default 4 GiB: with the guard region below, 32-bit memories need no
    /// explicit bounds checks, which is the fastest code wasmtime emits.
    pub memory_reservation_bytes: u64,
    /// Guard region after each linear memory, in bytes. Default 32 MiB.
    pub memory_guard_bytes: u64,
    /// Maximum wasm stack a guest may use, in bytes. Default 512 KiB: deep
    /// enough for real programs, and a runaway recursion traps
    /// (stack overflow) instead of exhausting the host thread.
    pub max_wasm_stack_bytes: usize,
}

impl Default for CompileSettings {
    fn default() -> Self {
        Self {
            memory_reservation_bytes: 4 << 30,
            memory_guard_bytes: 32 << 20,
            max_wasm_stack_bytes: 512 << 10,
        }
    }
}

/// The base configuration for every engine that compiles or runs tenant
/// components.
pub fn compile_config(settings: &CompileSettings) -> wasmtime::Config {
    let mut config = wasmtime::Config::new();
    config.wasm_component_model(true);
    // WASI 0.3 (async component functions, streams and futures): the
    // default with the feature on, spelled out because the engine hash and
    // so every artifact depend on it.
    config.wasm_component_model_async(true);
    // CPU limits and fair scheduling rest on epoch interruption: a ticker
    // thread bumps the epoch and a guest that runs past its deadline yields
    // to the async executor (or traps once its budget is spent).
    config.epoch_interruption(true);
    config.memory_reservation(settings.memory_reservation_bytes);
    config.memory_guard_size(settings.memory_guard_bytes);
    config.max_wasm_stack(settings.max_wasm_stack_bytes);
    config.cranelift_opt_level(wasmtime::OptLevel::Speed);
    // Guests run as async calls on fibers so that a slow host call (reading
    // the request body, an outbound request) never blocks a tokio worker.
    config.async_stack_size(settings.max_wasm_stack_bytes + (512 << 10));
    config
}

/// The engine's compatibility hash as hex: artifacts are stored under
/// (source digest, this), and a node reports its own so an operator can see
/// why an artifact would not load. Computed by feeding wasmtime's
/// `precompile_compatibility_hash` into SHA-256 (stable across processes,
/// unlike `DefaultHasher`'s seeds would allow if they ever changed).
pub fn engine_hash(engine: &wasmtime::Engine) -> String {
    use std::hash::{Hash, Hasher};

    struct Sha256Hasher(ring::digest::Context);
    impl Hasher for Sha256Hasher {
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
        fn finish(&self) -> u64 {
            0 // unused: the digest is taken from the context
        }
    }
    let mut hasher = Sha256Hasher(ring::digest::Context::new(&ring::digest::SHA256));
    engine.precompile_compatibility_hash().hash(&mut hasher);
    crate::signing::to_hex(&hasher.0.finish().as_ref()[..16])
}
