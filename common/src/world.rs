//! The world the node provides to guests, as both sides must check it: the
//! control plane refuses an upload the node could not link, with the same
//! rule the node applies when it loads a component.

use wasmtime::Engine;
use wasmtime::component::Component;

/// The WASI version the node implements (wasmtime 48's WIT). Guests built
/// against a newer 0.2.x may call functions that do not exist here, so they
/// are refused at load time.
pub const WASI_VERSION: (u64, u64, u64) = (0, 2, 12);

/// Every interface [`linker`] defines, without version.
pub const PROVIDED_INTERFACES: &[&str] = &[
    "wasi:http/types",
    "wasi:http/outgoing-handler",
    "wasi:io/poll",
    "wasi:io/error",
    "wasi:io/streams",
    "wasi:clocks/wall-clock",
    "wasi:clocks/monotonic-clock",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    // Imported by language runtimes whether or not the app uses them;
    // linked empty (no preopened directory) and refusing (every socket use
    // is access-denied), so outbound HTTP stays the only way out.
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
    "wasi:sockets/network",
    "wasi:sockets/instance-network",
    "wasi:sockets/tcp",
    "wasi:sockets/tcp-create-socket",
    "wasi:sockets/udp",
    "wasi:sockets/udp-create-socket",
    "wasi:sockets/ip-name-lookup",
];

/// What the node gives a guest, in the words of an error message.
pub const PROVIDED_SUMMARY: &str = "wasi:http, wasi:io, wasi:clocks, wasi:random, wasi:cli, wasi:config, wasi:keyvalue, and wasi:filesystem and wasi:sockets that refuse every use";

/// The newest WASI 0.3 version the node accepts. wasmtime 48 defines the
/// 0.3.0 WIT; 0.3.1 and 0.3.2 (what the `wasip3` crate and wit-bindgen
/// 0.63 emit) changed no interface the node links (the files differ only
/// in their version numbers), and wasmtime's linker matches them to 0.3.0.
pub const WASI_P3_VERSION: (u64, u64, u64) = (0, 3, 2);

/// Every WASI 0.3 interface the node defines, without version: wasi:http
/// (the `service` world's imports), wasi:cli, wasi:clocks and wasi:random,
/// and wasi:filesystem and wasi:sockets as empty and refusing as their 0.2
/// counterparts.
pub const PROVIDED_P3_INTERFACES: &[&str] = &[
    "wasi:http/types",
    "wasi:http/client",
    "wasi:cli/types",
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:clocks/types",
    "wasi:clocks/monotonic-clock",
    "wasi:clocks/system-clock",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
    "wasi:sockets/types",
    "wasi:sockets/ip-name-lookup",
];

/// The HTTP handler a WASI 0.2 component exports (`wasi:http/proxy`).
pub const P2_HANDLER: &str = "wasi:http/incoming-handler";
/// The HTTP handler a WASI 0.3 component exports (`wasi:http/service`).
pub const P3_HANDLER: &str = "wasi:http/handler";

/// Whether a guest import such as `wasi:cli/environment@0.2.3` is served by
/// the provided 0.2 interface `wasi:cli/environment`: same interface, and a
/// 0.2 version no newer than [`WASI_VERSION`].
pub fn import_satisfied_by(import: &str, provided: &str) -> bool {
    satisfied_up_to(import, provided, WASI_VERSION)
}

/// The same for a WASI 0.3 import, up to [`WASI_P3_VERSION`].
pub fn p3_import_satisfied_by(import: &str, provided: &str) -> bool {
    satisfied_up_to(import, provided, WASI_P3_VERSION)
}

fn satisfied_up_to(import: &str, provided: &str, newest: (u64, u64, u64)) -> bool {
    let (name, version) = match import.split_once('@') {
        Some((name, version)) => (name, Some(version)),
        None => (import, None),
    };
    if name != provided {
        return false;
    }
    let Some(version) = version else {
        return true;
    };
    // Pre-release versions (`0.2.0-rc-...`) predate their release and are
    // refused.
    let mut parts = version.split('.').map(|p| p.parse::<u64>().ok());
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(Some(major)), Some(Some(minor)), Some(Some(patch)), None) => {
            let (hmaj, hmin, hpatch) = newest;
            major == hmaj && minor == hmin && patch <= hpatch
        }
        _ => false,
    }
}

/// Interfaces the node provides at one exact version only: pre-release
/// WASI proposals, whose next release candidate may differ in any way.
/// `wasi:config/store` is the version wasmtime 48's `wasmtime-wasi-config`
/// defines, which Spin and wasmCloud components import too.
pub const PROVIDED_EXACT: &[&str] = &[
    "wasi:config/store@0.2.0-rc.1",
    // The key-value stores (issue 16): the draft wasmtime 48 defines, and
    // this platform's compare-and-swap.
    "wasi:keyvalue/store@0.2.0-draft",
    "wasi:keyvalue/atomics@0.2.0-draft",
    "wasi:keyvalue/batch@0.2.0-draft",
    "edge:keyvalue/cas@0.1.0",
];

/// Every import of `component` that the node does not provide, in order.
pub fn unsupported_imports(component: &Component, engine: &Engine) -> Vec<String> {
    component
        .component_type()
        .imports(engine)
        .map(|(name, _)| name.to_string())
        .filter(|name| !provided(name))
        .collect()
}

fn provided(import: &str) -> bool {
    PROVIDED_EXACT.contains(&import)
        || PROVIDED_INTERFACES
            .iter()
            .any(|provided| import_satisfied_by(import, provided))
        || PROVIDED_P3_INTERFACES
            .iter()
            .any(|provided| p3_import_satisfied_by(import, provided))
}

/// Which HTTP world a component serves, by the handler it exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpWorld {
    /// `wasi:http/incoming-handler@0.2.x`: the `proxy` world, WASI 0.2.
    P2,
    /// `wasi:http/handler@0.3.x`: the `service` world, WASI 0.3.
    P3,
}

impl HttpWorld {
    /// How the world is named to tenants and in metrics labels.
    pub fn label(self) -> &'static str {
        match self {
            HttpWorld::P2 => "wasi-http-0.2",
            HttpWorld::P3 => "wasi-http-0.3",
        }
    }
}

/// The HTTP world `component` serves, at a version the node serves; `None`
/// if it exports neither handler. A component exporting both is served as
/// 0.3.
pub fn http_world(component: &Component, engine: &Engine) -> Option<HttpWorld> {
    let exports: Vec<String> = component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    if exports
        .iter()
        .any(|e| p3_import_satisfied_by(e, P3_HANDLER))
    {
        Some(HttpWorld::P3)
    } else if exports.iter().any(|e| import_satisfied_by(e, P2_HANDLER)) {
        Some(HttpWorld::P2)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_versions_up_to_the_host_version() {
        let env = "wasi:cli/environment";
        assert!(import_satisfied_by("wasi:cli/environment@0.2.0", env));
        assert!(import_satisfied_by("wasi:cli/environment@0.2.12", env));
        assert!(!import_satisfied_by("wasi:cli/environment@0.2.13", env));
        assert!(!import_satisfied_by("wasi:cli/environment@0.3.0", env));
        assert!(!import_satisfied_by(
            "wasi:cli/environment@0.2.0-rc-2023-11-10",
            env
        ));
        assert!(!import_satisfied_by("wasi:filesystem/preopens@0.2.0", env));
        assert!(import_satisfied_by(
            "wasi:filesystem/preopens@0.2.9",
            "wasi:filesystem/preopens"
        ));
        assert!(!import_satisfied_by("wasi:cli/environment@x", env));
    }

    #[test]
    fn p3_imports_up_to_the_p3_version() {
        let types = "wasi:http/types";
        assert!(p3_import_satisfied_by("wasi:http/types@0.3.0", types));
        assert!(p3_import_satisfied_by("wasi:http/types@0.3.2", types));
        assert!(!p3_import_satisfied_by("wasi:http/types@0.3.3", types));
        assert!(!p3_import_satisfied_by("wasi:http/types@0.2.12", types));
        assert!(!p3_import_satisfied_by(
            "wasi:http/types@0.3.0-rc-2025-09-16",
            types
        ));
        assert!(provided("wasi:http/client@0.3.2"));
        assert!(provided("wasi:http/outgoing-handler@0.2.12"));
        // 0.3 names that do not exist in 0.2, and the reverse.
        assert!(!provided("wasi:http/client@0.2.12"));
        assert!(!provided("wasi:http/outgoing-handler@0.3.0"));
        // A 0.3 guest importing a handler (the middleware world) is refused.
        assert!(!provided("wasi:http/handler@0.3.0"));
    }
}
