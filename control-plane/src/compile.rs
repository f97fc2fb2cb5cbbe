//! Validate and precompile an uploaded component with the engine
//! configuration nodes load it with ([`edge_common::compile_config`]).
//!
//! The checks run in the order a tenant can act on: is it WebAssembly, is it
//! a component (not a core module), does it validate, does it import only
//! what nodes provide (listing every offending import, including a WASI
//! version newer than the nodes'), does it export the HTTP handler.

use std::sync::Arc;

use edge_common::{CompileSettings, compile_config, engine_hash};
use wasmtime::Engine;
use wasmtime::component::Component;

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("not a WebAssembly binary (it must start with the `\\0asm` magic)")]
    NotWasm,
    #[error(
        "a core WebAssembly module, not a component: build for wasm32-wasip2 (or run `wasm-tools component new`)"
    )]
    CoreModule,
    #[error("not a valid component: {0}")]
    Invalid(String),
    #[error(
        "the component imports what nodes do not provide: {}; nodes provide {} (WASI up to {}.{}.{})",
        .0.join(", "),
        edge_common::world::PROVIDED_SUMMARY,
        edge_common::world::WASI_VERSION.0,
        edge_common::world::WASI_VERSION.1,
        edge_common::world::WASI_VERSION.2
    )]
    UnsupportedImports(Vec<String>),
    #[error(
        "the component exports no HTTP handler: it must export wasi:http/incoming-handler@0.2.x (the wasi:http/proxy world) or wasi:http/handler@0.3.x (the wasi:http/service world)"
    )]
    NotAnHttpHandler,
    #[error("compilation failed: {0}")]
    Compile(String),
}

pub struct Compiler {
    engine: Engine,
    engine_hash: String,
    /// At most this many compilations at once: each takes CPU-seconds.
    slots: Arc<tokio::sync::Semaphore>,
}

impl Compiler {
    pub fn new(settings: &CompileSettings, parallel: usize) -> wasmtime::Result<Self> {
        let engine = Engine::new(&compile_config(settings))?;
        Ok(Self {
            engine_hash: engine_hash(&engine),
            engine,
            slots: Arc::new(tokio::sync::Semaphore::new(parallel.max(1))),
        })
    }

    /// [`Self::compile`] on this thread, without a compile slot: for the
    /// fuzz target, which has no runtime to wait on.
    #[doc(hidden)]
    pub fn compile_now(&self, wasm: &[u8]) -> Result<Vec<u8>, UploadError> {
        check_header(wasm)?;
        compile_blocking(&self.engine, wasm)
    }

    pub fn engine_hash(&self) -> &str {
        &self.engine_hash
    }

    /// Checks `wasm` and returns the precompiled artifact.
    pub async fn compile(&self, wasm: bytes::Bytes) -> Result<Vec<u8>, UploadError> {
        check_header(&wasm)?;
        let _slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| UploadError::Compile(e.to_string()))?;
        let engine = self.engine.clone();
        tokio::task::spawn_blocking(move || compile_blocking(&engine, &wasm))
            .await
            .map_err(|e| UploadError::Compile(e.to_string()))?
    }
}

fn check_header(wasm: &[u8]) -> Result<(), UploadError> {
    if wasm.len() < 8 || &wasm[..4] != b"\0asm" {
        return Err(UploadError::NotWasm);
    }
    // Bytes 4..8: version 1 with layer 0 is a core module; components are
    // layer 1 (`0d 00 01 00` today).
    match wasm[6..8] {
        [0, 0] => Err(UploadError::CoreModule),
        _ => Ok(()),
    }
}

fn compile_blocking(engine: &Engine, wasm: &[u8]) -> Result<Vec<u8>, UploadError> {
    edge_common::chaos::hold(|| "compile".into());
    let component =
        Component::new(engine, wasm).map_err(|e| UploadError::Invalid(format!("{e:#}")))?;
    let unsupported = edge_common::world::unsupported_imports(&component, engine);
    if !unsupported.is_empty() {
        return Err(UploadError::UnsupportedImports(unsupported));
    }
    if edge_common::world::http_world(&component, engine).is_none() {
        return Err(UploadError::NotAnHttpHandler);
    }
    component
        .serialize()
        .map_err(|e| UploadError::Compile(format!("{e:#}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn compile(wasm: &[u8]) -> Result<Vec<u8>, UploadError> {
        let compiler = Compiler::new(&CompileSettings::default(), 1).unwrap();
        compiler.compile(bytes::Bytes::copy_from_slice(wasm)).await
    }

    #[tokio::test]
    async fn each_bad_upload_gets_its_own_error() {
        assert!(matches!(
            compile(b"hello world").await,
            Err(UploadError::NotWasm)
        ));
        let core = wat::parse_str("(module)").unwrap();
        assert!(matches!(compile(&core).await, Err(UploadError::CoreModule)));
        let mut truncated = wat::parse_str("(component (core module))").unwrap();
        truncated.truncate(truncated.len() - 2);
        assert!(matches!(
            compile(&truncated).await,
            Err(UploadError::Invalid(_))
        ));
        let empty = wat::parse_str("(component)").unwrap();
        assert!(matches!(
            compile(&empty).await,
            Err(UploadError::NotAnHttpHandler)
        ));
        let newer = wat::parse_str(
            r#"(component
                 (import "wasi:cli/environment@0.2.99" (instance))
                 (import "wasi:nn/graph@0.2.0-rc-2024-10-28" (instance))
                 (import "wasi:filesystem/preopens@0.2.0" (instance))
                 (import "wasi:cli/stdout@0.2.0" (instance)))"#,
        )
        .unwrap();
        match compile(&newer).await {
            Err(UploadError::UnsupportedImports(list)) => assert_eq!(
                list,
                vec![
                    "wasi:cli/environment@0.2.99".to_string(),
                    "wasi:nn/graph@0.2.0-rc-2024-10-28".to_string()
                ]
            ),
            other => panic!("expected unsupported imports, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn real_components_compile() {
        // SANDBOX imports wasi:filesystem and wasi:sockets, as language
        // runtimes do: accepted, since nodes link them (refusing every use).
        // HELLO_P3 is a WASI 0.3 component (wasi:http/handler@0.3.2).
        for path in [
            edge_fixtures::HELLO,
            edge_fixtures::SANDBOX,
            edge_fixtures::HELLO_P3,
        ] {
            let wasm = std::fs::read(path).unwrap();
            let artifact = compile(&wasm).await.unwrap();
            assert!(!artifact.is_empty(), "{path}");
        }
    }
}
