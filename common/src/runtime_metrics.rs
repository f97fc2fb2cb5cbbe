//! tokio's own counts as Prometheus gauges, read at every scrape: the
//! tasks alive (a leak of tasks shows here before it shows in memory) and
//! the depth of the runtime's global queue (work waiting for a worker).
//! Both are stable tokio metrics, no `tokio_unstable` needed. Shared by the
//! node (`edge_runtime_*`) and the control plane (`edge_cp_runtime_*`).

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntGauge, Opts};

/// Registers as one collector; reads the runtime of whichever thread
/// gathers (the admin listener's, on the process's one runtime).
pub struct TokioCollector {
    tasks: IntGauge,
    queue: IntGauge,
}

impl TokioCollector {
    /// Gauges named `{prefix}_runtime_tasks_alive` and
    /// `{prefix}_runtime_global_queue_depth`.
    pub fn new(prefix: &str) -> prometheus::Result<Self> {
        Ok(Self {
            tasks: IntGauge::with_opts(Opts::new(
                format!("{prefix}_runtime_tasks_alive"),
                "Tasks alive on the async runtime, read at scrape.",
            ))?,
            queue: IntGauge::with_opts(Opts::new(
                format!("{prefix}_runtime_global_queue_depth"),
                "Tasks waiting in the async runtime's global queue, read at scrape.",
            ))?,
        })
    }
}

impl Collector for TokioCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.tasks
            .desc()
            .into_iter()
            .chain(self.queue.desc())
            .collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let metrics = handle.metrics();
            self.tasks
                .set(i64::try_from(metrics.num_alive_tasks()).unwrap_or(i64::MAX));
            self.queue
                .set(i64::try_from(metrics.global_queue_depth()).unwrap_or(i64::MAX));
        }
        self.tasks
            .collect()
            .into_iter()
            .chain(self.queue.collect())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_the_tasks_alive_at_scrape() {
        let registry = prometheus::Registry::new();
        registry
            .register(Box::new(TokioCollector::new("t").expect("gauges")))
            .expect("registered");
        let value = |registry: &prometheus::Registry| {
            let page = prometheus::TextEncoder::new()
                .encode_to_string(&registry.gather())
                .expect("encoded");
            page.lines()
                .find_map(|l| l.strip_prefix("t_runtime_tasks_alive "))
                .and_then(|v| v.parse::<f64>().ok())
        };
        let before = value(&registry).expect("the gauge");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = rx.await;
        });
        let during = value(&registry).expect("the gauge");
        assert_eq!(during, before + 1.0);
        drop(tx);
        task.await.expect("the task ends");
        assert_eq!(value(&registry), Some(before));
    }
}
