//! Cache purges as the API takes them: the request body, and the
//! per-tenant rate cap.
//!
//! Every purge bumps the revision, so it costs a snapshot rebuild and a
//! long-poll answer on every node; the cap keeps one tenant's script from
//! turning that into a fleet-wide storm.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use edge_common::names::TenantId;
use edge_common::sync::PurgeTarget;
use serde::Deserialize;

/// A purge as a tenant asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgeRequest {
    pub target: PurgeTarget,
    pub soft: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum PurgeRequestError {
    #[error("invalid purge request: {0}")]
    Shape(serde_json::Error),
    #[error("invalid purge request: write a JSON object such as {{\"url\": \"/path\"}}")]
    NotObject,
    #[error("name what to purge: one of `url`, `key` or `all: true`")]
    NoTarget,
    #[error("name one thing to purge: only one of `url`, `key` and `all`")]
    TwoTargets,
    #[error("`all` must be true (to purge something else, use `url` or `key`)")]
    AllFalse,
    #[error("{0}")]
    Target(String),
}

/// The body of `POST /v1/apps/{app}/purge`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    url: Option<String>,
    key: Option<String>,
    all: Option<bool>,
    #[serde(default)]
    soft: bool,
}

impl PurgeRequest {
    /// `{"url"}`, `{"key"}` or `{"all": true}` (exactly one), and an
    /// optional `"soft"` (default: hard).
    pub fn from_json(value: serde_json::Value) -> Result<Self, PurgeRequestError> {
        // serde would read a struct from an array too (`[url, key, ...]`).
        if !value.is_object() {
            return Err(PurgeRequestError::NotObject);
        }
        let body: Body = serde_json::from_value(value).map_err(PurgeRequestError::Shape)?;
        if body.all == Some(false) {
            return Err(PurgeRequestError::AllFalse);
        }
        let target = match (body.url, body.key, body.all) {
            (Some(url), None, None) => PurgeTarget::Url { url },
            (None, Some(key), None) => PurgeTarget::Key { key },
            (None, None, Some(_)) => PurgeTarget::All,
            (None, None, None) => return Err(PurgeRequestError::NoTarget),
            _ => return Err(PurgeRequestError::TwoTargets),
        };
        target.validate().map_err(PurgeRequestError::Target)?;
        Ok(Self {
            target,
            soft: body.soft,
        })
    }
}

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
    use serde_json::json;

    use super::*;

    #[test]
    fn a_purge_names_exactly_one_valid_target() {
        let parse = PurgeRequest::from_json;
        assert!(matches!(
            parse(json!({ "url": "/a?b=1" })),
            Ok(PurgeRequest {
                target: PurgeTarget::Url { .. },
                soft: false
            })
        ));
        assert!(matches!(
            parse(json!({ "key": "k", "soft": true })),
            Ok(PurgeRequest {
                target: PurgeTarget::Key { .. },
                soft: true
            })
        ));
        assert!(matches!(
            parse(json!({ "all": true })),
            Ok(PurgeRequest {
                target: PurgeTarget::All,
                ..
            })
        ));
        assert!(matches!(parse(json!({})), Err(PurgeRequestError::NoTarget)));
        assert!(matches!(
            parse(json!({ "url": "/a", "key": "k" })),
            Err(PurgeRequestError::TwoTargets)
        ));
        assert!(matches!(
            parse(json!({ "all": false })),
            Err(PurgeRequestError::AllFalse)
        ));
        assert!(matches!(
            parse(json!({ "url": "/a", "extra": 1 })),
            Err(PurgeRequestError::Shape(_))
        ));
        assert!(matches!(
            parse(json!({ "key": "two words" })),
            Err(PurgeRequestError::Target(_))
        ));
        assert!(matches!(
            parse(json!([null, null, true, false])),
            Err(PurgeRequestError::NotObject)
        ));
    }

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
