//! Per-request resource limits enforced inside the store: CPU time (by epoch
//! deadlines), linear memory and table size (by a `ResourceLimiter`).
//!
//! CPU time is sampled at epoch ticks. While guest code runs, the epoch
//! callback fires at every tick: it yields to the executor (so a busy guest
//! never holds a tokio worker for more than a tick), charges the tick to the
//! request if the guest ran through it, and traps once the budget is spent.
//! A guest that was suspended in between (waiting on a host call, or in the
//! run queue after a yield) sees the tick counter jump by more than one and is
//! not charged, so waiting costs nothing. The error is at most one tick per
//! suspension, either way. Nothing runs per host call: an exact clock read
//! around every host call cost about 4% of hello throughput.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use wasmtime::{ResourceLimiter, Store, UpdateDeadline};

/// A limit a guest ran into; the error a store traps with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LimitExceeded {
    #[error("the request used more than its {0:?} of CPU time")]
    CpuTime(Duration),
}

/// Ticks of the node's epoch ticker, counted alongside the engine's epoch
/// (which wasmtime does not expose).
pub type TickCounter = Arc<AtomicU64>;

/// Store data that counts the CPU ticks charged to its request (the
/// request's `Host`).
pub trait CpuTicks {
    fn cpu_ticks(&mut self) -> &mut u64;
}

/// Installs the CPU budget on a request's store. The ticks charged so far are
/// in the store data's [`CpuTicks`].
pub fn enforce_cpu_budget<T: CpuTicks + 'static>(
    store: &mut Store<T>,
    ticks: &TickCounter,
    tick: Duration,
    budget: Duration,
) {
    let budget_ticks = budget.as_nanos().div_ceil(tick.as_nanos().max(1)) as u64;
    // The tick at which the guest was last seen running, shared with the
    // yield future so that time spent waiting to be rescheduled is skipped.
    let last_seen = Arc::new(AtomicU64::new(ticks.load(Ordering::Acquire)));
    let ticks = ticks.clone();
    store.epoch_deadline_callback(move |mut ctx| {
        let now = ticks.load(Ordering::Acquire);
        if now == last_seen.load(Ordering::Relaxed) + 1 {
            *ctx.data_mut().cpu_ticks() += 1;
        }
        last_seen.store(now, Ordering::Relaxed);
        if *ctx.data_mut().cpu_ticks() > budget_ticks {
            return Err(LimitExceeded::CpuTime(budget).into());
        }
        let (ticks, last_seen) = (ticks.clone(), last_seen.clone());
        Ok(UpdateDeadline::YieldCustom(
            1,
            Box::pin(async move {
                tokio::task::yield_now().await;
                last_seen.store(ticks.load(Ordering::Acquire), Ordering::Relaxed);
            }),
        ))
    });
    store.set_epoch_deadline(1);
}

/// Memory and table limits of one instance, remembering whether the guest
/// hit them so that the trap that usually follows (an allocation failure
/// ends in `unreachable`) can be reported as the limit it was.
pub struct InstanceLimits {
    pub max_memory_bytes: usize,
    pub max_table_elements: usize,
    pub hit: Arc<AtomicBool>,
    /// Largest linear memory granted, for the memory high-water metric.
    pub peak_memory_bytes: usize,
}

impl ResourceLimiter for InstanceLimits {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory_bytes {
            self.hit.store(true, Ordering::Relaxed);
            return Ok(false);
        }
        self.peak_memory_bytes = self.peak_memory_bytes.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_table_elements {
            self.hit.store(true, Ordering::Relaxed);
            return Ok(false);
        }
        Ok(true)
    }
}
