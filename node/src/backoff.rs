//! The retry backoff of the control-plane clients (the sync long poll, the
//! key-value stream). A leaf: imports no stage.

use std::time::Duration;

use rand::RngExt as _;

/// Exponential backoff with "equal jitter": the step doubles from `floor`
/// up to `cap` on each failure, and each wait is drawn uniformly from
/// `[step / 2, step]`. The wait never exceeds `cap` (the documented
/// ceiling, `control_plane.max_backoff`), and nodes that lost the control
/// plane together do not come back in lockstep. The step itself is not
/// jittered, so it does not wander.
#[derive(Debug, Clone)]
pub struct Backoff {
    step: Duration,
    floor: Duration,
    cap: Duration,
}

impl Backoff {
    /// The first failure waits about `floor` (or `cap`, if lower).
    pub fn new(floor: Duration, cap: Duration) -> Self {
        Self {
            step: Duration::ZERO,
            floor,
            cap,
        }
    }

    /// The wait before the next attempt after one more failure.
    pub fn fail(&mut self) -> Duration {
        self.step = (self.step * 2).max(self.floor).min(self.cap);
        let half = self.step / 2;
        half + half.mul_f64(rand::rng().random_range(0.0..=1.0))
    }

    /// After a success: the next failure starts from `floor` again.
    pub fn reset(&mut self) {
        self.step = Duration::ZERO;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_never_exceeds_the_cap_and_is_not_fixed() {
        let cap = Duration::from_secs(30);
        let mut backoff = Backoff::new(Duration::from_millis(200), cap);
        let mut waits = Vec::new();
        for _ in 0..10_000 {
            let wait = backoff.fail();
            assert!(wait <= cap, "{wait:?} is over the cap");
            waits.push(wait);
        }
        // From the 8th failure on, the step sits at the cap: every wait is
        // in [cap / 2, cap], and they differ.
        let steady = &waits[8..];
        assert!(steady.iter().all(|w| *w >= cap / 2));
        let distinct: std::collections::HashSet<_> = steady.iter().collect();
        assert!(distinct.len() > 1000, "{} distinct waits", distinct.len());
    }

    #[test]
    fn the_step_doubles_from_the_floor_and_a_reset_starts_over() {
        let floor = Duration::from_millis(200);
        let mut backoff = Backoff::new(floor, Duration::from_secs(30));
        for step in [200u64, 400, 800, 1600] {
            let wait = backoff.fail();
            let step = Duration::from_millis(step);
            assert!(
                wait >= step / 2 && wait <= step,
                "{wait:?} outside [{:?}, {step:?}]",
                step / 2
            );
        }
        backoff.reset();
        assert!(backoff.fail() <= floor);
    }

    #[test]
    fn a_cap_under_the_floor_wins() {
        let cap = Duration::from_millis(100);
        let mut backoff = Backoff::new(Duration::from_millis(200), cap);
        for _ in 0..100 {
            assert!(backoff.fail() <= cap);
        }
    }
}
