//! How much one sync request carries. A sync starts with small requests, so a
//! weak link that drops mid-request loses little, and doubles them while the
//! answers come back quickly: on a good link a full sync takes a few large
//! requests instead of many small ones, each with its round trip and its flush.

use std::time::Duration;

/// An answer this quick lets the next request be twice as large.
pub const FAST: Duration = Duration::from_secs(1);
/// An answer this slow halves the next request (never below a quarter of the start).
pub const SLOW: Duration = Duration::from_secs(5);

/// The size of the next request: changes per push, or records per pull page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pacing {
    size: usize,
    min: usize,
    max: usize,
}

impl Pacing {
    /// Start at `start`, grow up to `max`.
    pub fn new(start: usize, max: usize) -> Self {
        let start = start.max(1);
        Self {
            size: start,
            min: (start / 4).max(1),
            max: max.max(start),
        }
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// A request of the current size was answered in `took`.
    pub fn answered(&mut self, took: Duration) {
        if took <= FAST {
            self.size = self.size.saturating_mul(2).min(self.max);
        } else if took >= SLOW {
            self.size = (self.size / 2).max(self.min);
        }
    }

    /// The server refused a request of this size as too large: half of it,
    /// down to a single change if need be (a proxy's body limit may be far
    /// below the server's). Returns false when it cannot get smaller.
    pub fn too_large(&mut self) -> bool {
        let smaller = (self.size / 2).max(1);
        let changed = smaller < self.size;
        self.size = smaller;
        self.max = self.size;
        // A slow answer halves down to `min`: never back above the refused size.
        self.min = self.min.min(self.size);
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_on_quick_answers_up_to_the_maximum() {
        let mut p = Pacing::new(64, 500);
        let sizes: Vec<usize> = (0..5)
            .map(|_| {
                p.answered(Duration::from_millis(20));
                p.size()
            })
            .collect();
        assert_eq!(sizes, vec![128, 256, 500, 500, 500]);
    }

    #[test]
    fn holds_on_middling_answers_and_shrinks_on_slow_ones_down_to_a_quarter() {
        let mut p = Pacing::new(100, 1000);
        p.answered(Duration::from_secs(2));
        assert_eq!(p.size(), 100);
        for _ in 0..5 {
            p.answered(Duration::from_secs(30));
        }
        assert_eq!(p.size(), 25);
    }

    #[test]
    fn a_too_large_refusal_halves_and_caps_the_size() {
        let mut p = Pacing::new(64, 500);
        p.answered(Duration::ZERO);
        p.answered(Duration::ZERO);
        assert_eq!(p.size(), 256);
        assert!(p.too_large());
        assert_eq!(p.size(), 128);
        p.answered(Duration::ZERO);
        assert_eq!(p.size(), 128, "never grows past a size the server refused");
        // Below the slow-link floor, down to one.
        let mut p = Pacing::new(64, 64);
        let mut sizes = Vec::new();
        while p.too_large() {
            sizes.push(p.size());
        }
        assert_eq!(sizes, [32, 16, 8, 4, 2, 1]);
        p.answered(SLOW);
        assert_eq!(p.size(), 1, "a slow answer does not grow it back past a refused size");
        let mut small = Pacing::new(1, 1);
        assert!(!small.too_large());
    }
}
