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

/// Whether a guest import such as `wasi:cli/environment@0.2.3` is served by
/// the provided interface `wasi:cli/environment`: same interface, and a
/// 0.2 version no newer than [`WASI_VERSION`].
pub fn import_satisfied_by(import: &str, provided: &str) -> bool {
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
    // Pre-release versions (`0.2.0-rc-...`) predate 0.2.0 and are refused.
    let mut parts = version.split('.').map(|p| p.parse::<u64>().ok());
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(Some(major)), Some(Some(minor)), Some(Some(patch)), None) => {
            let (hmaj, hmin, hpatch) = WASI_VERSION;
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
        .filter(|name| {
            !PROVIDED_EXACT.contains(&name.as_str())
                && PROVIDED_INTERFACES
                    .iter()
                    .all(|provided| !import_satisfied_by(name, provided))
        })
        .collect()
}

/// Whether `component` exports `wasi:http/incoming-handler` at a 0.2 version
/// the node serves.
pub fn exports_http_handler(component: &Component, engine: &Engine) -> bool {
    component
        .component_type()
        .exports(engine)
        .any(|(name, _)| import_satisfied_by(name, "wasi:http/incoming-handler"))
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
}
