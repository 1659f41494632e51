//! Who may upload and read which photo: the scope rules of records
//! (`sync_protocol::scope`) carried over to the photos they name. A photo is
//! readable by whoever uploaded it, by admins, and by anyone who may see one
//! of the records its uploads named; an upload naming a record needs that
//! record to be in the uploader's scope. These are the only places the photo
//! routes ask.

use chrono::NaiveDate;
use mobile_schema::ids::RecordId;

use super::{PhotoMeta, Photos};
use crate::access::{Visibility, scope_of};
use crate::auth::Authenticated;
use crate::storage::StorageError;

pub fn today(photos: &Photos) -> NaiveDate {
    mobile_schema::time::shanghai_at_ms(photos.inner.clock.now_ms()).date_naive()
}

/// May `who` see the stored record `id`? `None` when the store has no such record.
fn sees(who: &Authenticated, photos: &Photos, id: RecordId) -> Result<Option<bool>, StorageError> {
    let storage = photos.inner.storage.as_ref();
    let Some(state) = storage.record(id)? else {
        return Ok(None);
    };
    let mut visibility = Visibility::new(storage, today(photos));
    visibility.visible(&scope_of(&who.user), &state).map(Some)
}

/// May `who` read (download, thumbnail, info) this photo?
pub fn may_read_photo(who: &Authenticated, photos: &Photos, photo: &PhotoMeta) -> Result<bool, StorageError> {
    if who.user.role == mobile_schema::workflow::Role::Admin || photo.stored_by == who.user.id {
        return Ok(true);
    }
    for id in &photo.records {
        if sees(who, photos, *id)? == Some(true) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// May `who` upload a photo for `record` (named in the upload's metadata)?
/// A record the server does not have yet is allowed: a stock client may send
/// the photo before the record syncs, and the photo stays readable only by
/// its uploader until a visible record names it.
pub fn may_attach(who: &Authenticated, photos: &Photos, record: Option<RecordId>) -> Result<bool, StorageError> {
    match record {
        None => Ok(true),
        Some(id) => Ok(sees(who, photos, id)?.unwrap_or(true)),
    }
}

/// May `who` read the evidence checks of this inspection?
pub fn may_read_record(who: &Authenticated, photos: &Photos, record: RecordId) -> Result<bool, StorageError> {
    Ok(sees(who, photos, record)? == Some(true))
}
