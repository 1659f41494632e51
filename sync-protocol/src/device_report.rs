//! What a tablet tells the server about itself on each push and pull, in
//! optional request headers, for the operators' device status: how many changes
//! wait in its outbox, its clock, its app and its store's schema version. The
//! server cannot know these; it stores them as last reported and never refuses
//! a sync for them: a missing or malformed value is ignored.

/// Changes waiting in the outbox when the request was sent, counting those in it.
pub const OUTBOX_HEADER: &str = "fieldsync-outbox";
/// The device's wall clock, Unix milliseconds, when the request was sent.
pub const CLOCK_HEADER: &str = "fieldsync-clock";
/// The app and its version, e.g. `fieldsync-device/0.1.0`.
pub const APP_HEADER: &str = "fieldsync-app";
/// The schema version of the device's store.
pub const SCHEMA_HEADER: &str = "fieldsync-schema";

/// Bounds of the values accepted: anything outside is ignored.
pub const MAX_OUTBOX: u64 = 1_000_000_000;
/// 2000-01-01 and 2200-01-01: a clock outside is not worth an offset.
pub const MIN_CLOCK_MS: u64 = 946_684_800_000;
pub const MAX_CLOCK_MS: u64 = 7_258_118_400_000;
pub const MAX_APP_BYTES: usize = 64;
pub const MAX_SCHEMA: u32 = 65_535;

/// The values of the headers; each optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceReport {
    pub outbox: Option<u64>,
    pub clock_ms: Option<u64>,
    pub app: Option<String>,
    pub schema: Option<u32>,
}

impl DeviceReport {
    /// The headers carrying what is known.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::with_capacity(4);
        if let Some(n) = self.outbox {
            out.push((OUTBOX_HEADER, n.to_string()));
        }
        if let Some(ms) = self.clock_ms {
            out.push((CLOCK_HEADER, ms.to_string()));
        }
        if let Some(app) = self.app.as_deref().filter(|a| valid_app(a)) {
            out.push((APP_HEADER, app.to_string()));
        }
        if let Some(v) = self.schema {
            out.push((SCHEMA_HEADER, v.to_string()));
        }
        out
    }

    /// Reads the headers through `get` (a header's value by name); a value
    /// that is malformed or out of bounds is left out.
    pub fn parse<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Self {
        let number = |name: &str| get(name).and_then(|v| v.trim().parse::<u64>().ok());
        Self {
            outbox: number(OUTBOX_HEADER).filter(|n| *n <= MAX_OUTBOX),
            clock_ms: number(CLOCK_HEADER).filter(|ms| (MIN_CLOCK_MS..=MAX_CLOCK_MS).contains(ms)),
            app: get(APP_HEADER)
                .map(str::trim)
                .filter(|a| valid_app(a))
                .map(str::to_string),
            schema: number(SCHEMA_HEADER)
                .and_then(|v| u32::try_from(v).ok())
                .filter(|v| *v <= MAX_SCHEMA),
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

fn valid_app(app: &str) -> bool {
    !app.is_empty() && app.len() <= MAX_APP_BYTES && app.bytes().all(|b| (0x20..0x7f).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(pairs: &[(&str, &str)]) -> DeviceReport {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        DeviceReport::parse(|name| map.get(name).map(String::as_str))
    }

    #[test]
    fn reports_round_trip_through_their_headers() {
        let report = DeviceReport {
            outbox: Some(7),
            clock_ms: Some(1_763_900_000_000),
            app: Some("fieldsync-device/0.1.0".into()),
            schema: Some(2),
        };
        let headers = report.headers();
        let pairs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(parse(&pairs), report);
    }

    #[test]
    fn malformed_or_out_of_bound_values_are_left_out() {
        let report = parse(&[
            (OUTBOX_HEADER, "-3"),
            (CLOCK_HEADER, "12"),
            (APP_HEADER, &"x".repeat(65)),
            (SCHEMA_HEADER, "99999999999"),
        ]);
        assert!(report.is_empty(), "{report:?}");
        let report = parse(&[(OUTBOX_HEADER, " 12 "), (APP_HEADER, "tab\tlet")]);
        assert_eq!(report.outbox, Some(12));
        assert_eq!(report.app, None);
        assert!(parse(&[]).is_empty());
    }
}
