//! Drawn tasks stay hidden from inspectors until their window opens (the rule
//! is `sync_protocol::scope::visible`). By then the inspectors' pull cursors
//! have long passed the task's commit seq, so on the day a window opens the
//! task is re-sequenced: their next pull brings it like a new record.

use chrono::NaiveDate;
use mobile_schema::ids::RecordId;
use mobile_schema::record::RecordKind;
use serde::Deserialize;
use sync_protocol::RecordState;

use crate::storage::{StorageError, SyncStorage};

/// The last day whose opening windows were re-sequenced, as `YYYY-MM-DD`.
const OPENED_THROUGH_KEY: &[u8] = b"windows_opened_through";
const SCAN_PAGE: usize = 1000;

/// Just enough of a stored record to skip the ones that are not tasks.
#[derive(Deserialize)]
struct Peek {
    kind: RecordKind,
}

/// Re-sequence every task whose window opened after the last run and by
/// `today`; returns how many. Cheap when already done for `today`; otherwise
/// one scan of the store, once a day.
///
/// `remember` is false when `today` is not the clock's (a drill): the marker
/// then stays where it was, so the real days are still opened when they come.
pub fn open_due(
    storage: &dyn SyncStorage,
    db: &sled::Db,
    today: NaiveDate,
    remember: bool,
) -> Result<usize, StorageError> {
    let tree = db.open_tree(crate::server_replica::TREE)?;
    let through = tree
        .get(OPENED_THROUGH_KEY)?
        .and_then(|v| std::str::from_utf8(&v).ok()?.parse::<NaiveDate>().ok());
    if through.is_some_and(|d| d >= today) {
        return Ok(0);
    }
    let mut due: Vec<RecordId> = Vec::new();
    let mut since = 0;
    loop {
        let page = storage.records_since(since, SCAN_PAGE, usize::MAX)?;
        for bytes in &page.records {
            let peek: Peek =
                serde_json::from_slice(bytes).map_err(|source| StorageError::Corrupt { what: "record", source })?;
            if peek.kind != RecordKind::Task {
                continue;
            }
            let state: RecordState =
                serde_json::from_slice(bytes).map_err(|source| StorageError::Corrupt { what: "record", source })?;
            if let Some(day) = sync_protocol::scope::hidden_until(&state)
                && day <= today
                && through.is_none_or(|t| day > t)
            {
                due.push(state.id);
            }
        }
        since = page.next;
        if !page.more {
            break;
        }
    }
    let n = if due.is_empty() { 0 } else { storage.resurface(&due)? };
    // After the records: a crash in between re-sequences them again, which a
    // pull takes as the same record twice, harmlessly.
    if remember {
        tree.insert(OPENED_THROUGH_KEY, today.to_string().as_bytes())?;
        tree.flush()?;
    }
    if n > 0 {
        tracing::info!(tasks = n, %today, "drawn tasks whose window opened were re-sequenced");
    }
    Ok(n)
}
