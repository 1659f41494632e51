//! Filtered, paginated listings of inspections and hazards, the review queue and
//! the overdue hazards: one parser for their query strings, one snapshot of the
//! store to filter, one way to page.
//!
//! A listing reads the whole store once (thousands of records at a bureau's
//! size; callers run it on a blocking thread, off the async workers), keeps the
//! records the caller's scope shows, applies the filters and pages on a stable
//! sort key. The cursor is opaque to clients: it carries the last key served,
//! so a page after records were added or changed neither repeats nor skips the
//! records that stayed in place.

use std::collections::HashMap;

use base64::Engine as _;
use chrono::NaiveDate;
use mobile_schema::ids::{RecordId, SiteId};
use mobile_schema::record::RecordKind;
use mobile_schema::region::RegionCode;
use serde::{Deserialize, Serialize};
use sync_protocol::RecordState;
use sync_protocol::scope::{self, Scope};

use crate::storage::{self, StorageError, SyncStorage};

pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 500;
/// Longest value of any one parameter: ids, codes and dates are far shorter.
const MAX_PARAM_CHARS: usize = 128;

/// A query parameter the listing cannot use: 400 naming it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct QueryError {
    pub field: String,
    pub message: String,
}

fn bad(field: &str, message: impl Into<String>) -> QueryError {
    QueryError {
        field: field.to_string(),
        message: message.into(),
    }
}

/// Where a listing resumes: after this sort key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SortKey {
    /// Milliseconds of the date or instant the listing sorts on (0 when unknown).
    pub ms: i64,
    pub id: RecordId,
}

impl SortKey {
    pub fn encode(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{}:{}", self.ms, self.id.0))
    }

    pub fn decode(text: &str) -> Option<Self> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let (ms, id) = text.split_once(':')?;
        Some(Self {
            ms: ms.parse().ok()?,
            id: RecordId(uuid::Uuid::parse_str(id).ok()?),
        })
    }
}

/// The filters and page of a listing, as parsed from its query string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    pub site: Option<SiteId>,
    /// A county, a city (its counties) or the province.
    pub region: Option<RegionCode>,
    /// A workflow state's wire name.
    pub status: Option<String>,
    /// Inclusive days in Asia/Shanghai.
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    /// A flag code the record must carry.
    pub flag: Option<String>,
    pub limit: usize,
    pub cursor: Option<SortKey>,
}

impl ListQuery {
    /// Parses `site`, `region`, `status` (one of `statuses`), `from`, `to`,
    /// `flag`, `limit` and `cursor`; any other parameter, or one given twice,
    /// is refused by name.
    pub fn parse(query_string: &str, statuses: &[&str]) -> Result<Self, QueryError> {
        let pairs: Vec<(String, String)> = serde_urlencoded_pairs(query_string)?;
        let mut q = ListQuery {
            limit: DEFAULT_LIMIT,
            ..ListQuery::default()
        };
        let mut seen = std::collections::HashSet::new();
        for (key, value) in pairs {
            if !seen.insert(key.clone()) {
                return Err(bad(&key, format!("`{key}` is given twice")));
            }
            if value.chars().count() > MAX_PARAM_CHARS {
                return Err(bad(
                    &key,
                    format!("`{key}` is longer than {MAX_PARAM_CHARS} characters"),
                ));
            }
            let day = |v: &str| {
                v.parse::<NaiveDate>()
                    .map_err(|_| bad(&key, format!("`{key}` is a day as YYYY-MM-DD, not {v:?}")))
            };
            match key.as_str() {
                "site" => {
                    let id = uuid::Uuid::parse_str(&value).map_err(|_| bad("site", "`site` is a site id (a UUID)"))?;
                    q.site = Some(SiteId(id));
                }
                "region" => {
                    let code = value
                        .parse::<RegionCode>()
                        .map_err(|e| bad("region", format!("`region`: {e}")))?;
                    // A code of the right shape that names no division would
                    // silently match nothing.
                    let known = mobile_schema::region::Divisions::gbt2260()
                        .map(|t| t.get(code).is_some())
                        .unwrap_or(true);
                    if !known {
                        return Err(bad("region", format!("`region`: {code} is not a GB/T 2260 division")));
                    }
                    q.region = Some(code);
                }
                "status" => {
                    if !statuses.contains(&value.as_str()) {
                        return Err(bad(
                            "status",
                            format!("`status` is one of {}, not {value:?}", statuses.join(", ")),
                        ));
                    }
                    q.status = Some(value);
                }
                "from" => q.from = Some(day(&value)?),
                "to" => q.to = Some(day(&value)?),
                "flag" => {
                    if value.is_empty()
                        || !value
                            .bytes()
                            .all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit())
                    {
                        return Err(bad("flag", "`flag` is a flag code such as `outside_site`"));
                    }
                    q.flag = Some(value);
                }
                "limit" => {
                    q.limit = value
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=MAX_LIMIT).contains(n))
                        .ok_or_else(|| bad("limit", format!("`limit` is a whole number from 1 to {MAX_LIMIT}")))?;
                }
                "cursor" => {
                    q.cursor = Some(SortKey::decode(&value).ok_or_else(|| {
                        bad(
                            "cursor",
                            "`cursor` is not one this server gave: pass `next_cursor` as it came",
                        )
                    })?);
                }
                other => return Err(bad(other, format!("unknown parameter `{other}`"))),
            }
        }
        if let (Some(from), Some(to)) = (q.from, q.to)
            && from > to
        {
            return Err(bad("from", "`from` is after `to`"));
        }
        Ok(q)
    }

    /// Whether a listed row passes the filters (the page is applied after).
    pub fn matches(&self, row: &Row) -> bool {
        self.site.is_none_or(|s| row.site == Some(s))
            && self.region.is_none_or(|r| row.region.is_some_and(|own| r.covers(own)))
            && self.status.as_ref().is_none_or(|s| row.status.as_deref() == Some(s))
            && self.from.is_none_or(|d| row.day.is_some_and(|own| own >= d))
            && self.to.is_none_or(|d| row.day.is_some_and(|own| own <= d))
            && self.flag.as_ref().is_none_or(|f| row.flags.iter().any(|c| c == f))
    }
}

/// `a=1&b=2` into pairs, percent-decoded.
fn serde_urlencoded_pairs(query_string: &str) -> Result<Vec<(String, String)>, QueryError> {
    actix_web::web::Query::<Vec<(String, String)>>::from_query(query_string)
        .map(actix_web::web::Query::into_inner)
        .map_err(|e| bad("query", format!("the query string does not decode: {e}")))
}

/// What the filters look at in one record.
#[derive(Debug, Clone)]
pub struct Row {
    pub key: SortKey,
    pub site: Option<SiteId>,
    pub region: Option<RegionCode>,
    pub status: Option<String>,
    /// The day the date filters compare.
    pub day: Option<NaiveDate>,
    /// The record's flag codes and its evidence checks' codes.
    pub flags: Vec<String>,
}

/// One page of a listing.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListPage<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Sort the matching rows, keep those after the cursor, cut at the limit.
pub fn paginate<T>(q: &ListQuery, mut rows: Vec<(Row, T)>) -> ListPage<T> {
    rows.retain(|(row, _)| q.matches(row) && q.cursor.is_none_or(|c| row.key > c));
    rows.sort_by_key(|a| a.0.key);
    let more = rows.len() > q.limit;
    rows.truncate(q.limit);
    let next_cursor = if more {
        rows.last().map(|(row, _)| row.key.encode())
    } else {
        None
    };
    ListPage {
        items: rows.into_iter().map(|(_, t)| t).collect(),
        next_cursor,
    }
}

/// Every record of the store, read in one scan, for listings to filter.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub records: HashMap<RecordId, RecordState>,
}

impl Snapshot {
    pub fn load(storage: &dyn SyncStorage) -> Result<Self, StorageError> {
        let mut records = HashMap::new();
        storage::each_record(storage, |state| {
            records.insert(state.id, state);
            Ok(())
        })?;
        Ok(Self { records })
    }

    pub fn of_kind(&self, kind: RecordKind) -> impl Iterator<Item = &RecordState> {
        self.records.values().filter(move |r| r.kind == kind)
    }

    /// The region a record belongs to, through its site.
    pub fn region_of(&self, state: &RecordState) -> Option<RegionCode> {
        let mut lookup = |id: RecordId| Ok::<_, std::convert::Infallible>(self.records.get(&id).cloned());
        scope::region_of(scope::link_of_state(state), &mut lookup).unwrap_or(None)
    }

    /// Whether `scope` sees the record, as a pull would show it.
    pub fn visible(&self, scope: &Scope, state: &RecordState, today: NaiveDate) -> bool {
        let region = self.region_of(state);
        let mut lookup = |id: RecordId| Ok::<_, std::convert::Infallible>(self.records.get(&id).cloned());
        scope::visible(scope, state, region, today, &mut lookup).unwrap_or(false)
    }
}

/// The codes of a record's flags and evidence checks.
pub fn flag_codes(state: &RecordState) -> Vec<String> {
    state
        .flags
        .iter()
        .chain(&state.evidence)
        .map(|f| f.code.clone())
        .collect()
}

/// Midnight of a day in Asia/Shanghai, in ms since the epoch: a sort key.
pub fn day_ms(day: NaiveDate) -> i64 {
    day.and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc().timestamp_millis() - 8 * 3_600_000)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATES: &[&str] = &["draft", "submitted"];

    #[test]
    fn parameters_parse_and_bad_ones_name_their_field() {
        let q = ListQuery::parse(
            "region=450300&status=submitted&from=2026-01-01&to=2026-02-01&limit=5",
            STATES,
        )
        .unwrap();
        assert_eq!(q.region, Some(RegionCode::new(450_300).unwrap()));
        assert_eq!(q.limit, 5);
        assert_eq!(ListQuery::parse("", STATES).unwrap().limit, DEFAULT_LIMIT);
        for (text, field) in [
            ("limit=0", "limit"),
            ("limit=501", "limit"),
            ("limit=x", "limit"),
            ("region=999999", "region"),
            ("status=closed", "status"),
            ("from=2026-13-01", "from"),
            ("from=2026-02-02&to=2026-02-01", "from"),
            ("site=abc", "site"),
            ("cursor=!!", "cursor"),
            ("flag=Bad-Code", "flag"),
            ("colour=red", "colour"),
            ("limit=1&limit=2", "limit"),
        ] {
            assert_eq!(ListQuery::parse(text, STATES).unwrap_err().field, field, "{text}");
        }
    }

    #[test]
    fn cursors_round_trip_and_pages_cover_everything_once() {
        let rows: Vec<(Row, usize)> = (0..7)
            .map(|i| {
                let row = Row {
                    key: SortKey {
                        ms: (i % 3) as i64,
                        id: RecordId(uuid::Uuid::now_v7()),
                    },
                    site: None,
                    region: None,
                    status: None,
                    day: None,
                    flags: vec![],
                };
                (row, i)
            })
            .collect();
        let key = rows[0].0.key;
        assert_eq!(SortKey::decode(&key.encode()), Some(key));
        let mut q = ListQuery {
            limit: 3,
            ..ListQuery::default()
        };
        let mut seen = Vec::new();
        loop {
            let page = paginate(&q, rows.clone());
            assert!(page.items.len() <= 3);
            seen.extend(page.items);
            match page.next_cursor {
                Some(c) => q.cursor = SortKey::decode(&c),
                None => break,
            }
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..7).collect::<Vec<_>>());
    }
}
