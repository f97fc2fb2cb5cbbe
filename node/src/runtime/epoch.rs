//! One thread per engine that advances the epoch every tick. Guests are
//! compiled with epoch checks; a store's deadline decides what a tick means
//! for it (yield to the executor, or trap when its CPU budget is spent).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::Engine;

pub struct EpochTicker {
    /// Counts ticks like the engine's epoch, for CPU accounting.
    pub ticks: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    pub fn start(engine: Engine, tick: Duration) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let ticks = Arc::new(AtomicU64::new(0));
        let thread = std::thread::Builder::new()
            .name("edge-epoch".into())
            .spawn({
                let stop = stop.clone();
                let ticks = ticks.clone();
                move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(tick);
                        // Our counter first: a guest interrupted by the new
                        // epoch must already see the tick it is charged for.
                        ticks.fetch_add(1, Ordering::Release);
                        engine.increment_epoch();
                    }
                }
            })?;
        Ok(Self {
            ticks,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
