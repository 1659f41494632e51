//! Hybrid logical clocks: physical milliseconds plus a counter, with the replica
//! id breaking ties, so every version has a place in one total order that never
//! runs backwards, whatever the wall clock does.

use serde::{Deserialize, Serialize};

/// A timestamp `(ms, counter)`. Ties between replicas are broken by the version
/// id, which carries the replica id. On the wire: `[ms, counter]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Hlc {
    pub ms: u64,
    pub c: u32,
}

impl Hlc {
    pub const ZERO: Hlc = Hlc { ms: 0, c: 0 };

    /// 2100-01-01T00:00Z. No true clock of a tablet or the server reads later:
    /// a time beyond it came from a broken clock or a bad store, and taking it
    /// in would push every later timestamp out of reach.
    pub const PLAUSIBLE_MS: u64 = 4_102_444_800_000;

    pub fn new(ms: u64, c: u32) -> Self {
        Self { ms, c }
    }

    /// The next timestamp after `self`.
    fn bump(self) -> Self {
        match self.c.checked_add(1) {
            Some(c) => Hlc { ms: self.ms, c },
            // A counter overflow borrows a millisecond from the future: still
            // monotone. At the very top the clock stays put rather than wrap to
            // zero (replicas refuse to observe such times; see `PLAUSIBLE_MS`).
            None => match self.ms.checked_add(1) {
                Some(ms) => Hlc { ms, c: 0 },
                None => self,
            },
        }
    }
}

/// A replica's clock state: the last timestamp it issued or saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HlcClock {
    last: Hlc,
}

impl HlcClock {
    /// Resume after a restart from the highest timestamp this replica persisted.
    pub fn resume(last: Hlc) -> Self {
        Self { last }
    }

    pub fn last(&self) -> Hlc {
        self.last
    }

    /// A timestamp for a local event: above everything issued or seen, and at
    /// least the wall clock.
    pub fn tick(&mut self, now_ms: u64) -> Hlc {
        self.last = if now_ms > self.last.ms {
            Hlc { ms: now_ms, c: 0 }
        } else {
            self.last.bump()
        };
        self.last
    }

    /// Take a remote timestamp into account, so later local events order after it.
    pub fn observe(&mut self, remote: Hlc, now_ms: u64) {
        let top = self.last.max(remote);
        self.last = if now_ms > top.ms { Hlc { ms: now_ms, c: 0 } } else { top };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_clock_at_the_very_top_stays_there_instead_of_wrapping() {
        let mut c = HlcClock::resume(Hlc::new(u64::MAX, u32::MAX));
        assert_eq!(c.tick(1_000), Hlc::new(u64::MAX, u32::MAX));
        let mut c = HlcClock::resume(Hlc::new(7, u32::MAX));
        assert_eq!(c.tick(1), Hlc::new(8, 0));
    }

    #[test]
    fn tick_is_monotone_when_the_wall_clock_jumps_back() {
        let mut c = HlcClock::default();
        let a = c.tick(1_000);
        let b = c.tick(500);
        let d = c.tick(1_000);
        assert!(a < b && b < d);
        assert_eq!(b, Hlc::new(1_000, 1));
    }

    #[test]
    fn observing_a_future_remote_orders_later_events_after_it() {
        let mut c = HlcClock::default();
        c.observe(Hlc::new(9_000, 4), 1_000);
        assert_eq!(c.tick(1_000), Hlc::new(9_000, 5));
    }

    #[test]
    fn counter_overflow_moves_to_the_next_millisecond() {
        let mut c = HlcClock::resume(Hlc::new(10, u32::MAX));
        assert_eq!(c.tick(5), Hlc::new(11, 0));
    }

    proptest! {
        #[test]
        fn every_tick_is_above_everything_issued_or_observed(
            events in proptest::collection::vec((any::<bool>(), 0u64..10_000, 0u64..10_000, 0u32..3), 1..200)
        ) {
            let mut c = HlcClock::default();
            let mut high = Hlc::ZERO;
            for (local, now, rms, rc) in events {
                if local {
                    let t = c.tick(now);
                    prop_assert!(t > high);
                    prop_assert!(t.ms >= now);
                    high = t;
                } else {
                    let r = Hlc::new(rms, rc);
                    c.observe(r, now);
                    high = high.max(r);
                    prop_assert!(c.last() >= high);
                }
            }
        }
    }
}
