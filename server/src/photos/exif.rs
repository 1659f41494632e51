//! What a photo's EXIF says about where and when it was taken, read with
//! kamadak-exif from the stored file (only the metadata segment is read).

use std::io::BufReader;
use std::path::Path;

use chrono::{DateTime, FixedOffset, NaiveDate, TimeZone};
use exif::{In, Tag, Value};
use mobile_schema::geo::LatLon;
use serde::{Deserialize, Serialize};

/// China's single zone, Asia/Shanghai: UTC+8 without daylight saving since 1991.
pub const SHANGHAI_OFFSET_S: i32 = 8 * 3600;

/// Where the capture time came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeSource {
    /// DateTimeOriginal with OffsetTimeOriginal.
    WithOffset,
    /// DateTimeOriginal without an offset: taken as Asia/Shanghai local time.
    AssumedShanghai,
    /// The GPS date and time stamps (UTC).
    Gps,
}

/// The EXIF facts the evidence checks and thumbnails use.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExifFacts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture_time: Option<DateTime<FixedOffset>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_source: Option<TimeSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<LatLon>,
    /// EXIF orientation 1–8; 1 (or none) is upright.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orientation: Option<u8>,
}

/// Reads the EXIF of a stored file. A file without EXIF, or with EXIF that
/// does not parse, has no facts: that is a flag for the supervisor, not an error.
pub fn read(path: &Path) -> ExifFacts {
    let Ok(file) = std::fs::File::open(path) else {
        return ExifFacts::default();
    };
    let mut reader = BufReader::with_capacity(64 * 1024, file);
    match exif::Reader::new().read_from_container(&mut reader) {
        Ok(exif) => facts(&exif),
        Err(e) => {
            tracing::debug!(path = %path.display(), error = %e, "no readable EXIF");
            ExifFacts::default()
        }
    }
}

fn facts(exif: &exif::Exif) -> ExifFacts {
    let mut out = ExifFacts {
        orientation: exif
            .get_field(Tag::Orientation, In::PRIMARY)
            .and_then(|f| f.value.get_uint(0))
            .and_then(|o| u8::try_from(o).ok())
            .filter(|o| (1..=8).contains(o)),
        position: position(exif),
        ..ExifFacts::default()
    };
    if let Some((t, source)) = capture_time(exif) {
        out.capture_time = Some(t);
        out.time_source = Some(source);
    }
    out
}

fn ascii(exif: &exif::Exif, tag: Tag) -> Option<&[u8]> {
    match &exif.get_field(tag, In::PRIMARY)?.value {
        Value::Ascii(v) => v.first().map(Vec::as_slice),
        _ => None,
    }
}

fn capture_time(exif: &exif::Exif) -> Option<(DateTime<FixedOffset>, TimeSource)> {
    let original = ascii(exif, Tag::DateTimeOriginal).or_else(|| ascii(exif, Tag::DateTime));
    if let Some(mut dt) = original.and_then(|a| exif::DateTime::from_ascii(a).ok()) {
        let with_offset = ascii(exif, Tag::OffsetTimeOriginal)
            .or_else(|| ascii(exif, Tag::OffsetTime))
            .is_some_and(|o| dt.parse_offset(o).is_ok());
        let (offset_s, source) = match (with_offset, dt.offset) {
            (true, Some(minutes)) => (i32::from(minutes) * 60, TimeSource::WithOffset),
            _ => (SHANGHAI_OFFSET_S, TimeSource::AssumedShanghai),
        };
        let zone = FixedOffset::east_opt(offset_s)?;
        let naive = NaiveDate::from_ymd_opt(i32::from(dt.year), u32::from(dt.month), u32::from(dt.day))?.and_hms_opt(
            u32::from(dt.hour),
            u32::from(dt.minute),
            u32::from(dt.second),
        )?;
        return zone.from_local_datetime(&naive).single().map(|t| (t, source));
    }
    // No camera time: the GPS stamps are UTC.
    let date = ascii(exif, Tag::GPSDateStamp)?;
    let date = NaiveDate::parse_from_str(std::str::from_utf8(date).ok()?.trim(), "%Y:%m:%d").ok()?;
    let hms = match &exif.get_field(Tag::GPSTimeStamp, In::PRIMARY)?.value {
        Value::Rational(v) if v.len() >= 3 => [v[0].to_f64(), v[1].to_f64(), v[2].to_f64()],
        _ => return None,
    };
    if !hms.iter().all(|x| x.is_finite() && *x >= 0.0) {
        return None;
    }
    let naive = date.and_hms_opt(hms[0] as u32, hms[1] as u32, hms[2] as u32)?;
    let utc = FixedOffset::east_opt(0)?;
    utc.from_local_datetime(&naive).single().map(|t| (t, TimeSource::Gps))
}

fn position(exif: &exif::Exif) -> Option<LatLon> {
    let lat = degrees(exif, Tag::GPSLatitude, Tag::GPSLatitudeRef, b'S')?;
    let lon = degrees(exif, Tag::GPSLongitude, Tag::GPSLongitudeRef, b'W')?;
    mobile_schema::geo::bounds::possible(lat, lon).then_some(LatLon { lat, lon })
}

/// Degrees from EXIF's degrees, minutes, seconds and hemisphere.
fn degrees(exif: &exif::Exif, tag: Tag, reference: Tag, negative: u8) -> Option<f64> {
    let dms = match &exif.get_field(tag, In::PRIMARY)?.value {
        Value::Rational(v) if !v.is_empty() => v.iter().map(|r| r.to_f64()).collect::<Vec<_>>(),
        _ => return None,
    };
    let value = dms.first().copied().unwrap_or(0.0)
        + dms.get(1).copied().unwrap_or(0.0) / 60.0
        + dms.get(2).copied().unwrap_or(0.0) / 3600.0;
    if !value.is_finite() {
        return None;
    }
    let sign = match ascii(exif, reference).and_then(|r| r.first()) {
        Some(r) if r.eq_ignore_ascii_case(&negative) => -1.0,
        _ => 1.0,
    };
    Some(sign * value)
}
