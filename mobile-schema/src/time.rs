//! Time rules: instants are stored in UTC with the device's offset; days are
//! counted in Asia/Shanghai (UTC+8, no daylight saving), so a fixed offset is exact.

use chrono::{DateTime, FixedOffset, NaiveDate, TimeZone};

/// Asia/Shanghai. China has one zone and no daylight saving since 1991.
pub fn shanghai() -> FixedOffset {
    const EAST_8: FixedOffset = match FixedOffset::east_opt(8 * 3600) {
        Some(o) => o,
        None => unreachable!(),
    };
    EAST_8
}

/// The calendar day of an instant in Asia/Shanghai.
pub fn shanghai_date<Tz: TimeZone>(t: &DateTime<Tz>) -> NaiveDate {
    t.with_timezone(&shanghai()).date_naive()
}
