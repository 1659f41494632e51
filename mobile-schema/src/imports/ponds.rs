//! The tailings-pond supervision list (尾矿库环境监管清单): the provincial list
//! that grades ponds 一级/二级/三级 each year. Levels are imported, never
//! computed; each import appends to a pond's level history and never rewrites it.
//!
//! Format (`fixtures/examples/tailings_ponds_2025.csv`), one pond a row:
//!
//! | column | meaning |
//! |---|---|
//! | `pond_code` | the list's code of the pond, unique in the province; the natural key |
//! | `name` | the pond's name; required |
//! | `operator` | operating company (运营单位); may be empty |
//! | `city` | city name; empty means the county is looked up in the whole province |
//! | `county` | county name as printed (short forms and old names allowed) or six-digit code; required |
//! | `lat`, `lon` | WGS-84/CGCS2000 degrees; both empty when unknown |
//! | `minerals` | minerals processed, separated by 、 ; or , inside quotes |
//! | `heavy_metals`, `cyanide` | 是/否 (also 1/0, y/n, true/false; empty = 否) |
//! | `year` | the year of the list |
//! | `level` | 一级/二级/三级 or 1/2/3 |
//! | `effective_from` | first day the level is in force, YYYY-MM-DD |
//! | `source_document` | the list or document, e.g. 桂环函〔2025〕xx号; required |
//! | `reason` | why the pond has this level; may be empty |
//! | `ecological_problems`, `prominent_hazards`, `public_complaints` | 是/否: what the 三级 draw prefers (生态环境问题多, 环境风险隐患突出, 群众反映强烈) |

use std::io::Read;

use crate::ids::{ItemId, SiteId};
use crate::imports::{
    ImportError, ImportReport, SeenKeys, Table, parse_date, parse_flag, parse_location, parse_year, resolve_place,
};
use crate::region::{Divisions, RegionCode};
use crate::site::{LevelAssignment, PriorityFlags, Site, SiteDetails, SiteStatus, SupervisionLevel, TailingsPond};

/// The namespace of tailings-pond site ids (keyed by pond code).
pub const POND_ID_NAMESPACE: &str = "fieldsync.tailings_pond";
/// The namespace of level-assignment ids (keyed by pond, year, date and document).
pub const LEVEL_ID_NAMESPACE: &str = "fieldsync.tailings_pond.level";

const LIST: &str = "tailings-pond supervision list";
const COLUMNS: [&str; 18] = [
    "pond_code",
    "name",
    "operator",
    "city",
    "county",
    "lat",
    "lon",
    "minerals",
    "heavy_metals",
    "cyanide",
    "year",
    "level",
    "effective_from",
    "source_document",
    "reason",
    "ecological_problems",
    "prominent_hazards",
    "public_complaints",
];

/// One pond as the list gives it: the site it describes (with this list's level
/// as its only history entry, for a pond seen for the first time) and the level
/// assignment to append to a pond already known.
#[derive(Debug, Clone, PartialEq)]
pub struct PondListing {
    pub pond_code: String,
    pub site: Site,
    pub level: LevelAssignment,
}

/// What applying a listing did to a level history.
#[derive(Debug, Clone, PartialEq)]
pub enum LevelChange {
    /// Appended; `previous` is the level that was in force on `effective_from`.
    Appended {
        previous: Option<SupervisionLevel>,
        level: SupervisionLevel,
    },
    /// The same entry was already there (a re-import).
    AlreadyRecorded,
    /// An entry with the same pond, year, date and document holds another level.
    /// History is never overwritten: the recorded one stays, for a person to sort out.
    ConflictsWithRecorded {
        recorded: SupervisionLevel,
        listed: SupervisionLevel,
    },
}

/// What applying a listing changed in a known pond.
#[derive(Debug, Clone, PartialEq)]
pub struct PondChanges {
    pub level: LevelChange,
    /// Names of the site fields the list changed (`name`, `operator`, ...).
    pub fields: Vec<&'static str>,
}

/// What merging a listing into a set of sites did.
#[derive(Debug, Clone, PartialEq)]
pub enum PondMerge {
    Added(SiteId),
    Updated(SiteId, PondChanges),
}

/// The listing cannot be applied to that site.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("listing of pond {pond_code} is for site {expected}, not {found}")]
    OtherSite {
        pond_code: String,
        expected: SiteId,
        found: SiteId,
    },
    #[error("site {id} is not a tailings pond")]
    NotAPond { id: SiteId },
}

impl PondListing {
    /// Merges the listing into the known pond: appends the level (never
    /// replacing an entry), and takes the list's name, operator, region, pond
    /// facts and priority flags. A position already known is kept, since one
    /// surveyed on site beats the list's.
    pub fn apply_to(&self, existing: &mut Site) -> Result<PondChanges, ApplyError> {
        if existing.id != self.site.id {
            return Err(ApplyError::OtherSite {
                pond_code: self.pond_code.clone(),
                expected: self.site.id,
                found: existing.id,
            });
        }
        if !matches!(existing.details, SiteDetails::TailingsPond(_)) {
            return Err(ApplyError::NotAPond { id: existing.id });
        }
        let level = match existing.levels.iter().find(|l| l.id == self.level.id) {
            Some(recorded) if recorded == &self.level => LevelChange::AlreadyRecorded,
            Some(recorded) => LevelChange::ConflictsWithRecorded {
                recorded: recorded.level,
                listed: self.level.level,
            },
            None => {
                let previous = existing.level_on(self.level.effective_from).map(|l| l.level);
                existing.levels.push(self.level.clone());
                LevelChange::Appended {
                    previous,
                    level: self.level.level,
                }
            }
        };
        let mut fields = Vec::new();
        let new = &self.site;
        if existing.name != new.name {
            existing.name.clone_from(&new.name);
            fields.push("name");
        }
        if existing.operator != new.operator {
            existing.operator.clone_from(&new.operator);
            fields.push("operator");
        }
        if existing.region_code != new.region_code {
            existing.region_code = new.region_code;
            fields.push("region_code");
        }
        if existing.location.is_none() && new.location.is_some() {
            existing.location.clone_from(&new.location);
            fields.push("location");
        }
        if existing.details != new.details {
            existing.details = new.details.clone();
            fields.push("details");
        }
        if existing.priority != new.priority {
            existing.priority = new.priority;
            fields.push("priority");
        }
        Ok(PondChanges { level, fields })
    }
}

/// Merges an imported list into `sites`: new ponds are added, known ones
/// (same id) get [`PondListing::apply_to`].
pub fn merge_ponds(sites: &mut Vec<Site>, listings: &[PondListing]) -> Result<Vec<PondMerge>, ApplyError> {
    let mut outcomes = Vec::with_capacity(listings.len());
    for listing in listings {
        match sites.iter_mut().find(|s| s.id == listing.site.id) {
            Some(site) => outcomes.push(PondMerge::Updated(site.id, listing.apply_to(site)?)),
            None => {
                sites.push(listing.site.clone());
                outcomes.push(PondMerge::Added(listing.site.id));
            }
        }
    }
    Ok(outcomes)
}

/// Imports a tailings-pond supervision list of `province`.
pub fn import_ponds<R: Read>(reader: R, province: RegionCode) -> Result<ImportReport<PondListing>, ImportError> {
    let divisions = Divisions::gbt2260()?;
    let table = Table::open(reader, LIST)?;
    table.require(&COLUMNS)?;
    let mut seen = SeenKeys::default();
    table.rows(|row| {
        let pond_code = row.required("pond_code")?;
        let name = row.required("name")?;
        let region_code = resolve_place(divisions, province, row.get("city"), row.required("county")?)?;
        let location = parse_location(row.get("lat"), row.get("lon"))?;
        let year = parse_year("year", row.required("year")?)?;
        let level = parse_level(row.get("level"))?;
        let effective_from = parse_date("effective_from", row.required("effective_from")?)?;
        let source_document = row.required("source_document")?;
        let details = TailingsPond {
            minerals: row
                .get("minerals")
                .split(['、', ';', '；', ',', '，'])
                .map(str::trim)
                .filter(|m| !m.is_empty())
                .map(str::to_string)
                .collect(),
            heavy_metals: parse_flag("heavy_metals", row.get("heavy_metals"))?,
            cyanide: parse_flag("cyanide", row.get("cyanide"))?,
        };
        let priority = PriorityFlags {
            ecological_problems: parse_flag("ecological_problems", row.get("ecological_problems"))?,
            prominent_hazards: parse_flag("prominent_hazards", row.get("prominent_hazards"))?,
            public_complaints: parse_flag("public_complaints", row.get("public_complaints"))?,
        };
        seen.check(pond_code, row.line())?;
        let level = LevelAssignment {
            id: ItemId::from_name(
                LEVEL_ID_NAMESPACE,
                &format!("{pond_code}|{year}|{effective_from}|{source_document}"),
            ),
            year,
            level,
            effective_from,
            source_document: source_document.to_string(),
            reason: row.get("reason").to_string(),
        };
        let site = Site {
            id: SiteId::from_name(POND_ID_NAMESPACE, pond_code),
            schema_version: Site::SCHEMA_VERSION,
            name: name.to_string(),
            operator: row.get("operator").to_string(),
            region_code,
            location,
            status: SiteStatus::Active,
            details: SiteDetails::TailingsPond(details),
            priority,
            levels: vec![level.clone()],
            obligations: Vec::new(),
            progress: Vec::new(),
        };
        Ok(PondListing {
            pond_code: pond_code.to_string(),
            site,
            level,
        })
    })
}

fn parse_level(v: &str) -> Result<SupervisionLevel, String> {
    match v {
        "一级" | "1" => Ok(SupervisionLevel::One),
        "二级" | "2" => Ok(SupervisionLevel::Two),
        "三级" | "3" => Ok(SupervisionLevel::Three),
        other => Err(format!("level {other:?} is not 一级/二级/三级 or 1/2/3")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PONDS_2025: &str = include_str!("../../../fixtures/examples/tailings_ponds_2025.csv");

    const HEADER: &str = "pond_code,name,operator,city,county,lat,lon,minerals,heavy_metals,cyanide,year,level,effective_from,source_document,reason,ecological_problems,prominent_hazards,public_complaints";

    fn gx() -> RegionCode {
        "450000".parse().unwrap()
    }

    fn import(text: &str) -> ImportReport<PondListing> {
        import_ponds(text.as_bytes(), gx()).unwrap()
    }

    fn listing<'a>(report: &'a ImportReport<PondListing>, code: &str) -> &'a PondListing {
        report.taken.iter().find(|l| l.pond_code == code).unwrap()
    }

    #[test]
    fn shipped_2025_list_is_taken_whole() {
        let report = import(PONDS_2025);
        assert_eq!(report.rejected, vec![]);
        assert_eq!(report.taken.len(), 20);
        let count = |lv| report.taken.iter().filter(|l| l.level.level == lv).count();
        assert_eq!(count(SupervisionLevel::One), 4);
        assert_eq!(count(SupervisionLevel::Two), 8);
        assert_eq!(count(SupervisionLevel::Three), 8);
        assert!(report.taken.iter().all(|l| l.site.levels == vec![l.level.clone()]));
    }

    #[test]
    fn pond_rows_resolve_regions_and_read_flags() {
        let report = import(PONDS_2025);
        let code = |c| listing(&report, c).site.region_code.to_string();
        assert_eq!(code("WK451221001"), "451221"); // 南丹县
        assert_eq!(code("WK451221004"), "451221"); // given as a code
        assert_eq!(code("WK451226001"), "451226"); // 环江县, short form
        assert_eq!(code("WK451203001"), "451203"); // 宜州市, old name
        assert_eq!(code("WK450381001"), "450381"); // 荔浦县, old name
        assert_eq!(code("WK450225001"), "450225"); // 融水县
        let beishan = listing(&report, "WK451226001");
        assert!(beishan.site.priority.public_complaints && beishan.site.priority.any());
        let SiteDetails::TailingsPond(pond) = &beishan.site.details else {
            panic!("not a pond");
        };
        assert_eq!(pond.minerals, vec!["铅锌", "硫铁"]);
        assert!(pond.heavy_metals && !pond.cyanide);
        assert_eq!(listing(&report, "WK451221002").level.level, SupervisionLevel::One);
        assert!(listing(&report, "WK450225001").site.location.is_some());
    }

    #[test]
    fn bad_rows_are_rejected_with_line_and_reason() {
        let text = format!(
            "{HEADER}\n\
             WK1,好尾矿库,某公司,河池市,南丹县,24.85,107.58,锡,是,否,2025,一级,2025-03-01,清单,,否,否,否\n\
             WK2,级别错,某公司,河池市,南丹县,24.85,107.58,锡,是,否,2025,四级,2025-03-01,清单,,否,否,否\n\
             WK3,县不明,某公司,河池市,北京县,24.85,107.58,锡,是,否,2025,二级,2025-03-01,清单,,否,否,否\n\
             WK4,坐标反,某公司,河池市,南丹县,107.58,24.85,锡,是,否,2025,二级,2025-03-01,清单,,否,否,否\n\
             WK5,,某公司,河池市,南丹县,24.85,107.58,锡,是,否,2025,二级,2025-03-01,清单,,否,否,否\n\
             WK6,坐标非数,某公司,河池市,南丹县,北纬24度,107.58,锡,是,否,2025,二级,2025-03-01,清单,,否,否,否\n\
             WK1,重复,某公司,河池市,南丹县,24.85,107.58,锡,是,否,2025,二级,2025-03-01,清单,,否,否,否\n\
             WK7,日期错,某公司,河池市,南丹县,24.85,107.58,锡,是,否,2025,二级,2025-13-01,清单,,否,否,否\n\
             WK8,少列,某公司\n"
        );
        let report = import(&text);
        assert_eq!(report.taken.len(), 1);
        let rejected: Vec<(usize, &str)> = report.rejected.iter().map(|r| (r.line, r.reason.as_str())).collect();
        let expected = [
            (3, "level \"四级\""),
            (4, "北京县"),
            (5, "impossible"),
            (6, "name is empty"),
            (7, "lat \"北纬24度\" is not a number"),
            (8, "first on line 2"),
            (9, "effective_from"),
            (10, "3 fields, the header has 18"),
        ];
        assert_eq!(rejected.len(), expected.len(), "{rejected:?}");
        for ((line, reason), (want_line, want)) in rejected.iter().zip(expected) {
            assert_eq!(*line, want_line, "{reason}");
            assert!(reason.contains(want), "line {line}: {reason}");
        }
    }

    #[test]
    fn reimporting_keeps_ids_and_adds_no_history() {
        let first = import(PONDS_2025);
        let mut sites = Vec::new();
        let added = merge_ponds(&mut sites, &first.taken).unwrap();
        assert!(added.iter().all(|m| matches!(m, PondMerge::Added(_))));
        let again = import(PONDS_2025);
        let outcomes = merge_ponds(&mut sites, &again.taken).unwrap();
        assert_eq!(sites.len(), 20);
        for outcome in outcomes {
            let PondMerge::Updated(_, changes) = outcome else {
                panic!("re-import added a pond");
            };
            assert_eq!(changes.level, LevelChange::AlreadyRecorded);
            assert!(changes.fields.is_empty(), "{:?}", changes.fields);
        }
        assert!(sites.iter().all(|s| s.levels.len() == 1));
    }

    #[test]
    fn next_years_list_appends_a_level_and_keeps_the_old_one() {
        let report = import(PONDS_2025);
        let mut sites = Vec::new();
        merge_ponds(&mut sites, &report.taken).unwrap();
        let text = format!(
            "{HEADER}\n\
             WK451221003,大厂镇拉么尾矿库,南丹县拉么锌矿有限公司,河池市,南丹县,,,铅锌,是,否,2026,一级,2026-03-01,2026年清单,渗漏,否,是,否\n"
        );
        let next = import(&text);
        let outcomes = merge_ponds(&mut sites, &next.taken).unwrap();
        let [PondMerge::Updated(id, changes)] = outcomes.as_slice() else {
            panic!("{outcomes:?}");
        };
        assert_eq!(
            changes.level,
            LevelChange::Appended {
                previous: Some(SupervisionLevel::Two),
                level: SupervisionLevel::One
            }
        );
        assert_eq!(changes.fields, vec!["name", "priority"]);
        let site = sites.iter().find(|s| s.id == *id).unwrap();
        assert_eq!(site.levels.len(), 2);
        let on = |d: &str| site.level_on(d.parse().unwrap()).map(|l| l.level);
        assert_eq!(on("2025-12-31"), Some(SupervisionLevel::Two));
        assert_eq!(on("2026-03-01"), Some(SupervisionLevel::One));
        // The list had no position; the known one stays.
        assert!(site.location.is_some());
    }

    #[test]
    fn a_corrected_row_for_a_recorded_entry_does_not_overwrite_it() {
        let report = import(PONDS_2025);
        let mut site = listing(&report, "WK451221003").site.clone();
        let corrected = PONDS_2025
            .lines()
            .find(|l| l.starts_with("WK451221003"))
            .unwrap()
            .replace(",二级,", ",一级,");
        let relisted = import(&format!("{HEADER}\n{corrected}\n"));
        let changes = relisted.taken[0].apply_to(&mut site).unwrap();
        assert_eq!(
            changes.level,
            LevelChange::ConflictsWithRecorded {
                recorded: SupervisionLevel::Two,
                listed: SupervisionLevel::One
            }
        );
        assert_eq!(site.levels.len(), 1);
        assert_eq!(site.levels[0].level, SupervisionLevel::Two);
    }

    #[test]
    fn a_listing_is_not_applied_to_another_site() {
        let report = import(PONDS_2025);
        let mut other = report.taken[1].site.clone();
        let err = report.taken[0].apply_to(&mut other).unwrap_err();
        assert!(matches!(err, ApplyError::OtherSite { .. }));
    }
}
