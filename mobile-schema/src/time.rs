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

/// An instant given in Unix milliseconds (a `Clock` reading), in Asia/Shanghai.
pub fn shanghai_at_ms(ms: u64) -> DateTime<FixedOffset> {
    DateTime::from_timestamp_millis(i64::try_from(ms).unwrap_or(i64::MAX))
        .unwrap_or_default()
        .with_timezone(&shanghai())
}

/// Whether `t` lies more than `tolerance` before `start`. Checked: chrono's
/// `DateTime - Duration` panics near its year limits, which a pushed record
/// can reach.
pub fn before_by_more_than(
    t: DateTime<FixedOffset>,
    start: DateTime<FixedOffset>,
    tolerance: chrono::Duration,
) -> bool {
    start.checked_sub_signed(tolerance).is_some_and(|limit| t < limit)
}

/// Whether `t` lies more than `tolerance` after `end` (checked, as above).
pub fn after_by_more_than(t: DateTime<FixedOffset>, end: DateTime<FixedOffset>, tolerance: chrono::Duration) -> bool {
    end.checked_add_signed(tolerance).is_some_and(|limit| t > limit)
}

/// The calendar day of an instant in Asia/Shanghai.
pub fn shanghai_date<Tz: TimeZone>(t: &DateTime<Tz>) -> NaiveDate {
    t.with_timezone(&shanghai()).date_naive()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_checks_do_not_overflow_at_the_limits_of_time() {
        let tol = chrono::Duration::minutes(15);
        let min = DateTime::<chrono::Utc>::MIN_UTC.fixed_offset();
        let max = DateTime::<chrono::Utc>::MAX_UTC.fixed_offset();
        assert!(!before_by_more_than(min, min, tol));
        assert!(!after_by_more_than(max, max, tol));
        assert!(before_by_more_than(min, max, tol));
        assert!(after_by_more_than(max, min, tol));
    }
}
