//! The app's config values and secrets, read through
//! `wasi:config/store@0.2.0-rc.1` (the interface Spin and wasmCloud
//! components use too, so a component written for them reads its settings
//! unchanged).
//!
//! Config values are set per app by the operator or through the control
//! plane; secrets only through the control plane (`edgectl secrets set`).
//! Both are in the wasi:config store, and a secret wins over a config
//! value of the same name. Config values are also the component's
//! environment (`std::env::var`, [`all`]), for compatibility; secrets
//! never are.

mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "wasi:config/imports@0.2.0-rc.1",
    });
}

use bindings::wasi::config::store;

/// The value of `key` in the app's wasi:config store (a config value or a
/// secret), if it has one.
pub fn get(key: &str) -> Option<String> {
    store::get(key).ok().flatten()
}

/// The secret `name`: the same call as [`get`] (secrets and config values
/// share one store), named for what the caller means.
pub fn secret(name: &str) -> Option<String> {
    get(name)
}

/// Every config value of the app, from its environment (secrets are never
/// there).
pub fn all() -> Vec<(String, String)> {
    std::env::vars().collect()
}
