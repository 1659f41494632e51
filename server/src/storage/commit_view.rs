//! What pulls may see of the writer's commits, and whether a scan saw the
//! tree hold still.
//!
//! A sled iterator is not a snapshot. A group that re-sequences a record
//! deletes its old `seq` key and writes a new one above the visible bound, so
//! a scan running while the group is applied (or applied and still flushing)
//! skips the record. The record comes later at its new seq, which is enough
//! for a cursor; but a pull that reached the end must not tell the device it
//! now holds everything up to there (the cursor's complete seq, which makes
//! later pulls send only the units changed since), or the units the skipped
//! version carried would never reach it. So the writer counts the batches it
//! starts and the batches it has made visible, and a scan is *settled* when no
//! batch was in flight when it began and none started before it ended.

use std::sync::atomic::{AtomicU64, Ordering};

/// The visible commit seq and the writer's batch counters.
#[derive(Debug, Default)]
pub struct CommitView {
    visible: AtomicU64,
    /// Batches the writer began to apply.
    started: AtomicU64,
    /// `started` as of the last batch made visible.
    published: AtomicU64,
    /// Batches applied and then undone.
    undone: AtomicU64,
}

/// What a scan began with: the bound it may read to, and whether the tree
/// was quiet then.
#[derive(Debug, Clone, Copy)]
pub struct ScanStart {
    pub visible: u64,
    started: u64,
    quiet: bool,
}

impl CommitView {
    pub fn new(visible: u64) -> Self {
        Self {
            visible: AtomicU64::new(visible),
            ..Self::default()
        }
    }

    pub fn visible(&self) -> u64 {
        self.visible.load(Ordering::SeqCst)
    }

    /// The writer, before it applies a batch to the tree.
    pub fn begin_write(&self) {
        self.started.fetch_add(1, Ordering::SeqCst);
    }

    /// The writer, once what it applied is durable: pulls may read up to
    /// `seq`, and every batch begun so far is covered by it. A batch that
    /// failed after it was applied stays unpublished until the next success,
    /// whose seq (re-read from the tree) covers it.
    pub fn publish(&self, seq: u64) {
        self.visible.store(seq, Ordering::SeqCst);
        self.published
            .store(self.started.load(Ordering::SeqCst), Ordering::SeqCst);
    }

    /// The writer, once it has put back what a failed batch applied: the tree
    /// is again what `visible` says, and holds still.
    pub fn abandon(&self) {
        self.undone.fetch_add(1, Ordering::SeqCst);
        self.published
            .store(self.started.load(Ordering::SeqCst), Ordering::SeqCst);
    }

    /// A scan begins. Loads in the reverse of `publish`'s stores: when no
    /// batch began between the first and the last load, `visible` is the seq
    /// of the last batch begun.
    pub fn begin_scan(&self) -> ScanStart {
        let published = self.published.load(Ordering::SeqCst);
        let visible = self.visible.load(Ordering::SeqCst);
        let started = self.started.load(Ordering::SeqCst);
        ScanStart {
            visible,
            started,
            quiet: started == published,
        }
    }

    /// How many batches were undone so far: a record an undone batch had
    /// moved is back at its old place, behind a scan that went past it.
    pub fn undone(&self) -> u64 {
        self.undone.load(Ordering::SeqCst)
    }

    /// Whether the tree held still from `start` until now.
    pub fn settled(&self, start: &ScanStart) -> bool {
        start.quiet && self.started.load(Ordering::SeqCst) == start.started
    }

    /// The batches begun so far, if none is in flight: two equal answers
    /// around a raw scan of the tree mean it read a tree that held still.
    pub fn quiet_count(&self) -> Option<u64> {
        let start = self.begin_scan();
        start.quiet.then_some(start.started)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scan_is_settled_only_when_no_batch_was_in_flight_or_began_during_it() {
        let view = CommitView::new(7);
        let quiet = view.begin_scan();
        assert_eq!(quiet.visible, 7);
        assert!(view.settled(&quiet));

        // A batch begins during the scan.
        view.begin_write();
        assert!(!view.settled(&quiet));

        // A scan that begins while the batch is applied but not yet visible.
        let during = view.begin_scan();
        assert_eq!(during.visible, 7);
        view.publish(9);
        assert!(!view.settled(&during), "it began with a batch in flight");

        let after = view.begin_scan();
        assert_eq!(after.visible, 9);
        assert!(view.settled(&after));
    }

    #[test]
    fn an_undone_batch_settles_scans_at_the_same_visible_seq() {
        let view = CommitView::new(3);
        let before = view.begin_scan();
        view.begin_write();
        view.abandon();
        assert!(!view.settled(&before), "the batch was applied during the scan");
        let after = view.begin_scan();
        assert_eq!(after.visible, 3);
        assert!(view.settled(&after));
    }

    #[test]
    fn a_failed_batch_leaves_scans_unsettled_until_the_next_publish() {
        let view = CommitView::new(3);
        view.begin_write();
        // The flush failed: nothing published.
        assert!(!view.settled(&view.begin_scan()));
        view.begin_write();
        view.publish(5);
        let start = view.begin_scan();
        assert_eq!(start.visible, 5);
        assert!(view.settled(&start));
    }

    #[test]
    fn a_raw_scan_held_still_only_when_no_batch_ran_around_it() {
        let view = CommitView::new(3);
        let before = view.quiet_count();
        assert!(before.is_some());
        assert_eq!(view.quiet_count(), before, "nothing happened");
        view.begin_write();
        assert_eq!(view.quiet_count(), None, "a batch in flight");
        view.publish(4);
        let after = view.quiet_count();
        assert!(after.is_some() && after != before, "a batch ran during the scan");
    }
}
