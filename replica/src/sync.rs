//! Sync: push the outbox in seq order, one bounded batch in flight, then pull
//! from the cursor page by page. Every step commits in one transaction and
//! flushes, so a sync cut anywhere finishes on the next call: an unanswered
//! change is still in the outbox and a retry is answered `replayed`; a page not
//! committed is pulled again from the stored cursor. A cursor the server no
//! longer keeps restarts the pull from `0`; the outbox is untouched by that.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use mobile_schema::ids::RecordId;
use sync_protocol::clock::Clock;
use sync_protocol::device_report::DeviceReport;
use sync_protocol::wire::{PullPage, PullResponse};
use sync_protocol::wire::{PushRequest, PushResponse};
use sync_protocol::{Change, Hlc, Op, Outcome, RecordState, RefusalCode, ReplicaId, VersionId};

use crate::error::{ReplicaError, decode, encode};
use crate::keys::{self, meta};
use crate::pacing::Pacing;
use crate::store::{AckedEntry, RefusedEntry, Replica, T, Write, read_meta};
use crate::transport::{Transport, TransportError};

/// What one sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Changes sent, counting a change sent again after a seq gap or re-key each time.
    pub pushed: usize,
    /// Changes the server applied (`applied`, `conflict` or `locked`).
    pub acked: usize,
    /// Of `acked`: applied with concurrent versions a person must resolve.
    pub conflicts: usize,
    /// Of `acked`: kept as pending addenda because the record is signed.
    pub locked: usize,
    pub refused: usize,
    /// Record states received.
    pub pulled: usize,
    pub rekeyed: bool,
    /// The stored cursor had expired on the server; the pull started again from `0`.
    pub cursor_restarted: bool,
    /// Records removed because they left the user's scope.
    pub purged: usize,
    /// The server was restored from a backup: this store sent back what it held.
    pub epoch_recovered: bool,
    /// Versions the restored server took back from this store.
    pub recovered: usize,
    /// Record states the restored server refused to take back.
    pub recover_refused: usize,
}

/// How a push batch ended.
enum Batch {
    Progress,
    Gap(u64),
    Forked,
}

impl Replica {
    /// Push everything pending, then pull everything new.
    ///
    /// A push the server refuses (a change too large for a proxy's limit)
    /// still lets the pull run before its error is returned: what the office
    /// decided meanwhile (a returned inspection) reaches the tablet, and the
    /// outbox waits as it is.
    pub fn sync(&mut self, transport: &mut (impl Transport + Send)) -> Result<SyncReport, ReplicaError> {
        let mut report = SyncReport::default();
        transport.identify(&self.actor())?;
        self.take_rules(transport)?;
        if let Err(e) = self.push_all(transport, &mut report) {
            if matches!(e, ReplicaError::Transport(TransportError::Rejected { .. })) {
                // Its own failure is secondary: the push's is what to report.
                let _ = self.pull_all(transport, &mut report);
            }
            return Err(e);
        }
        self.pull_all(transport, &mut report)?;
        Ok(report)
    }

    /// Only the push half of [`Replica::sync`]: send the outbox, pull nothing.
    pub fn push(&mut self, transport: &mut impl Transport) -> Result<SyncReport, ReplicaError> {
        let mut report = SyncReport::default();
        transport.identify(&self.actor())?;
        self.take_rules(transport)?;
        self.push_all(transport, &mut report)?;
        Ok(report)
    }

    /// Only the pull half of [`Replica::sync`]: bring every record changed since
    /// the stored cursor; the outbox stays as it is.
    pub fn pull(&mut self, transport: &mut (impl Transport + Send)) -> Result<SyncReport, ReplicaError> {
        let mut report = SyncReport::default();
        transport.identify(&self.actor())?;
        self.take_rules(transport)?;
        self.pull_all(transport, &mut report)?;
        Ok(report)
    }

    /// The settings the server gave with the tokens become this tablet's.
    fn take_rules(&mut self, transport: &impl Transport) -> Result<(), ReplicaError> {
        match transport.rules() {
            Some(rules) => self.adopt_rules(rules),
            None => Ok(()),
        }
    }

    fn push_all(&mut self, transport: &mut impl Transport, report: &mut SyncReport) -> Result<(), ReplicaError> {
        let mut gaps_repaired = BTreeSet::new();
        // Counted once, then followed batch by batch: a count is a scan.
        let mut waiting = self.t.outbox.len();
        let mut pacing = Pacing::new(self.config.push_batch, self.config.push_batch_max);
        loop {
            let batch = self.outbox_batch(pacing.size())?;
            let Some(first) = batch.first().map(|c| c.seq) else {
                return Ok(());
            };
            report.pushed += batch.len();
            self.report_to(transport, waiting);
            let sent_at = self.clock.now_ms();
            let started = Instant::now();
            let response = match transport.push(PushRequest { changes: batch.clone() }) {
                Ok(r) => r,
                // A server with lower limits than this batch grew to: smaller.
                Err(TransportError::Rejected { status: 413, .. }) if pacing.too_large() => {
                    report.pushed -= batch.len();
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            pacing.answered(started.elapsed());
            let end = self.settle(&batch, &response, sent_at, report)?;
            if let Some(old) = self.epoch_changed(&response.epoch)? {
                self.recover_epoch(transport, &old, &response.epoch, report)?;
            }
            waiting = match end {
                Batch::Progress => waiting.saturating_sub(batch.len()),
                _ => self.t.outbox.len(),
            };
            match end {
                Batch::Progress => {}
                // After a restore the server lacks acknowledged seqs of this
                // replica for good (their versions were sent back by recovery):
                // continue under a new replica id, as after a fork.
                Batch::Gap(_) if !report.rekeyed && self.recovered_this_epoch()? => {
                    self.rekey()?;
                    report.rekeyed = true;
                    transport.identify(&self.actor())?;
                }
                Batch::Gap(expected) => {
                    // Only once per expected seq: a second gap there means the
                    // server and this store disagree in a way resending cannot fix.
                    if expected >= first || !gaps_repaired.insert(expected) {
                        return Err(ReplicaError::SeqGap {
                            expected,
                            held: Some(first),
                        });
                    }
                    self.requeue(expected, first)?;
                }
                Batch::Forked => {
                    if report.rekeyed {
                        return Err(ReplicaError::Protocol("replica forked again after a re-key".into()));
                    }
                    self.rekey()?;
                    report.rekeyed = true;
                    transport.identify(&self.actor())?;
                }
            }
        }
    }

    fn outbox_batch(&self, size: usize) -> Result<Vec<Change>, ReplicaError> {
        self.t
            .outbox
            .iter()
            .take(size.max(1))
            .map(|item| {
                let (k, v) = item?;
                decode::<crate::stored::Stored>(keys::OUTBOX, &k, &v).map(|s| s.0)
            })
            .collect()
    }

    /// Record the answers of a batch: each answered change leaves the outbox for
    /// `acked` or `refused` in one transaction. Stops at the first transient refusal.
    fn settle(
        &mut self,
        batch: &[Change],
        response: &PushResponse,
        sent_at: u64,
        report: &mut SyncReport,
    ) -> Result<Batch, ReplicaError> {
        let mut w = Write::default();
        w.meta(meta::CLOCK_OFFSET_MS, &offset(response.server_time_ms, sent_at))?;
        // A new epoch is adopted by recovery, once what it lacks was sent.
        if self.epoch_changed(&response.epoch)?.is_none() {
            w.meta(meta::EPOCH, &response.epoch)?;
        }
        let mut end = Batch::Progress;
        let mut refused_records = BTreeSet::new();
        let mut gone = BTreeSet::new();
        let mut new_acked = Vec::new();
        for (change, answer) in batch.iter().zip(&response.outcomes) {
            if answer.seq != change.seq {
                return Err(ReplicaError::Protocol(format!(
                    "outcome for seq {} answered seq {}",
                    change.seq, answer.seq
                )));
            }
            match &answer.outcome {
                Outcome::Refused(r) if r.code == RefusalCode::SeqGap => {
                    end = Batch::Gap(response.expected_seq);
                    break;
                }
                Outcome::Refused(r) if r.code == RefusalCode::ReplicaForked => {
                    end = Batch::Forked;
                    break;
                }
                Outcome::Refused(r) => {
                    let entry = RefusedEntry {
                        replica: self.replica_id,
                        change: change.clone(),
                        refusal: r.clone(),
                    };
                    w.put(
                        T::Refused,
                        keys::versioned(self.replica_id, change.seq),
                        encode(keys::REFUSED, &entry)?,
                    );
                    refused_records.insert(change.record);
                    report.refused += 1;
                }
                outcome => {
                    match outcome {
                        Outcome::Conflict { .. } => report.conflicts += 1,
                        Outcome::Locked { .. } => report.locked += 1,
                        _ => {}
                    }
                    let commit_seq = outcome.commit_seq().unwrap_or(0);
                    let entry = AckedEntry {
                        replica: self.replica_id,
                        commit_seq,
                        change: change.clone(),
                    };
                    w.put(
                        T::Acked,
                        keys::versioned(self.replica_id, change.seq),
                        encode(keys::ACKED, &entry)?,
                    );
                    new_acked.push(entry);
                    report.acked += 1;
                }
            }
            w.del(T::Outbox, keys::seq(change.seq));
            w.del(T::Pending, keys::pending(change.record, change.seq));
            gone.insert(change.seq);
        }
        if response.outcomes.len() < batch.len() && matches!(end, Batch::Progress) {
            return Err(ReplicaError::Protocol(format!(
                "{} outcomes for {} changes",
                response.outcomes.len(),
                batch.len()
            )));
        }
        // A refused change no longer shows in its record's local view.
        if !refused_records.is_empty() {
            let acked = self.acked_entries()?;
            for id in refused_records {
                let pending: Vec<Change> = self
                    .pending_changes(id)?
                    .into_iter()
                    .filter(|c| !gone.contains(&c.seq))
                    .collect();
                let mut acked_for: Vec<&AckedEntry> =
                    acked.iter().map(|(_, a)| a).filter(|a| a.change.record == id).collect();
                acked_for.extend(new_acked.iter().filter(|a| a.change.record == id));
                self.put_view(&mut w, id, self.server_state(id)?, &acked_for, &pending)?;
            }
        }
        self.commit(w)?;
        Ok(end)
    }

    /// Write a record's local view, or drop it when nothing local remains.
    fn put_view(
        &self,
        w: &mut Write,
        id: RecordId,
        server: Option<RecordState>,
        acked: &[&AckedEntry],
        pending: &[Change],
    ) -> Result<(), ReplicaError> {
        if acked.is_empty() && pending.is_empty() {
            w.del(T::Local, keys::record(id));
            return Ok(());
        }
        match self.rebuild(server, acked, pending) {
            Some(view) => w.put(T::Local, keys::record(id), encode(keys::LOCAL, &view)?),
            None => w.del(T::Local, keys::record(id)),
        }
        Ok(())
    }

    /// The server expects `expected` but the outbox starts at `first`: put the
    /// answered changes `expected..first` back in the outbox to send again.
    fn requeue(&mut self, expected: u64, first: u64) -> Result<(), ReplicaError> {
        let mut w = Write::default();
        for seq in expected..first {
            let key = keys::versioned(self.replica_id, seq);
            let change = if let Some(bytes) = self.t.acked.get(key)? {
                w.del(T::Acked, key);
                decode::<AckedEntry>(keys::ACKED, &key, &bytes)?.change
            } else if let Some(bytes) = self.t.refused.get(key)? {
                w.del(T::Refused, key);
                decode::<RefusedEntry>(keys::REFUSED, &key, &bytes)?.change
            } else {
                return Err(ReplicaError::SeqGap {
                    expected,
                    held: Some(first),
                });
            };
            w.put(
                T::Outbox,
                keys::seq(seq),
                encode(keys::OUTBOX, &crate::stored::Stored(change.clone()))?,
            );
            w.put(T::Pending, keys::pending(change.record, seq), Vec::new());
        }
        self.commit(w)
    }

    /// The server has other content under this replica id (a store restored from
    /// a copy): take a new id, renumber the outbox from 1 with references to its
    /// own versions remapped, and rebuild the local views.
    fn rekey(&mut self) -> Result<(), ReplicaError> {
        let old = self.replica_id;
        let new = ReplicaId::generate();
        let changes = self.outbox()?;
        let remap: BTreeMap<VersionId, VersionId> = changes
            .iter()
            .enumerate()
            .map(|(i, c)| (VersionId::new(old, c.seq), VersionId::new(new, i as u64 + 1)))
            .collect();
        let map = |v: &VersionId| remap.get(v).copied().unwrap_or(*v);
        let mut w = Write::default();
        let mut renumbered = Vec::with_capacity(changes.len());
        for (i, c) in changes.iter().enumerate() {
            w.del(T::Outbox, keys::seq(c.seq));
            w.del(T::Pending, keys::pending(c.record, c.seq));
            let mut c2 = c.clone();
            c2.seq = i as u64 + 1;
            match &mut c2.op {
                Op::Create { versions, .. } | Op::Transition { versions, .. } => {
                    for ids in versions.iter_mut().flat_map(|v| v.values_mut()) {
                        ids.iter_mut().for_each(|id| *id = map(id));
                    }
                }
                Op::Edit { units } => {
                    for u in units {
                        u.bases.iter_mut().for_each(|id| *id = map(id));
                    }
                }
            }
            renumbered.push(c2);
        }
        for c in &renumbered {
            w.put(
                T::Outbox,
                keys::seq(c.seq),
                encode(keys::OUTBOX, &crate::stored::Stored(c.clone()))?,
            );
            w.put(T::Pending, keys::pending(c.record, c.seq), Vec::new());
        }
        let next = renumbered.len() as u64 + 1;
        w.meta(meta::REPLICA_ID, &new)?;
        w.meta(meta::NEXT_SEQ, &next)?;
        // Views are rebuilt under the new id, so set it before rebuilding.
        self.replica_id = new;
        let acked = self.acked_entries()?;
        let records: BTreeSet<RecordId> = renumbered
            .iter()
            .map(|c| c.record)
            .chain(acked.iter().map(|(_, a)| a.change.record))
            .collect();
        for id in records {
            let pending: Vec<Change> = renumbered.iter().filter(|c| c.record == id).cloned().collect();
            let acked_for: Vec<&AckedEntry> = acked.iter().map(|(_, a)| a).filter(|a| a.change.record == id).collect();
            self.put_view(&mut w, id, self.server_state(id)?, &acked_for, &pending)?;
        }
        match self.commit(w) {
            Ok(()) => {
                self.next_seq = next;
                Ok(())
            }
            Err(e) => {
                self.replica_id = old;
                Err(e)
            }
        }
    }

    /// Tell the server, with the next request, what it cannot know about this device.
    fn report_to(&self, transport: &mut impl Transport, waiting: usize) {
        transport.report(DeviceReport {
            outbox: Some(waiting as u64),
            clock_ms: Some(self.clock.now_ms()),
            app: None,
            schema: Some(keys::SCHEMA_VERSION),
        });
    }

    fn pull_all<T: Transport + Send>(
        &mut self,
        transport: &mut T,
        report: &mut SyncReport,
    ) -> Result<(), ReplicaError> {
        let waiting = self.t.outbox.len();
        let mut pacing = Pacing::new(self.config.pull_limit, self.config.pull_limit_max);
        loop {
            let cursor: String = read_meta(&self.t.meta, meta::CURSOR)?.unwrap_or_else(|| "0".to_string());
            let clock = self.clock.clone();
            // Three stages on three threads: the next page is fetched while the
            // one before it is decoded and the one before that is written. The
            // server's work on a page, the decoding and the writing each take a
            // good part of a full pull. The channels hand a page over only when
            // the next stage takes it, so at most three pages are held (one in
            // each stage); pages are still written in order, each with the
            // cursor after it.
            let (fetched_tx, fetched) = mpsc::sync_channel::<Fetched>(0);
            let (decoded_tx, decoded) = mpsc::sync_channel::<Decoded>(0);
            // Set when the pull stops early, so that the fetcher asks for no
            // page nobody will write.
            let stop = AtomicBool::new(false);
            let pulled = std::thread::scope(|s| {
                let (fetching, pacing, stop) = (&mut *transport, &mut pacing, &stop);
                let since = cursor.clone();
                let fetcher =
                    s.spawn(move || fetch_pages(fetching, pacing, clock.as_ref(), waiting, since, fetched_tx, stop));
                let decoder = s.spawn(move || decode_pages(&fetched, &decoded_tx, stop));
                let pulled = self.take_pages(&decoded, cursor, report);
                stop.store(true, Ordering::Relaxed);
                // Stops the decoder, and with it the fetcher, at their next page.
                drop(decoded);
                match (decoder.join(), fetcher.join()) {
                    (Ok(()), Ok(())) => pulled,
                    _ => Err(ReplicaError::Protocol("a thread of the pull stopped".into())),
                }
            })?;
            match pulled {
                Pulled::Done => return Ok(()),
                Pulled::Again => {}
                // A restored server: this page counts from a history it no longer has.
                Pulled::Epoch { old, new } => self.recover_epoch(transport, &old, &new, report)?,
            }
        }
    }

    /// Write the pages the decoder sends, in order, until the last or until
    /// the pull must start again.
    fn take_pages(
        &mut self,
        pages: &mpsc::Receiver<Decoded>,
        mut cursor: String,
        report: &mut SyncReport,
    ) -> Result<Pulled, ReplicaError> {
        // Read once per pull, not per page: a tablet back after days offline
        // holds thousands. Only this loop changes them meanwhile (each page's
        // commit deletes what its states contain), and the copy goes with it
        // when a commit fails.
        let mut acked: HashMap<RecordId, Vec<(Vec<u8>, AckedEntry)>> = HashMap::new();
        for (key, a) in self.acked_entries()? {
            acked.entry(a.change.record).or_default().push((key, a));
        }
        for (answer, asked_at) in pages.iter() {
            let mut page = match answer {
                Ok(page) => page,
                // Once per sync: an expired `0` is a server fault a restart cannot fix.
                Err(TransportError::CursorExpired) if cursor != "0" && !report.cursor_restarted => {
                    // Only the cursor moves: pulled states are overwritten page by
                    // page and the outbox and acked changes stay on top of them.
                    let mut w = Write::default();
                    w.meta(meta::CURSOR, &"0")?;
                    self.commit(w)?;
                    report.cursor_restarted = true;
                    return Ok(Pulled::Again);
                }
                Err(e) => return Err(e.into()),
            };
            if let Some(old) = self.epoch_changed(&page.epoch)? {
                return Ok(Pulled::Epoch { old, new: page.epoch });
            }
            // A partial state brings only what changed since the cursor: merged
            // into the state this store holds.
            let Some(states) = self.whole_states(std::mem::take(&mut page.records))? else {
                // A delta for a record this store does not hold: the server
                // sends whole what a device may lack, so this store lost it.
                // Pull everything again, once.
                if cursor == "0" || report.cursor_restarted {
                    return Err(ReplicaError::Protocol(
                        "a partial record state for a record this store does not hold".into(),
                    ));
                }
                let mut w = Write::default();
                w.meta(meta::CURSOR, &"0")?;
                self.commit(w)?;
                report.cursor_restarted = true;
                return Ok(Pulled::Again);
            };
            let mut w = Write::default();
            let mut hlc = self.hlc;
            let now = self.clock.now_ms();
            // The server orders a change more than a day ahead of its clock at
            // its own time, so no stored time is further ahead than that. One
            // beyond (a bad server store, a server clock gone wild) is not taken
            // in: it would drag every later edit of this tablet after it.
            let ceiling = now
                .max(page.server_time_ms.min(Hlc::PLAUSIBLE_MS))
                .saturating_add(OBSERVE_AHEAD_MS);
            for state in &states {
                let id = state.id;
                let keep: Vec<&AckedEntry> = match acked.get_mut(&id) {
                    Some(entries) => {
                        entries.retain(|(key, a)| {
                            // Its effect is in this state: no longer needed on top.
                            let contained = a.commit_seq <= state.commit_seq;
                            if contained {
                                w.del(T::Acked, key);
                            }
                            !contained
                        });
                        entries.iter().map(|(_, a)| a).collect()
                    }
                    None => Vec::new(),
                };
                let pending = self.pending_changes(id)?;
                self.put_view(&mut w, id, Some(state.clone()), &keep, &pending)?;
                w.put(T::Records, keys::record(id), encode(keys::RECORDS, state)?);
                if let Some(top) = highest_hlc(state)
                    && top.ms <= ceiling
                {
                    hlc.observe(top, now);
                }
            }
            // Out of this user's scope now: gone from the device, except what
            // it still has to send (the server will answer that, refusing it
            // with the reason if it is no longer allowed).
            for id in &page.purge {
                for (key, _) in acked.remove(id).unwrap_or_default() {
                    w.del(T::Acked, &key);
                }
                w.del(T::Records, keys::record(*id));
                if self.pending_changes(*id)?.is_empty() {
                    w.del(T::Local, keys::record(*id));
                }
            }
            report.purged += page.purge.len();
            w.meta(meta::CURSOR, &page.next)?;
            w.meta(meta::LAST_HLC, &hlc.last())?;
            w.meta(meta::CLOCK_OFFSET_MS, &offset(page.server_time_ms, asked_at))?;
            w.meta(meta::EPOCH, &page.epoch)?;
            if !page.more {
                w.meta(meta::LAST_SYNC_MS, &now)?;
            }
            self.commit(w)?;
            self.hlc = hlc;
            report.pulled += states.len();
            if !page.more {
                return Ok(Pulled::Done);
            }
            cursor = page.next;
        }
        Err(ReplicaError::Protocol("the pull stopped without an answer".into()))
    }
}

/// A page as the fetcher got it, and the device's clock when it asked.
type Fetched = (Result<PullPage, TransportError>, u64);
/// The same with its records decoded.
type Decoded = (Result<PullResponse, TransportError>, u64);

/// Decode the pages the fetcher sends and send them on, until the fetcher
/// stops, a page fails, or the receiver is gone.
fn decode_pages(pages: &mpsc::Receiver<Fetched>, decoded: &mpsc::SyncSender<Decoded>, stop: &AtomicBool) {
    for (answer, asked_at) in pages.iter() {
        let answer = answer.and_then(|page| Ok(page.into_response()?));
        let failed = answer.is_err();
        if failed {
            stop.store(true, Ordering::Relaxed);
        }
        if decoded.send((answer, asked_at)).is_err() || failed {
            return;
        }
    }
}

/// How a run of pages ended.
enum Pulled {
    Done,
    /// From the cursor now stored.
    Again,
    /// The server's epoch changed: bring it what it lost, then pull again.
    Epoch {
        old: String,
        new: String,
    },
}

/// Pull pages from `since` on, each from where the one before ended, and
/// send them on until the last, an error, `stop`, or the receiver is gone.
fn fetch_pages(
    transport: &mut impl Transport,
    pacing: &mut Pacing,
    clock: &dyn Clock,
    waiting: usize,
    mut since: String,
    pages: mpsc::SyncSender<Fetched>,
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::Relaxed) {
        // What the server cannot know about this device, with each request.
        transport.report(DeviceReport {
            outbox: Some(waiting as u64),
            clock_ms: Some(clock.now_ms()),
            app: None,
            schema: Some(keys::SCHEMA_VERSION),
        });
        let asked_at = clock.now_ms();
        let started = Instant::now();
        let answer = transport.pull_page(&since, pacing.size());
        let more = match &answer {
            Ok(page) => {
                pacing.answered(started.elapsed());
                since.clone_from(&page.next);
                page.more
            }
            Err(_) => false,
        };
        if pages.send((answer, asked_at)).is_err() || !more {
            return;
        }
    }
}

impl Replica {
    /// Pulled states made whole; `None` if one is partial and this store does
    /// not hold the record it updates.
    fn whole_states(&self, pulled: Vec<RecordState>) -> Result<Option<Vec<RecordState>>, ReplicaError> {
        let mut out = Vec::with_capacity(pulled.len());
        for state in pulled {
            if !state.partial {
                out.push(state);
                continue;
            }
            match self.server_state(state.id)? {
                Some(mut held) => {
                    held.merge_delta(state);
                    out.push(held);
                }
                None => return Ok(None),
            }
        }
        Ok(Some(out))
    }
}

fn offset(server_ms: u64, local_ms: u64) -> i64 {
    (server_ms as i128 - local_ms as i128).clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

/// How far ahead of the later of its own and the server's clock a pulled time
/// may be and still be taken in: the server's bound (a day) and a margin.
const OBSERVE_AHEAD_MS: u64 = 2 * 24 * 3600 * 1000;

fn highest_hlc(state: &RecordState) -> Option<Hlc> {
    state.units.values().flat_map(|u| u.live.iter().map(|v| v.hlc)).max()
}
