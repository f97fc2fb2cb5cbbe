//! One thread per engine that advances the epoch every tick while guest
//! code may run. Guests are compiled with epoch checks; a store's deadline
//! decides what a tick means for it (yield to the executor, or trap when
//! its CPU budget is spent).
//!
//! With no guest running the thread sleeps until one starts: a node that
//! only proxies and answers from its cache would otherwise wake a thousand
//! times a second for nothing, each time taking a core from the threads
//! that serve (`loadtest/README.md`, scenario c).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::Engine;

pub struct EpochTicker {
    /// Counts ticks like the engine's epoch, for CPU accounting.
    pub ticks: Arc<AtomicU64>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    stop: AtomicBool,
    /// Guests that may be running now ([`Running`] guards).
    running: AtomicUsize,
}

impl EpochTicker {
    pub fn start(engine: Engine, tick: Duration) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            running: AtomicUsize::new(0),
        });
        let ticks = Arc::new(AtomicU64::new(0));
        let thread = std::thread::Builder::new()
            .name("edge-epoch".into())
            .spawn({
                let shared = shared.clone();
                let ticks = ticks.clone();
                move || {
                    while !shared.stop.load(Ordering::Acquire) {
                        if shared.running.load(Ordering::Acquire) == 0 {
                            // `Running::new` unparks; an unpark that comes
                            // before this park makes it return at once.
                            std::thread::park();
                            continue;
                        }
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
            shared,
            thread: Some(thread),
        })
    }

    /// Keeps the epoch advancing while the guard lives: held for as long as
    /// a guest may run.
    pub fn running(&self) -> Running {
        if self.shared.running.fetch_add(1, Ordering::AcqRel) == 0
            && let Some(thread) = &self.thread
        {
            thread.thread().unpark();
        }
        Running(self.shared.clone())
    }
}

/// See [`EpochTicker::running`].
pub struct Running(Arc<Shared>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticks_over(ticker: &EpochTicker, wait: Duration) -> u64 {
        let before = ticker.ticks.load(Ordering::Acquire);
        std::thread::sleep(wait);
        ticker.ticks.load(Ordering::Acquire) - before
    }

    /// Waits (up to 10 s) until a tick that was under way when the last
    /// guard went has landed: three quiet windows in a row.
    fn settled(ticker: &EpochTicker) {
        let mut quiet = 0;
        for _ in 0..1000 {
            quiet = match ticks_over(ticker, Duration::from_millis(10)) {
                0 => quiet + 1,
                _ => 0,
            };
            if quiet == 3 {
                return;
            }
        }
        panic!("the epoch never stopped advancing");
    }

    /// Whether the epoch advances within 10 s.
    fn advances(ticker: &EpochTicker) -> bool {
        (0..1000).any(|_| ticks_over(ticker, Duration::from_millis(10)) > 0)
    }

    #[test]
    fn the_epoch_advances_only_while_a_guest_may_run() {
        let engine = Engine::default();
        let ticker = EpochTicker::start(engine, Duration::from_millis(1)).unwrap();
        settled(&ticker);
        assert_eq!(ticks_over(&ticker, Duration::from_millis(50)), 0, "idle");
        let guests = [ticker.running(), ticker.running()];
        assert!(advances(&ticker), "running");
        drop(guests);
        settled(&ticker);
        assert_eq!(
            ticks_over(&ticker, Duration::from_millis(50)),
            0,
            "idle again"
        );
        let _guest = ticker.running();
        assert!(advances(&ticker), "woken again");
    }
}
