//! Crash points for the chaos tests (`control-plane/tests/it/chaos.rs`).
//!
//! Built with the `chaos` feature (only the control plane's tests turn it
//! on), a process whose `EDGE_CHAOS_HOLD` is part of a point's name stops
//! at that point for good, after saying so on stderr: the test then kills
//! it with SIGKILL in exactly that state (half an artifact written, a
//! compile under way). Without the feature [`hold`] does nothing and the
//! point's name is never built.
//!
//! Our own rather than the `fail` crate: the tests need only "announce and
//! hold" in another process, selected by its environment, which `fail`
//! gives through a registry and callbacks, and it would bring a second
//! major version of `rand` into the tree.

/// Holds the calling thread for good if `EDGE_CHAOS_HOLD` is part of the
/// point's name (and the `chaos` feature is on).
#[inline]
pub fn hold(point: impl FnOnce() -> String) {
    #[cfg(feature = "chaos")]
    if let Some(pattern) = std::env::var_os("EDGE_CHAOS_HOLD") {
        let point = point();
        let pattern = pattern.to_string_lossy();
        if !pattern.is_empty() && point.contains(&*pattern) {
            eprintln!("edge-chaos: holding at {point}");
            loop {
                std::thread::park();
            }
        }
    }
    #[cfg(not(feature = "chaos"))]
    let _ = point;
}
