//! The node's shutdown flag, as every long-running task watches it.

use tokio::sync::watch;

/// Resolves once the shutdown flag is set (or its sender is gone).
pub async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
