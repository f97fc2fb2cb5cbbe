//! Admission: whether a routed request may run now. A node-wide cap (never
//! above the instance pool's capacity), a per-app concurrency cap and a
//! per-app token-bucket rate limit. Refusals are immediate (503 or 429 with
//! `Retry-After`), never a queue that can grow.
//!
//! The permits a request holds live until its response body ends, not just
//! until the headers are sent: a streaming response still occupies an
//! instance.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::AppLimits;

/// Why a request was not admitted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AdmissionError {
    #[error("the node is running its maximum of {0} requests")]
    NodeAtCapacity(u32),
    #[error("the app is running its maximum of {0} concurrent requests")]
    Concurrency(u32),
    #[error("the app is over its rate of {rate} requests per second")]
    Rate { rate: f64, retry_after: Duration },
}

/// Node-wide admission.
pub struct NodeAdmission {
    slots: Arc<Semaphore>,
    max: u32,
}

impl NodeAdmission {
    pub fn new(max: u32) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max as usize)),
            max,
        }
    }

    pub fn admit(&self) -> Result<OwnedSemaphorePermit, AdmissionError> {
        self.slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| AdmissionError::NodeAtCapacity(self.max))
    }
}

/// One app's admission state on this node.
pub struct AppAdmission {
    concurrency: Arc<Semaphore>,
    max_concurrent: u32,
    rate: Option<Mutex<TokenBucket>>,
}

impl AppAdmission {
    pub fn new(limits: &AppLimits) -> Self {
        Self {
            concurrency: Arc::new(Semaphore::new(limits.max_concurrent_requests as usize)),
            max_concurrent: limits.max_concurrent_requests,
            rate: limits.requests_per_second.map(|rate| {
                let burst = limits.burst.map_or(rate.ceil().max(1.0), f64::from);
                Mutex::new(TokenBucket::new(rate, burst, Instant::now()))
            }),
        }
    }

    /// Admits one request now or says why not. The rate is checked first so
    /// that a request refused for rate does not take a concurrency slot, and
    /// one refused for concurrency gives its rate token back.
    pub fn admit(&self) -> Result<OwnedSemaphorePermit, AdmissionError> {
        let refused = || AdmissionError::Concurrency(self.max_concurrent);
        let Some(bucket) = &self.rate else {
            return self
                .concurrency
                .clone()
                .try_acquire_owned()
                .map_err(|_| refused());
        };
        let mut bucket = bucket
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        bucket.take(Instant::now())?;
        self.concurrency.clone().try_acquire_owned().map_err(|_| {
            // Refused for concurrency: the rate token goes back.
            bucket.refund();
            refused()
        })
    }
}

/// A token bucket: `rate` tokens per second, holding at most `burst`.
#[derive(Debug)]
struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    fn new(rate: f64, burst: f64, now: Instant) -> Self {
        Self {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    fn refund(&mut self) {
        self.tokens = (self.tokens + 1.0).min(self.burst);
    }

    fn take(&mut self, now: Instant) -> Result<(), AdmissionError> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - self.tokens) / self.rate;
            Err(AdmissionError::Rate {
                rate: self.rate,
                retry_after: Duration::try_from_secs_f64(wait).unwrap_or(Duration::MAX),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_allows_a_burst_then_the_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10.0, 3.0, start);
        for _ in 0..3 {
            assert!(bucket.take(start).is_ok());
        }
        let Err(AdmissionError::Rate { retry_after, .. }) = bucket.take(start) else {
            panic!("fourth request in the same instant must be refused");
        };
        assert!(retry_after <= Duration::from_millis(100));
        // 100 ms later one token has come back, and only one.
        let later = start + Duration::from_millis(100);
        assert!(bucket.take(later).is_ok());
        assert!(bucket.take(later).is_err());
        // Idle time never banks more than the burst.
        let much_later = later + Duration::from_secs(60);
        for _ in 0..3 {
            assert!(bucket.take(much_later).is_ok());
        }
        assert!(bucket.take(much_later).is_err());
    }

    #[test]
    fn a_request_refused_for_concurrency_keeps_no_rate_token() {
        let limits = AppLimits {
            max_concurrent_requests: 1,
            requests_per_second: Some(0.001),
            burst: Some(2),
            ..AppLimits::default()
        };
        let app = AppAdmission::new(&limits);
        let _running = app.admit().unwrap();
        assert_eq!(app.admit().unwrap_err(), AdmissionError::Concurrency(1));
        drop(_running);
        // The second token is still there.
        assert!(app.admit().is_ok());
    }

    #[test]
    fn concurrency_permits_come_back_when_dropped() {
        let limits = AppLimits {
            max_concurrent_requests: 2,
            ..AppLimits::default()
        };
        let app = AppAdmission::new(&limits);
        let a = app.admit().unwrap();
        let _b = app.admit().unwrap();
        assert_eq!(app.admit().unwrap_err(), AdmissionError::Concurrency(2));
        drop(a);
        assert!(app.admit().is_ok());
    }
}
