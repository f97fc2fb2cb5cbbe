//! Live logs on the node: which apps are tailed (from the snapshot), the
//! lines of those apps (a guest's stdout/stderr, one access line per
//! request) on their way to the control plane, and the operator's own
//! access log (`[log] access`).
//!
//! Nothing here may slow a request. The dispatcher looks an app up once
//! per request ([`LogHub::tail`]: one load of an `ArcSwap`'d map, empty
//! when nobody tails anything) and hands the result down; a tailed app's
//! handle ([`AppTail`]) carries its tenant's token bucket and its drop
//! count as atomics, so a line takes no lock. A line over the tenant's
//! rate, or beyond the queue's bound (in lines or in bytes), is dropped
//! and counted, and the count is shipped as a "dropped" notice. The
//! shipper ([`ship`]) drains the queue in batches.
//!
//! Node-wide state, built at start; imports no stage.

pub mod access;
pub mod ship;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;
use edge_common::api::LogEvent;
use edge_common::names::{AppName, TenantId};
use edge_common::sync::TailedApp;
use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use tokio::sync::mpsc;

pub use crate::config::AccessLog;

/// Lines waiting for the shipper, all tenants. Beyond it lines are
/// dropped (and counted).
const QUEUE_LINES: usize = 20_000;
/// Bytes waiting for the shipper, all tenants (a line counts its text and
/// [`LINE_OVERHEAD`]): 20,000 lines of 4 KiB would be 80 MB, so the
/// bytes bound is the one a flood of long lines meets.
const QUEUE_BYTES: usize = 8 << 20;
/// What a queued line costs besides its strings (the event, the handle).
const LINE_OVERHEAD: usize = 128;
/// A tenant's rate: lines a second, and the burst it may save up.
const TENANT_LINES_PER_SEC: u64 = 200;
const TENANT_BURST: u64 = 1000;
/// The same as a generic cell rate (GCRA): one line every
/// [`LINE_INTERVAL_NS`], at most [`BURST_NS`] ahead of now.
const LINE_INTERVAL_NS: u64 = 1_000_000_000 / TENANT_LINES_PER_SEC;
const BURST_NS: u64 = LINE_INTERVAL_NS * TENANT_BURST;

/// The tailed apps by tenant, then app: looked up with borrowed names,
/// no allocation per request.
type TailedMap = HashMap<Arc<str>, HashMap<Arc<str>, Arc<AppTail>>>;

/// A tenant's rate, shared by its tailed apps: the theoretical arrival
/// time of its next line (GCRA), in nanoseconds since the hub started.
/// One atomic, so admitting a line is a load and a compare-and-swap.
struct TenantRate {
    next_ns: AtomicU64,
}

impl TenantRate {
    fn admit(&self, now_ns: u64) -> bool {
        let mut current = self.next_ns.load(Ordering::Relaxed);
        loop {
            let next = current.max(now_ns) + LINE_INTERVAL_NS;
            if next > now_ns + BURST_NS {
                return false;
            }
            match self.next_ns.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(seen) => current = seen,
            }
        }
    }
}

/// The queue to the shipper, bounded in lines (the channel) and in bytes
/// (the counter).
struct Queue {
    tx: mpsc::Sender<Queued>,
    bytes: AtomicUsize,
    started: Instant,
}

/// A line on its way to the shipper, with its app's handle.
pub struct Queued {
    pub tail: Arc<AppTail>,
    pub event: LogEvent,
    /// What it counts against [`QUEUE_BYTES`].
    pub bytes: usize,
}

/// One tailed app, as a request holds it: everything a line needs,
/// without a lock or a map lookup.
pub struct AppTail {
    pub tenant: TenantId,
    pub app: AppName,
    rate: Arc<TenantRate>,
    queue: Arc<Queue>,
    /// Lines not shipped since the last notice.
    dropped: AtomicU64,
    dropped_total: IntCounter,
    shipped_total: IntCounter,
}

impl AppTail {
    /// Whether a line of the app may go now (its tenant's rate); if not,
    /// it is counted dropped. Called before the line is built, so a line
    /// over the rate costs a few atomics and no allocation.
    pub fn admit(&self) -> bool {
        let now_ns = self.queue.started.elapsed().as_nanos() as u64;
        if self.rate.admit(now_ns) {
            return true;
        }
        self.count_dropped(1);
        false
    }

    /// Queues an admitted line, or counts it dropped (the queue is full in
    /// lines or bytes). Never waits.
    pub fn send(self: &Arc<Self>, event: LogEvent) {
        let bytes = weight(&event);
        let queue = &self.queue;
        let before = queue.bytes.fetch_add(bytes, Ordering::Relaxed);
        if before + bytes > QUEUE_BYTES {
            queue.bytes.fetch_sub(bytes, Ordering::Relaxed);
            self.count_dropped(1);
            return;
        }
        let queued = Queued {
            tail: self.clone(),
            event,
            bytes,
        };
        if queue.tx.try_send(queued).is_err() {
            queue.bytes.fetch_sub(bytes, Ordering::Relaxed);
            self.count_dropped(1);
        }
    }

    /// Lines of the app that will not reach the control plane: counted in
    /// `edge_log_lines_dropped_total` and in the next notice.
    pub fn count_dropped(&self, n: u64) {
        self.dropped.fetch_add(n, Ordering::Relaxed);
        self.dropped_total.inc_by(n);
    }

    /// A notice's count back, after a post that failed: shipped with the
    /// next one (already counted in the metric).
    fn restore_dropped(&self, n: u64) {
        self.dropped.fetch_add(n, Ordering::Relaxed);
    }

    fn shipped(&self, n: u64) {
        self.shipped_total.inc_by(n);
    }
}

/// What a line costs the queue: its strings and a fixed overhead.
fn weight(event: &LogEvent) -> usize {
    LINE_OVERHEAD
        + match event {
            LogEvent::Log(l) => l.line.len() + l.request_id.len(),
            LogEvent::Access(a) => a.path.len() + a.request_id.len() + a.method.len(),
            LogEvent::Dropped(_) | LogEvent::Keepalive { .. } => 0,
        }
}

pub struct LogHub {
    tailed: ArcSwap<TailedMap>,
    /// Whether `tailed` has any app: read first on every request, so the
    /// common case (nobody tailing) costs one relaxed load instead of an
    /// `ArcSwap` guard. A request racing a change may see the old answer,
    /// which only moves the first tailed line by that one request.
    any_tailed: AtomicBool,
    access: AccessLog,
    queue: Arc<Queue>,
    /// Apps no longer tailed whose drops are not yet noticed (or that a
    /// request or the shipper still holds); off the request path.
    retired: Mutex<Vec<Arc<AppTail>>>,
    metrics: LogMetrics,
}

#[derive(Clone)]
pub struct LogMetrics {
    /// `edge_log_lines_shipped_total{tenant,app}`.
    pub shipped: IntCounterVec,
    /// `edge_log_lines_dropped_total{tenant,app}`.
    pub dropped: IntCounterVec,
    /// `edge_log_tailed_apps`.
    pub tailed_apps: IntGauge,
}

impl LogMetrics {
    fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        // Labels are the control plane's tenant and app ids (or the node's
        // own config's), never request data: bounded by the apps served.
        let shipped = IntCounterVec::new(
            Opts::new(
                "edge_log_lines_shipped_total",
                "Live-log lines (guest and access) the control plane accepted, by tenant and app.",
            ),
            &["tenant", "app"],
        )?;
        let dropped = IntCounterVec::new(
            Opts::new(
                "edge_log_lines_dropped_total",
                "Live-log lines not shipped (the tenant's rate, a full queue, a failed post), by tenant and app.",
            ),
            &["tenant", "app"],
        )?;
        let tailed_apps = IntGauge::new(
            "edge_log_tailed_apps",
            "Apps someone follows with `edgectl logs`, as the last snapshot said.",
        )?;
        registry.register(Box::new(shipped.clone()))?;
        registry.register(Box::new(dropped.clone()))?;
        registry.register(Box::new(tailed_apps.clone()))?;
        Ok(Self {
            shipped,
            dropped,
            tailed_apps,
        })
    }
}

impl LogHub {
    /// The hub and the queue's other end, for [`ship::run`].
    pub fn new(
        access: AccessLog,
        registry: &Registry,
    ) -> Result<(Arc<Self>, mpsc::Receiver<Queued>), prometheus::Error> {
        let (tx, rx) = mpsc::channel(QUEUE_LINES);
        let hub = Arc::new(Self {
            tailed: ArcSwap::from_pointee(TailedMap::new()),
            any_tailed: AtomicBool::new(false),
            access,
            queue: Arc::new(Queue {
                tx,
                bytes: AtomicUsize::new(0),
                started: Instant::now(),
            }),
            retired: Mutex::new(Vec::new()),
            metrics: LogMetrics::new(registry)?,
        });
        Ok((hub, rx))
    }

    pub fn metrics(&self) -> &LogMetrics {
        &self.metrics
    }

    /// The tailed apps, as the snapshot lists them. An app (and tenant)
    /// still tailed keeps its handle, so its rate and drop count carry
    /// over; one no longer tailed is kept aside until its drops are
    /// noticed.
    pub fn set_tailed(&self, tails: &[TailedApp]) {
        let old = self.tailed.load_full();
        let mut rates: HashMap<Arc<str>, Arc<TenantRate>> = HashMap::new();
        for (tenant, apps) in old.iter() {
            if let Some(tail) = apps.values().next() {
                rates.insert(tenant.clone(), tail.rate.clone());
            }
        }
        let mut tailed = TailedMap::new();
        for t in tails {
            let (tenant, app): (Arc<str>, Arc<str>) =
                (Arc::from(t.tenant.as_str()), Arc::from(t.app.as_str()));
            let kept = old.get(&tenant).and_then(|apps| apps.get(&app)).cloned();
            let handle = kept.unwrap_or_else(|| {
                let rate = rates
                    .entry(tenant.clone())
                    .or_insert_with(|| {
                        Arc::new(TenantRate {
                            next_ns: AtomicU64::new(0),
                        })
                    })
                    .clone();
                let labels = [t.tenant.as_str(), t.app.as_str()];
                Arc::new(AppTail {
                    tenant: t.tenant.clone(),
                    app: t.app.clone(),
                    rate,
                    queue: self.queue.clone(),
                    dropped: AtomicU64::new(0),
                    dropped_total: self.metrics.dropped.with_label_values(&labels),
                    shipped_total: self.metrics.shipped.with_label_values(&labels),
                })
            });
            tailed.entry(tenant).or_default().insert(app, handle);
        }
        self.metrics.tailed_apps.set(tails.len() as i64);
        let gone: Vec<Arc<AppTail>> = old
            .iter()
            .flat_map(|(tenant, apps)| {
                apps.iter()
                    .filter(|(app, _)| {
                        tailed
                            .get(tenant)
                            .is_none_or(|apps| !apps.contains_key(*app))
                    })
                    .map(|(_, tail)| tail.clone())
            })
            .collect();
        let any = !tailed.is_empty();
        self.tailed.store(Arc::new(tailed));
        self.any_tailed.store(any, Ordering::Relaxed);
        if !gone.is_empty()
            && let Ok(mut retired) = self.retired.lock()
        {
            retired.extend(gone);
        }
    }

    /// The app's handle if someone follows it: looked up once per request
    /// and handed down (the guest's lines, the access line).
    pub fn tail(&self, tenant: &str, app: &str) -> Option<Arc<AppTail>> {
        if !self.any_tailed.load(Ordering::Relaxed) {
            return None;
        }
        self.tailed.load().get(tenant)?.get(app).cloned()
    }

    /// Whether the operator wants an access line per request.
    pub fn access_log(&self) -> bool {
        self.access == AccessLog::Stderr
    }

    /// A line left the queue (the shipper has it).
    fn dequeued(&self, bytes: usize) {
        self.queue.bytes.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// The drop counts since the last call, per app, as notices to ship.
    fn take_dropped(&self) -> Vec<(Arc<AppTail>, u64)> {
        let mut taken = Vec::new();
        for apps in self.tailed.load().values() {
            for tail in apps.values() {
                let n = tail.dropped.swap(0, Ordering::Relaxed);
                if n > 0 {
                    taken.push((tail.clone(), n));
                }
            }
        }
        if let Ok(mut retired) = self.retired.lock() {
            for tail in retired.iter() {
                let n = tail.dropped.swap(0, Ordering::Relaxed);
                if n > 0 {
                    taken.push((tail.clone(), n));
                }
            }
            // Kept while someone else holds it: it may still count drops.
            retired.retain(|tail| Arc::strong_count(tail) > 1);
        }
        taken
    }
}

/// The dispatcher's decision for one request, in its extensions: the app
/// is tailed, and this is its handle (absent: it is not). The runtime
/// reads it for the guest's lines instead of looking again.
#[derive(Clone)]
pub struct Tailed(pub Arc<AppTail>);

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub() -> (Arc<LogHub>, mpsc::Receiver<Queued>) {
        LogHub::new(AccessLog::Off, &Registry::new()).unwrap()
    }

    fn tailed(tenant: &str, app: &str) -> TailedApp {
        TailedApp {
            tenant: TenantId::try_from(tenant.to_string()).unwrap(),
            app: AppName::try_from(app.to_string()).unwrap(),
        }
    }

    fn line(text: &str) -> LogEvent {
        LogEvent::Log(edge_common::api::GuestLine {
            time_ms: 0,
            node: String::new(),
            app: AppName::try_from("a".to_string()).unwrap(),
            request_id: "1".into(),
            stream: edge_common::api::GuestStream::Stdout,
            line: text.into(),
            cut: false,
        })
    }

    #[test]
    fn only_listed_apps_are_tailed_and_handles_carry_over() {
        let (hub, _rx) = hub();
        assert!(hub.tail("t", "a").is_none());
        hub.set_tailed(&[tailed("t", "a")]);
        let first = hub.tail("t", "a").unwrap();
        assert!(hub.tail("t", "b").is_none() && hub.tail("u", "a").is_none());
        hub.set_tailed(&[tailed("t", "a"), tailed("t", "b")]);
        let again = hub.tail("t", "a").unwrap();
        assert!(
            Arc::ptr_eq(&first, &again),
            "a still tailed app keeps its handle"
        );
        let b = hub.tail("t", "b").unwrap();
        assert!(Arc::ptr_eq(&first.rate, &b.rate), "one rate per tenant");
        hub.set_tailed(&[]);
        assert!(hub.tail("t", "a").is_none());
    }

    #[test]
    fn a_tenant_over_its_rate_gets_drop_counts() {
        let (hub, mut rx) = hub();
        hub.set_tailed(&[tailed("t", "a")]);
        let tail = hub.tail("t", "a").unwrap();
        let sent = TENANT_BURST + 50;
        for _ in 0..sent {
            if tail.admit() {
                tail.send(LogEvent::Keepalive { time_ms: 0 });
            }
        }
        let mut queued = 0;
        while let Ok(q) = rx.try_recv() {
            hub.dequeued(q.bytes);
            queued += 1;
        }
        // The burst, plus what refilled meanwhile.
        assert!(queued >= TENANT_BURST && queued < sent, "{queued}");
        let notices = hub.take_dropped();
        let [(_, count)] = notices.as_slice() else {
            panic!("one notice");
        };
        assert_eq!(count + queued, sent);
        assert!(hub.take_dropped().is_empty(), "counts are taken once");
        assert_eq!(tail.dropped_total.get(), sent - queued);
        assert_eq!(hub.queue.bytes.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn the_queue_is_bounded_in_bytes() {
        let (hub, mut rx) = hub();
        hub.set_tailed(&[tailed("t", "a")]);
        let tail = hub.tail("t", "a").unwrap();
        let long = "x".repeat(4096);
        // Past the rate's burst too: the bytes bound is met first.
        let lines = QUEUE_BYTES / (4096 + LINE_OVERHEAD) + 10;
        for _ in 0..lines {
            tail.send(line(&long));
        }
        let mut queued = 0;
        while rx.try_recv().is_ok() {
            queued += 1;
        }
        assert!(queued < lines, "{queued} of {lines} queued");
        assert!(queued * (4096 + LINE_OVERHEAD) <= QUEUE_BYTES);
        assert_eq!(
            tail.dropped.load(Ordering::Relaxed),
            (lines - queued) as u64
        );
    }

    #[test]
    fn drops_of_an_app_no_longer_tailed_are_still_noticed() {
        let (hub, _rx) = hub();
        hub.set_tailed(&[tailed("t", "a")]);
        let tail = hub.tail("t", "a").unwrap();
        tail.count_dropped(3);
        hub.set_tailed(&[]);
        tail.count_dropped(2);
        let notices = hub.take_dropped();
        assert_eq!(notices.len(), 1);
        assert_eq!(notices[0].1, 5);
        drop(notices);
        drop(tail);
        assert!(hub.take_dropped().is_empty());
        assert!(hub.retired.lock().unwrap().is_empty(), "let go once unheld");
    }
}
