//! This replica's in-memory rates for live logs: follower starts and
//! lines posted, per tenant. Apart from the handlers, so that the API's
//! state holds them without depending on the handlers.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use edge_common::api::{LogEvent, ShippedLine};
use edge_common::names::{AppName, TenantId};
use tokio::time::Instant;

use crate::store::MetaStore;

/// Followers one tenant may start a minute, per replica (the burst too):
/// each start writes a tail and may bump the revision (every node
/// fetches a snapshot), so a reconnect loop must not churn the fleet.
pub const TAILS_PER_MINUTE: f64 = 30.0;
/// Tenants whose follower starts this replica remembers at once (a full
/// bucket is forgotten first; beyond that, starts wait a second).
const MAX_TAIL_BUCKETS: usize = 10_000;
/// Lines a second one tenant's nodes may post to this replica, all
/// together, and the burst: ten nodes at their own rate (200 a second,
/// see the node's `logs` module), so that one tenant's flood is bounded
/// fleet-wide, not only per node. Over it, lines are counted into a
/// `dropped` notice.
pub const TENANT_LINES_PER_SEC: f64 = 2000.0;
const TENANT_LINES_BURST: f64 = 10_000.0;
/// How long this replica trusts its copy of the tailed apps (the tenants
/// it keeps line rates for).
const TAILED_REFRESH: Duration = Duration::from_secs(1);

/// A token bucket: `rate` a second, saving up to `burst`. Written here:
/// two fields and a refill, behind the caller's lock; a crate's
/// rate limiter would be keyed and sized for far more than this needs.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Self {
        Self {
            tokens: burst,
            at: now,
        }
    }

    fn refill(&mut self, rate: f64, burst: f64, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.at = now;
    }

    /// Takes one token at `now`; else how long until there is one.
    fn take(&mut self, rate: f64, burst: f64, now: Instant) -> Result<(), Duration> {
        self.refill(rate, burst, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / rate))
        }
    }
}

/// Rates this replica keeps in memory (per replica: with N replicas a
/// tenant gets up to N times these, fleet-wide).
#[derive(Default)]
pub struct LogRates {
    /// New followers per tenant ([`TAILS_PER_MINUTE`]). Entries are made
    /// only for tenants with the app asked for (checked first), and full
    /// buckets are forgotten when the map reaches [`MAX_TAIL_BUCKETS`].
    tails: Mutex<HashMap<TenantId, Bucket>>,
    /// Lines per tenant ([`TENANT_LINES_PER_SEC`]): buckets only for the
    /// tenants with a tailed app, from the store, re-read at most every
    /// [`TAILED_REFRESH`].
    lines: Mutex<LineRates>,
}

#[derive(Default)]
struct LineRates {
    tailed: HashSet<(TenantId, AppName)>,
    read_at: Option<Instant>,
    buckets: HashMap<TenantId, Bucket>,
}

impl LogRates {
    /// A follower of `tenant` may start now, or in how long.
    pub(super) fn start_tail(&self, tenant: &TenantId) -> Result<(), Duration> {
        let Ok(mut tails) = self.tails.lock() else {
            return Ok(());
        };
        let now = Instant::now();
        let rate = TAILS_PER_MINUTE / 60.0;
        if tails.len() >= MAX_TAIL_BUCKETS && !tails.contains_key(tenant) {
            // A full bucket is what a new one would be: forgetting it
            // changes nothing.
            tails.retain(|_, b| {
                b.refill(rate, TAILS_PER_MINUTE, now);
                b.tokens < TAILS_PER_MINUTE
            });
        }
        if tails.len() >= MAX_TAIL_BUCKETS && !tails.contains_key(tenant) {
            return Err(Duration::from_secs(1));
        }
        tails
            .entry(tenant.clone())
            .or_insert_with(|| Bucket::full(TAILS_PER_MINUTE, now))
            .take(rate, TAILS_PER_MINUTE, now)
    }

    /// Re-reads the tailed apps if this replica's copy is old.
    pub(super) async fn read_tailed(&self, store: &dyn MetaStore, now_unix: u64) {
        let stale = self
            .lines
            .lock()
            .map(|r| r.read_at.is_none_or(|at| at.elapsed() >= TAILED_REFRESH))
            .unwrap_or(false);
        if !stale {
            return;
        }
        match store.log_tailed_apps(now_unix).await {
            Ok(apps) => {
                if let Ok(mut rates) = self.lines.lock() {
                    let rates = &mut *rates;
                    rates.tailed = apps.into_iter().map(|t| (t.tenant, t.app)).collect();
                    rates.read_at = Some(Instant::now());
                    let tailed = &rates.tailed;
                    rates
                        .buckets
                        .retain(|tenant, _| tailed.iter().any(|(t, _)| t == tenant));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the tailed apps; lines are not rated")
            }
        }
    }

    /// Takes out of a batch the lines over their tenant's rate; how many
    /// per app. Notices pass (they tell a follower lines are missing), and
    /// so do lines of apps this replica does not know tailed (the store
    /// decides about them), so buckets exist only for tailed tenants.
    pub(super) fn rate(&self, lines: &mut Vec<ShippedLine>) -> BTreeMap<(TenantId, AppName), u64> {
        let mut over: BTreeMap<(TenantId, AppName), u64> = BTreeMap::new();
        let Ok(mut rates) = self.lines.lock() else {
            return over;
        };
        let rates = &mut *rates;
        let now = Instant::now();
        lines.retain(|line| {
            let app = match &line.event {
                LogEvent::Log(l) => &l.app,
                LogEvent::Access(a) => &a.app,
                LogEvent::Dropped(_) | LogEvent::Keepalive { .. } => return true,
            };
            if !rates.tailed.contains(&(line.tenant.clone(), app.clone())) {
                return true;
            }
            let admitted = rates
                .buckets
                .entry(line.tenant.clone())
                .or_insert_with(|| Bucket::full(TENANT_LINES_BURST, now))
                .take(TENANT_LINES_PER_SEC, TENANT_LINES_BURST, now)
                .is_ok();
            if !admitted {
                *over.entry((line.tenant.clone(), app.clone())).or_default() += 1;
            }
            admitted
        });
        over
    }
}
