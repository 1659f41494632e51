//! Imports of official lists (CSV) into sites.
//!
//! Each list has its own module and documented CSV format. A row that cannot be
//! taken is reported with its line number and the reason, and the rest of the
//! file is still imported; only a file that cannot be read as the list at all
//! (no header, missing columns, I/O failure) is an [`ImportError`]. Site ids
//! derive from the row's natural key, so re-importing a list yields the same ids.

pub mod key_units;
pub mod ponds;
pub mod projects;

use std::collections::HashMap;
use std::io::Read;

use crate::geo::{Crs, Location};
use crate::region::{DivisionLevel, DivisionTableError, Divisions, RegionCode};

/// What an import took and which rows it could not take.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportReport<T> {
    pub taken: Vec<T>,
    pub rejected: Vec<RejectedRow>,
}

/// A row left out of an import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedRow {
    /// Line in the file, 1-based; the header is line 1.
    pub line: usize,
    pub reason: String,
}

/// The file could not be read as the list at all.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{list}: cannot read the header: {source}")]
    Header {
        list: &'static str,
        #[source]
        source: csv::Error,
    },
    #[error("{list}: missing columns {columns:?}")]
    MissingColumns { list: &'static str, columns: Vec<String> },
    #[error("{list}: read failed at line {line}: {source}")]
    Read {
        list: &'static str,
        line: usize,
        #[source]
        source: csv::Error,
    },
    #[error(transparent)]
    Divisions(#[from] DivisionTableError),
}

/// One data row, with cells looked up by column name.
pub(crate) struct Row<'a> {
    record: &'a csv::StringRecord,
    columns: &'a HashMap<String, usize>,
}

impl Row<'_> {
    /// The row's first line in the file.
    pub(crate) fn line(&self) -> usize {
        self.record.position().map_or(0, |p| p.line() as usize)
    }

    /// The trimmed cell, or "" when the column is absent or the row is short.
    pub(crate) fn get(&self, column: &str) -> &str {
        self.columns
            .get(column)
            .and_then(|&i| self.record.get(i))
            .map_or("", str::trim)
    }

    pub(crate) fn required(&self, column: &str) -> Result<&str, String> {
        match self.get(column) {
            "" => Err(format!("{column} is empty")),
            v => Ok(v),
        }
    }
}

/// A list being read: its header, then its rows.
pub(crate) struct Table<R> {
    list: &'static str,
    csv: csv::Reader<R>,
    width: usize,
    columns: HashMap<String, usize>,
}

impl<R: Read> Table<R> {
    pub(crate) fn open(reader: R, list: &'static str) -> Result<Self, ImportError> {
        let mut csv = csv::ReaderBuilder::new().flexible(true).from_reader(reader);
        let header = csv.headers().map_err(|source| ImportError::Header { list, source })?;
        let width = header.len();
        let columns = header
            .iter()
            .enumerate()
            .map(|(i, name)| (name.trim().to_string(), i))
            .collect();
        Ok(Self {
            list,
            csv,
            width,
            columns,
        })
    }

    pub(crate) fn column_names(&self) -> impl Iterator<Item = &str> {
        self.columns.keys().map(String::as_str)
    }

    pub(crate) fn require(&self, required: &[&str]) -> Result<(), ImportError> {
        let missing: Vec<String> = required
            .iter()
            .filter(|c| !self.columns.contains_key(**c))
            .map(|c| c.to_string())
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(ImportError::MissingColumns {
                list: self.list,
                columns: missing,
            })
        }
    }

    /// Hands each row to `take`; its `Err(reason)` rejects the row.
    pub(crate) fn rows<T>(
        mut self,
        mut take: impl FnMut(&Row<'_>) -> Result<T, String>,
    ) -> Result<ImportReport<T>, ImportError> {
        let mut report = ImportReport {
            taken: Vec::new(),
            rejected: Vec::new(),
        };
        let mut record = csv::StringRecord::new();
        loop {
            let line = self.csv.position().line() as usize;
            match self.csv.read_record(&mut record) {
                Ok(false) => break,
                Ok(true) => {
                    let line = record.position().map_or(line, |p| p.line() as usize);
                    if record.len() != self.width {
                        report.rejected.push(RejectedRow {
                            line,
                            reason: format!("{} fields, the header has {}", record.len(), self.width),
                        });
                        continue;
                    }
                    let row = Row {
                        record: &record,
                        columns: &self.columns,
                    };
                    match take(&row) {
                        Ok(t) => report.taken.push(t),
                        Err(reason) => report.rejected.push(RejectedRow { line, reason }),
                    }
                }
                // Bad UTF-8 spoils one row, not the file.
                Err(e) if matches!(e.kind(), csv::ErrorKind::Utf8 { .. }) => {
                    let line = e.position().map_or(line, |p| p.line() as usize);
                    report.rejected.push(RejectedRow {
                        line,
                        reason: "not valid UTF-8".to_string(),
                    });
                }
                Err(source) => {
                    return Err(ImportError::Read {
                        list: self.list,
                        line,
                        source,
                    });
                }
            }
        }
        Ok(report)
    }
}

/// Rejects a second row with the same natural key, naming the first one's line.
#[derive(Debug, Default)]
pub(crate) struct SeenKeys(HashMap<String, usize>);

impl SeenKeys {
    pub(crate) fn check(&mut self, key: &str, line: usize) -> Result<(), String> {
        match self.0.get(key) {
            Some(first) => Err(format!("{key:?} is listed twice (first on line {first})")),
            None => {
                self.0.insert(key.to_string(), line);
                Ok(())
            }
        }
    }
}

/// Markers the lists print instead of a city or county: the province's or the
/// city's own budget line (省本级, 市本级).
const OWN_LEVEL: [&str; 3] = ["省本级", "市本级", "本级"];

/// The region of a row from its city and county cells, within `province`. An
/// empty or 本级 cell stays at the level above; a county cell may also be a
/// six-digit code.
pub(crate) fn resolve_place(
    divisions: &Divisions,
    province: RegionCode,
    city: &str,
    county: &str,
) -> Result<RegionCode, String> {
    let scope = if city.is_empty() || OWN_LEVEL.contains(&city) {
        province
    } else {
        let code = divisions.resolve(city, province).map_err(|e| format!("city: {e}"))?;
        if code.level() != DivisionLevel::City {
            return Err(format!("city: {city:?} is not a city ({code})"));
        }
        code
    };
    if county.is_empty() || OWN_LEVEL.contains(&county) {
        return Ok(scope);
    }
    if county.len() == 6 && county.bytes().all(|b| b.is_ascii_digit()) {
        let code: RegionCode = county.parse().map_err(|e| format!("county: {e}"))?;
        return match divisions.get(code) {
            Some(_) if scope.covers(code) => Ok(code),
            Some(_) => Err(format!("county: {code} is not within {scope}")),
            None => Err(format!("county: {code} is not a GB/T 2260 code")),
        };
    }
    divisions.resolve(county, scope).map_err(|e| format!("county: {e}"))
}

/// A list's position columns: both empty means none; anything else must be a
/// possible WGS-84/CGCS2000 position. Positions outside Guangxi are taken (the
/// validation flags them); only impossible ones are refused.
pub(crate) fn parse_location(lat: &str, lon: &str) -> Result<Option<Location>, String> {
    if lat.is_empty() && lon.is_empty() {
        return Ok(None);
    }
    let number = |name: &str, v: &str| {
        v.parse::<f64>()
            .ok()
            .filter(|x| x.is_finite())
            .ok_or_else(|| format!("{name} {v:?} is not a number"))
    };
    let (lat, lon) = (number("lat", lat)?, number("lon", lon)?);
    if lat.abs() > 90.0 || lon.abs() > 180.0 {
        return Err(format!("position ({lat}, {lon}) is impossible (lat/lon swapped?)"));
    }
    Ok(Some(Location {
        lat,
        lon,
        crs: Crs::Wgs84,
        radius_m: None,
        polygon: None,
    }))
}

/// 是/否 and the usual spellings; empty means no.
pub(crate) fn parse_flag(column: &str, v: &str) -> Result<bool, String> {
    match v {
        "" | "否" | "0" | "n" | "N" | "no" | "false" => Ok(false),
        "是" | "1" | "y" | "Y" | "yes" | "true" => Ok(true),
        other => Err(format!("{column} {other:?} is not 是/否")),
    }
}

pub(crate) fn parse_year(column: &str, v: &str) -> Result<i32, String> {
    v.parse::<i32>()
        .ok()
        .filter(|y| (1949..=2100).contains(y))
        .ok_or_else(|| format!("{column} {v:?} is not a year"))
}

pub(crate) fn parse_date(column: &str, v: &str) -> Result<chrono::NaiveDate, String> {
    v.parse()
        .map_err(|_| format!("{column} {v:?} is not a date (YYYY-MM-DD)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_byte_order_mark_does_not_hide_the_first_column() {
        let text = "\u{feff}a,b\n1,2\n";
        let table = Table::open(text.as_bytes(), "test").unwrap();
        table.require(&["a", "b"]).unwrap();
        let report = table.rows(|row| Ok(row.get("a").to_string())).unwrap();
        assert_eq!(report.taken, vec!["1".to_string()]);
    }

    #[test]
    fn rows_in_another_encoding_are_rejected_not_fatal() {
        // "南丹" in GBK, as Excel on a Chinese desktop saves it.
        let mut bytes = b"a,b\n".to_vec();
        bytes.extend_from_slice(&[0xC4, 0xCF, 0xB5, 0xA4, b',', b'2', b'\n', b'3', b',', b'4', b'\n']);
        let report = Table::open(bytes.as_slice(), "test")
            .unwrap()
            .rows(|row| Ok(row.get("b").to_string()))
            .unwrap();
        assert_eq!(report.taken, vec!["4".to_string()]);
        assert_eq!(report.rejected.len(), 1);
        assert_eq!(report.rejected[0].line, 2);
        assert!(report.rejected[0].reason.contains("UTF-8"));
    }

    #[test]
    fn an_empty_file_fails_as_a_whole() {
        let table = Table::open(&b""[..], "test").unwrap();
        assert!(matches!(table.require(&["a"]), Err(ImportError::MissingColumns { .. })));
    }

    #[test]
    fn place_cells_accept_codes_names_and_own_level_markers() {
        let d = Divisions::gbt2260().unwrap();
        let gx: RegionCode = "450000".parse().unwrap();
        let place = |city, county| resolve_place(d, gx, city, county).map(|c| c.to_string());
        assert_eq!(place("省本级", ""), Ok("450000".to_string()));
        assert_eq!(place("河池市", "市本级"), Ok("451200".to_string()));
        assert_eq!(place("", "南丹县"), Ok("451221".to_string()));
        assert_eq!(place("河池市", "451221"), Ok("451221".to_string()));
        assert!(place("柳州市", "451221").unwrap_err().contains("not within"));
        assert!(place("宜州市", "").unwrap_err().contains("not a city"));
    }
}
