//! Per-request resource limits enforced inside the store: CPU time (by epoch
//! deadlines), linear memory and table size (by a `ResourceLimiter`).
//!
//! CPU time is the time the guest's own code runs. A call hook stops the
//! clock whenever the guest calls into the host (so waiting on I/O or a
//! sleep costs nothing) and starts it again on return; the epoch callback,
//! which fires every tick while guest code runs, checks the clock, traps once
//! the budget is spent, and otherwise yields to the executor so that a busy
//! guest never holds a tokio worker for more than a tick.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wasmtime::{CallHook, ResourceLimiter, Store, UpdateDeadline};

use super::host::Host;

/// A limit a guest ran into; the error a store traps with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LimitExceeded {
    #[error("the request used more than its {0:?} of CPU time")]
    CpuTime(Duration),
}

/// The guest's running time in this request. Shared with the yield future of
/// the epoch callback, which restarts it once the guest is scheduled again.
pub struct CpuClock {
    base: Instant,
    /// Nanoseconds of guest execution before `running_since`.
    used_nanos: AtomicU64,
    /// Nanoseconds after `base` at which the guest last started running;
    /// `u64::MAX` while it is not running.
    running_since: AtomicU64,
}

const STOPPED: u64 = u64::MAX;

impl CpuClock {
    pub fn new() -> Arc<Self> {
        Arc::new(CpuClock {
            base: Instant::now(),
            used_nanos: AtomicU64::new(0),
            running_since: AtomicU64::new(STOPPED),
        })
    }

    fn now(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    fn start(&self) {
        self.running_since.store(self.now(), Ordering::Relaxed);
    }

    fn stop(&self) {
        let since = self.running_since.swap(STOPPED, Ordering::Relaxed);
        if since != STOPPED {
            let ran = self.now().saturating_sub(since);
            self.used_nanos.fetch_add(ran, Ordering::Relaxed);
        }
    }

    /// Guest CPU time so far, including the current run.
    pub fn used(&self) -> Duration {
        let since = self.running_since.load(Ordering::Relaxed);
        let mut used = self.used_nanos.load(Ordering::Relaxed);
        if since != STOPPED {
            used += self.now().saturating_sub(since);
        }
        Duration::from_nanos(used)
    }
}

/// Installs the CPU accounting and budget on a request's store.
pub fn enforce_cpu_budget(store: &mut Store<Host>, clock: &Arc<CpuClock>, budget: Duration) {
    store.call_hook(|ctx, hook| {
        let clock = &ctx.data().cpu;
        match hook {
            CallHook::CallingWasm | CallHook::ReturningFromHost => clock.start(),
            CallHook::ReturningFromWasm | CallHook::CallingHost => clock.stop(),
        }
        Ok(())
    });
    let clock = clock.clone();
    store.epoch_deadline_callback(move |_ctx| {
        if clock.used() > budget {
            clock.stop();
            return Err(LimitExceeded::CpuTime(budget).into());
        }
        // Time spent waiting to be scheduled again is not the guest's.
        clock.stop();
        let clock = clock.clone();
        Ok(UpdateDeadline::YieldCustom(
            1,
            Box::pin(async move {
                tokio::task::yield_now().await;
                clock.start();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_counts_only_running_time() {
        let clock = CpuClock::new();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(clock.used(), Duration::ZERO);
        clock.start();
        std::thread::sleep(Duration::from_millis(5));
        clock.stop();
        let ran = clock.used();
        assert!(ran >= Duration::from_millis(5), "{ran:?}");
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(clock.used(), ran, "a stopped clock does not advance");
    }
}
