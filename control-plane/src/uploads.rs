//! What keeps one tenant's uploads from starving everyone else's: upload
//! slots with a per-tenant share ([`UploadSlots`]), and a body reader that
//! cuts a body sent too slowly ([`read_body`]).
//!
//! An upload is held in memory until it is compiled, so only a few run at
//! once. Without these, four clients sending a byte a second would hold
//! every slot for as long as they liked.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use edge_common::names::TenantId;
use http_body_util::BodyExt;
use tokio::sync::Notify;

/// Why no slot was given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlotError {
    /// The tenant has its share of slots in use (refused at once).
    #[error("tenant {tenant} has {per_tenant} uploads in progress, the most one tenant may have")]
    TenantBusy { tenant: TenantId, per_tenant: usize },
    /// Every slot stayed taken for as long as a request may wait.
    #[error("every upload slot stayed taken for {waited:?}")]
    Busy { waited: Duration },
}

#[derive(Default)]
struct Held {
    total: usize,
    /// Slots held per tenant. An entry is removed when its count reaches
    /// zero, so there are never more entries than `total`, which is at
    /// most the global cap.
    per_tenant: HashMap<TenantId, usize>,
}

/// At most `global` uploads at once, and at most `per_tenant` of them for
/// any one tenant.
pub struct UploadSlots {
    global: usize,
    per_tenant: usize,
    held: Mutex<Held>,
    freed: Notify,
}

impl UploadSlots {
    /// `per_tenant` is clamped to `1..=global`, and `global` to at least 1.
    pub fn new(global: usize, per_tenant: usize) -> Arc<Self> {
        let global = global.max(1);
        Arc::new(Self {
            global,
            per_tenant: per_tenant.clamp(1, global),
            held: Mutex::new(Held::default()),
            freed: Notify::new(),
        })
    }

    /// A slot for `tenant`: refused at once if the tenant holds its share;
    /// else waits up to `wait` for one of the global slots.
    pub async fn acquire(
        self: &Arc<Self>,
        tenant: &TenantId,
        wait: Duration,
    ) -> Result<UploadSlot, SlotError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Registered before trying, so a slot freed between the try
            // and the wait still wakes this waiter.
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(slot) = self.try_acquire(tenant)? {
                return Ok(slot);
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return Err(SlotError::Busy { waited: wait });
            }
        }
    }

    /// `Ok(None)` when every global slot is taken.
    fn try_acquire(self: &Arc<Self>, tenant: &TenantId) -> Result<Option<UploadSlot>, SlotError> {
        // Every change under the lock is a pair of counter updates made
        // together, so a poisoned lock still holds consistent counts.
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let mine = held.per_tenant.get(tenant).copied().unwrap_or(0);
        if mine >= self.per_tenant {
            return Err(SlotError::TenantBusy {
                tenant: tenant.clone(),
                per_tenant: self.per_tenant,
            });
        }
        if held.total >= self.global {
            return Ok(None);
        }
        held.total += 1;
        held.per_tenant.insert(tenant.clone(), mine + 1);
        Ok(Some(UploadSlot {
            slots: self.clone(),
            tenant: tenant.clone(),
        }))
    }

    /// (slots held, tenants holding one).
    pub fn in_use(&self) -> (usize, usize) {
        let held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        (held.total, held.per_tenant.len())
    }
}

/// One upload slot, given back when dropped.
pub struct UploadSlot {
    slots: Arc<UploadSlots>,
    tenant: TenantId,
}

impl Drop for UploadSlot {
    fn drop(&mut self) {
        {
            let mut held = self
                .slots
                .held
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            held.total = held.total.saturating_sub(1);
            if let Some(count) = held.per_tenant.get_mut(&self.tenant) {
                *count -= 1;
                if *count == 0 {
                    held.per_tenant.remove(&self.tenant);
                }
            }
        }
        // Every waiter tries again: the first one of a tenant under its
        // share takes the slot, the others wait on.
        self.slots.freed.notify_waiters();
    }
}

/// How slowly an upload body may arrive.
#[derive(Debug, Clone, Copy)]
pub struct BodyPace {
    /// The body is cut when no byte arrives for this long.
    pub idle_timeout: Duration,
    /// Once `grace` has passed, the body must have averaged at least this
    /// many bytes a second since reading began (0: no minimum).
    pub min_bytes_per_sec: u64,
    pub grace: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the upload is larger than the {limit}-byte upload limit")]
    TooLarge { limit: u64 },
    #[error("the upload sent nothing for {idle:?}; it was cut after {received} bytes")]
    Idle { idle: Duration, received: u64 },
    #[error(
        "the upload arrived at {rate} bytes/s on average, below the {min} bytes/s minimum; it was cut after {received} bytes"
    )]
    TooSlow { rate: u64, min: u64, received: u64 },
    #[error("reading the upload: {0}")]
    Read(String),
}

/// Reads a whole upload body of at most `limit` bytes at `pace`.
///
/// The minimum rate is an average since reading began, checked as each
/// chunk arrives, after the grace period: simple, and it lets a body
/// stall briefly (a lost packet) as long as it catches up. A body that
/// falls behind and then sends nothing more is cut by the idle timeout, so
/// a slow body holds its slot at most `grace` plus `idle_timeout` past the
/// point where it fell behind.
pub async fn read_body<B>(body: B, limit: u64, pace: BodyPace) -> Result<Bytes, BodyError>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let mut body = body;
    let started = Instant::now();
    let mut received = BytesMut::new();
    loop {
        let frame = match tokio::time::timeout(pace.idle_timeout, body.frame()).await {
            Err(_) => {
                return Err(BodyError::Idle {
                    idle: pace.idle_timeout,
                    received: received.len() as u64,
                });
            }
            Ok(None) => return Ok(received.freeze()),
            Ok(Some(Err(e))) => return Err(BodyError::Read(e.to_string())),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        if received.len() as u64 + data.len() as u64 > limit {
            discard_briefly(&mut body).await;
            return Err(BodyError::TooLarge { limit });
        }
        received.extend_from_slice(&data);
        let elapsed = started.elapsed();
        if pace.min_bytes_per_sec > 0 && elapsed > pace.grace {
            let rate = (received.len() as f64 / elapsed.as_secs_f64()) as u64;
            if rate < pace.min_bytes_per_sec {
                return Err(BodyError::TooSlow {
                    rate,
                    min: pace.min_bytes_per_sec,
                    received: received.len() as u64,
                });
            }
        }
    }
}

/// How much of a refused body is read (and dropped) before the refusal is
/// sent: a client still writing its body then reads the answer instead of
/// a broken pipe, as nginx's lingering close allows. Bounded in bytes and
/// time, so a client sending far more, or slowly, just has its connection
/// closed.
const REFUSED_BODY_DRAIN_BYTES: usize = 1 << 20;
const REFUSED_BODY_DRAIN_TIME: Duration = Duration::from_secs(1);

/// Reads and drops what is left of a refused body, within
/// [`REFUSED_BODY_DRAIN_BYTES`] and [`REFUSED_BODY_DRAIN_TIME`].
pub async fn discard_briefly<B>(body: &mut B)
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
{
    let drain = async {
        let mut seen = 0usize;
        while seen < REFUSED_BODY_DRAIN_BYTES {
            match body.frame().await {
                Some(Ok(frame)) => seen += frame.data_ref().map_or(0, |d| d.len()),
                _ => break,
            }
        }
    };
    let _ = tokio::time::timeout(REFUSED_BODY_DRAIN_TIME, drain).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(s: &str) -> TenantId {
        TenantId::try_from(s.to_string()).expect("valid tenant")
    }

    #[tokio::test]
    async fn a_tenant_gets_its_share_and_the_map_empties() {
        let slots = UploadSlots::new(3, 2);
        let (a, b) = (tenant("a"), tenant("b"));
        let wait = Duration::from_millis(10);
        let a1 = slots.acquire(&a, wait).await.expect("a's first");
        let a2 = slots.acquire(&a, wait).await.expect("a's second");
        assert!(matches!(
            slots.acquire(&a, Duration::from_secs(3600)).await,
            Err(SlotError::TenantBusy { per_tenant: 2, .. })
        ));
        assert_eq!(slots.in_use(), (2, 1), "a refused slot takes nothing");
        let b1 = slots.acquire(&b, wait).await.expect("b still gets one");
        assert!(matches!(
            slots.acquire(&b, wait).await,
            Err(SlotError::Busy { .. })
        ));
        drop(a1);
        let b2 = slots.acquire(&b, wait).await.expect("a freed one");
        drop((a2, b1, b2));
        assert_eq!(slots.in_use(), (0, 0), "no entry is left at zero");
    }

    #[tokio::test]
    async fn a_waiter_gets_the_slot_freed() {
        let slots = UploadSlots::new(1, 1);
        let held = slots
            .acquire(&tenant("a"), Duration::ZERO)
            .await
            .expect("free");
        let waiter = {
            let slots = slots.clone();
            tokio::spawn(async move {
                slots
                    .acquire(&tenant("b"), Duration::from_secs(3600))
                    .await
                    .map(drop)
            })
        };
        tokio::task::yield_now().await;
        drop(held);
        assert!(waiter.await.expect("joins").is_ok());
        assert_eq!(slots.in_use(), (0, 0));
    }

    #[test]
    fn the_share_is_clamped_to_the_global_cap() {
        let slots = UploadSlots::new(0, 9);
        assert_eq!((slots.global, slots.per_tenant), (1, 1));
        assert_eq!(UploadSlots::new(4, 0).per_tenant, 1);
    }
}
