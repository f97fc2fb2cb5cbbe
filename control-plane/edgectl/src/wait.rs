//! Waiting for the nodes after a change, by polling the app's status.

use std::time::{Duration, Instant};

use edge_common::api::{AppStatus, NodeRollout, RolloutState};

use crate::client::{Api, Failure};

/// How often the status is polled while waiting.
const POLL: Duration = Duration::from_millis(25);

fn not_all_applied(done: usize, nodes: usize, revision: u64, timeout: Duration) -> Failure {
    Failure(format!(
        "only {done}/{nodes} nodes applied revision {revision} within {}",
        humantime::format_duration(timeout)
    ))
}

/// Polls the app's status until every node that has checked in recently
/// reports an applied revision at or past `revision` (a purge's, which
/// is not the app's own latest change); returns (applied, nodes). A node
/// that rejected that revision or a later one fails it.
pub async fn wait_for_revision(
    api: &Api,
    name: &str,
    revision: u64,
    started: Instant,
    timeout: Duration,
) -> Result<(usize, usize), Failure> {
    loop {
        let status: AppStatus = api.get(&["apps", name, "status"]).await?;
        let nodes = status.nodes;
        let applied = |n: &NodeRollout| n.applied_revision.unwrap_or(0);
        if let Some((node, refused)) = nodes.iter().find_map(|n| {
            n.refused
                .as_ref()
                .filter(|r| r.revision >= revision && r.revision > applied(n))
                .map(|r| (n, r))
        }) {
            return Err(Failure(format!(
                "node {} refused revision {}: {}",
                node.node,
                refused.revision,
                refused.error.as_deref().unwrap_or("no reason given")
            )));
        }
        let done = nodes.iter().filter(|n| applied(n) >= revision).count();
        if done == nodes.len() {
            return Ok((done, nodes.len()));
        }
        if started.elapsed() > timeout {
            return Err(not_all_applied(done, nodes.len(), revision, timeout));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Polls the app's status until every node that has checked in recently
/// applied `revision` (or one of them rejected it).
pub async fn wait_for_nodes(
    api: &Api,
    name: &str,
    revision: u64,
    started: Instant,
    timeout: Duration,
) -> Result<(), Failure> {
    loop {
        let status: AppStatus = api.get(&["apps", name, "status"]).await?;
        let nodes = &status.nodes;
        // The status is relative to the app's latest change, which is this
        // deploy or a later one.
        let current = status.revision >= revision;
        let applied = |n: &NodeRollout| current && n.state == RolloutState::Applied;
        if let Some(rejected) = nodes
            .iter()
            .find(|n| current && n.state == RolloutState::Rejected)
        {
            return Err(Failure(format!(
                "node {} cannot serve revision {revision}: {}",
                rejected.node,
                rejected.error.as_deref().unwrap_or("no reason given")
            )));
        }
        let done = nodes.iter().filter(|n| applied(n)).count();
        if done == nodes.len() {
            let elapsed = started.elapsed().as_secs_f64();
            if nodes.is_empty() {
                println!("{name}: no node has checked in yet; it will be served as nodes connect");
            } else {
                println!(
                    "{name}: live on {done}/{} nodes in {elapsed:.3}s",
                    nodes.len()
                );
            }
            for host in &status.hosts {
                let host = host.to_string();
                if !host.starts_with('*') {
                    println!("  https://{host}/");
                }
            }
            return Ok(());
        }
        if started.elapsed() > timeout {
            return Err(not_all_applied(done, nodes.len(), revision, timeout));
        }
        tokio::time::sleep(POLL).await;
    }
}
