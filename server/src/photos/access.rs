//! Who may upload and read which photo.
//!
//! Scope rules (which user sees which region's records) are being written in
//! another issue. Until they land, any authenticated user may upload a photo
//! for any record and read any photo. These two functions are the only places
//! the photo routes ask, so the scope rules plug in here and nowhere else.

use mobile_schema::ids::RecordId;

use super::PhotoMeta;
use crate::auth::Authenticated;

/// May `who` read (download, thumbnail, evidence) this photo? Scope rules go
/// here: e.g. allowed when `who` may read one of `photo.records`.
pub fn may_read_photo(who: &Authenticated, photo: &PhotoMeta) -> bool {
    let _ = (who, photo);
    true
}

/// May `who` upload a photo for `record` (named in the upload's metadata)?
/// Scope rules go here: the same rule as for writing the record itself.
pub fn may_attach(who: &Authenticated, record: Option<RecordId>) -> bool {
    let _ = (who, record);
    true
}

/// May `who` read the evidence checks of this inspection?
pub fn may_read_record(who: &Authenticated, record: RecordId) -> bool {
    let _ = (who, record);
    true
}
