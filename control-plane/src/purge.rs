//! The per-tenant rate cap on cache purges (the request body is
//! [`edge_common::sync::PurgeRequest`], shared with the node's admin
//! listener).
//!
//! Every purge bumps the revision, so it costs a snapshot rebuild and a
//! long-poll answer on every node; the cap keeps one tenant's script from
//! turning that into a fleet-wide storm.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use edge_common::names::TenantId;

/// At most `max` purges per tenant in any rolling `window`, in memory (a
/// restarted control plane forgets, which only lets a burst through).
pub struct PurgeLimiter {
    max: usize,
    window: Duration,
    recent: Mutex<HashMap<TenantId, VecDeque<Instant>>>,
}

impl PurgeLimiter {
    pub fn new(max: usize, window: Duration) -> Self {
        Self {
            max,
            window,
            recent: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one purge from the tenant's budget, or says how long until
    /// one is free again.
    pub fn try_acquire(&self, tenant: &TenantId, now: Instant) -> Result<(), Duration> {
        // A panic elsewhere while holding the lock leaves the timestamps
        // consistent (every change is one push or pop), so carry on.
        let mut recent = self
            .recent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let times = recent.entry(tenant.clone()).or_default();
        while times
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= self.window)
        {
            times.pop_front();
        }
        if times.len() >= self.max {
            let free_at = times.front().map_or(now, |oldest| *oldest + self.window);
            return Err(free_at.saturating_duration_since(now));
        }
        times.push_back(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limiter_counts_a_rolling_window_per_tenant() {
        let limiter = PurgeLimiter::new(2, Duration::from_secs(60));
        let (a, b): (TenantId, TenantId) = (
            TenantId::try_from("a".to_string()).expect("valid"),
            TenantId::try_from("b".to_string()).expect("valid"),
        );
        let t0 = Instant::now();
        assert_eq!(limiter.try_acquire(&a, t0), Ok(()));
        assert_eq!(
            limiter.try_acquire(&a, t0 + Duration::from_secs(10)),
            Ok(())
        );
        assert_eq!(
            limiter.try_acquire(&a, t0 + Duration::from_secs(20)),
            Err(Duration::from_secs(40))
        );
        assert_eq!(limiter.try_acquire(&b, t0), Ok(()), "tenants are apart");
        assert_eq!(
            limiter.try_acquire(&a, t0 + Duration::from_secs(60)),
            Ok(())
        );
        assert!(
            limiter
                .try_acquire(&a, t0 + Duration::from_secs(61))
                .is_err()
        );
    }
}
