//! The soil-pollution key supervision unit list (土壤污染重点监管单位名录),
//! published yearly, and the legal obligations a listing starts.
//!
//! Format (`fixtures/examples/key_units_2025.csv`), one unit a row:
//!
//! | column | meaning |
//! |---|---|
//! | `credit_code` | 统一社会信用代码, 18 characters with a valid check digit; the natural key |
//! | `name` | the unit (enterprise); required |
//! | `operator` | the responsible company when not the unit itself; empty = `name` |
//! | `industry` | industry as printed; required |
//! | `city`, `county` | county as printed (short forms, old names) or a six-digit code |
//! | `list_year` | year of this list |
//! | `first_listed_year` | year first listed; empty = `list_year` (newly listed) |
//! | `listed_on` | publication date of this list, YYYY-MM-DD, within `list_year` |
//! | `lat`, `lon` | WGS-84/CGCS2000 degrees; both empty when unknown |

use std::io::Read;

use chrono::{Months, NaiveDate};

use crate::ids::{ItemId, SiteId};
use crate::imports::{
    ImportError, ImportReport, SeenKeys, Table, parse_date, parse_location, parse_year, resolve_place,
};
use crate::region::{Divisions, RegionCode};
use crate::site::{KeySupervisionUnit, Obligation, ObligationKind, PriorityFlags, Site, SiteDetails, SiteStatus};

/// The namespace of key-unit site ids (keyed by credit code).
pub const KEY_UNIT_ID_NAMESPACE: &str = "fieldsync.key_unit";
/// The namespace of obligation ids (keyed by credit code, kind and period).
pub const OBLIGATION_ID_NAMESPACE: &str = "fieldsync.key_unit.obligation";

/// Deep soil is monitored every 3 years (自行监测, DOMAIN.md).
const DEEP_SOIL_CYCLE_YEARS: i32 = 3;

const LIST: &str = "key supervision unit list";
const COLUMNS: [&str; 11] = [
    "credit_code",
    "name",
    "operator",
    "industry",
    "city",
    "county",
    "list_year",
    "first_listed_year",
    "listed_on",
    "lat",
    "lon",
];

/// Imports a key supervision unit list of `province` into sites with the
/// obligations of the list year (see [`obligations_for`]).
pub fn import_key_units<R: Read>(reader: R, province: RegionCode) -> Result<ImportReport<Site>, ImportError> {
    let divisions = Divisions::gbt2260()?;
    let table = Table::open(reader, LIST)?;
    table.require(&COLUMNS)?;
    let mut seen = SeenKeys::default();
    table.rows(|row| {
        let credit_code = row.required("credit_code")?;
        check_credit_code(credit_code)?;
        let name = row.required("name")?;
        let industry = row.required("industry")?;
        let region_code = resolve_place(divisions, province, row.get("city"), row.get("county"))?;
        let list_year = parse_year("list_year", row.required("list_year")?)?;
        let first_listed_year = match row.get("first_listed_year") {
            "" => list_year,
            v => parse_year("first_listed_year", v)?,
        };
        if first_listed_year > list_year {
            return Err(format!(
                "first_listed_year {first_listed_year} is after list_year {list_year}"
            ));
        }
        let listed_on = parse_date("listed_on", row.required("listed_on")?)?;
        if chrono::Datelike::year(&listed_on) != list_year {
            return Err(format!("listed_on {listed_on} is not in list_year {list_year}"));
        }
        let location = parse_location(row.get("lat"), row.get("lon"))?;
        seen.check(credit_code, row.line())?;
        let operator = match row.get("operator") {
            "" => name,
            op => op,
        };
        let unit = KeySupervisionUnit {
            industry: industry.to_string(),
            list_year: first_listed_year,
            credit_code: Some(credit_code.to_string()),
        };
        Ok(Site {
            id: SiteId::from_name(KEY_UNIT_ID_NAMESPACE, credit_code),
            schema_version: Site::SCHEMA_VERSION,
            name: name.to_string(),
            operator: operator.to_string(),
            region_code,
            location,
            status: SiteStatus::Active,
            obligations: obligations_for(credit_code, first_listed_year, list_year, listed_on),
            details: SiteDetails::KeyUnit(unit),
            priority: PriorityFlags::default(),
            levels: Vec::new(),
            progress: Vec::new(),
        })
    })
}

/// The obligations a listing in `list_year` starts (DOMAIN.md):
/// - the year's toxic-substance emission report (有毒有害物质排放报告);
/// - surface-soil and groundwater self-monitoring for the year (groundwater
///   yearly here; where a plan demands half-yearly, the bureau adds the second);
/// - deep-soil self-monitoring for the 3-year cycle counted from the first
///   listing, due at the cycle's end;
/// - for a newly listed unit only, the full hidden-danger investigation
///   (土壤污染隐患排查), due 12 months after the listing. Units listed earlier
///   owed theirs already; the list does not say whether it was done.
///
/// Yearly obligations are due at the year's end: the published rules fix no
/// earlier date, so that is the default a bureau may tighten.
/// Ids derive from credit code, kind and period, so re-imports repeat them.
pub fn obligations_for(
    credit_code: &str,
    first_listed_year: i32,
    list_year: i32,
    listed_on: NaiveDate,
) -> Vec<Obligation> {
    let year_end = |y: i32| NaiveDate::from_ymd_opt(y, 12, 31);
    let obligation = |kind: ObligationKind, period: String, due: Option<NaiveDate>, note: &str| Obligation {
        id: ItemId::from_name(OBLIGATION_ID_NAMESPACE, &format!("{credit_code}|{kind:?}|{period}")),
        kind,
        period,
        due,
        received: None,
        works_start: None,
        note: note.to_string(),
    };
    let year = list_year.to_string();
    let mut out = vec![
        obligation(
            ObligationKind::EmissionReport,
            year.clone(),
            year_end(list_year),
            "有毒有害物质排放报告",
        ),
        obligation(
            ObligationKind::SelfMonitoringSurfaceSoil,
            year.clone(),
            year_end(list_year),
            "自行监测：表层土壤（每年）",
        ),
        obligation(
            ObligationKind::SelfMonitoringGroundwater,
            year.clone(),
            year_end(list_year),
            "自行监测：地下水（每年，或按方案每半年）",
        ),
    ];
    let offset = (list_year - first_listed_year).rem_euclid(DEEP_SOIL_CYCLE_YEARS);
    let cycle_start = list_year - offset;
    let cycle_end = cycle_start + DEEP_SOIL_CYCLE_YEARS - 1;
    out.push(obligation(
        ObligationKind::SelfMonitoringDeepSoil,
        format!("{cycle_start}..{cycle_end}"),
        year_end(cycle_end),
        "自行监测：深层土壤（每3年）",
    ));
    if first_listed_year == list_year {
        out.push(obligation(
            ObligationKind::HiddenDangerInvestigation,
            year,
            listed_on.checked_add_months(Months::new(12)),
            "纳入名录后一年内完成土壤污染隐患排查",
        ));
    }
    out
}

/// 统一社会信用代码 (GB 32100-2015): 18 characters from a 31-letter alphabet,
/// the last a check character over the first 17.
fn check_credit_code(code: &str) -> Result<(), String> {
    const ALPHABET: &str = "0123456789ABCDEFGHJKLMNPQRTUWXY";
    const WEIGHTS: [u32; 17] = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28];
    let values: Option<Vec<u32>> = code
        .chars()
        .map(|c| ALPHABET.find(c).and_then(|i| u32::try_from(i).ok()))
        .collect();
    let Some(values) = values.filter(|v| v.len() == 18) else {
        return Err(format!(
            "credit_code {code:?} is not 18 characters of 0-9 and A-Y (no I, O, S, V, Z)"
        ));
    };
    let sum: u32 = values.iter().zip(WEIGHTS).map(|(v, w)| v * w).sum();
    let check = (31 - sum % 31) % 31;
    if values.get(17) == Some(&check) {
        Ok(())
    } else {
        Err(format!("credit_code {code:?} has a wrong check character"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNITS_2025: &str = include_str!("../../../fixtures/examples/key_units_2025.csv");
    const HEADER: &str = "credit_code,name,operator,industry,city,county,list_year,first_listed_year,listed_on,lat,lon";

    fn gx() -> RegionCode {
        "450000".parse().unwrap()
    }

    fn import(text: &str) -> ImportReport<Site> {
        import_key_units(text.as_bytes(), gx()).unwrap()
    }

    fn kinds(site: &Site) -> Vec<ObligationKind> {
        site.obligations.iter().map(|o| o.kind).collect()
    }

    #[test]
    fn shipped_2025_list_is_taken_whole() {
        let report = import(UNITS_2025);
        assert_eq!(report.rejected, vec![]);
        assert_eq!(report.taken.len(), 15);
        assert!(
            report
                .taken
                .iter()
                .all(|s| s.location.is_some() && s.operator == s.name)
        );
        let yizhou = report.taken.iter().find(|s| s.name.starts_with("宜州市")).unwrap();
        assert_eq!(yizhou.region_code.to_string(), "451203");
        let gongcheng = report.taken.iter().find(|s| s.name.starts_with("恭城县")).unwrap();
        assert_eq!(gongcheng.region_code.to_string(), "450332");
    }

    #[test]
    fn newly_listed_units_owe_the_hidden_danger_investigation_within_12_months() {
        let report = import(UNITS_2025);
        let new = report
            .taken
            .iter()
            .find(|s| s.name == "南丹县大厂华兴冶炼有限公司")
            .unwrap();
        let SiteDetails::KeyUnit(unit) = &new.details else {
            panic!("not a key unit");
        };
        assert_eq!(unit.list_year, 2025);
        let investigation = new
            .obligations
            .iter()
            .find(|o| o.kind == ObligationKind::HiddenDangerInvestigation)
            .unwrap();
        assert_eq!(investigation.due, "2026-04-15".parse().ok());
        let newly_listed = report
            .taken
            .iter()
            .filter(|s| kinds(s).contains(&ObligationKind::HiddenDangerInvestigation))
            .count();
        assert_eq!(newly_listed, 5);
    }

    #[test]
    fn every_unit_owes_the_years_report_and_self_monitoring() {
        let report = import(UNITS_2025);
        for site in &report.taken {
            let k = kinds(site);
            for kind in [
                ObligationKind::EmissionReport,
                ObligationKind::SelfMonitoringSurfaceSoil,
                ObligationKind::SelfMonitoringGroundwater,
                ObligationKind::SelfMonitoringDeepSoil,
            ] {
                assert!(k.contains(&kind), "{} lacks {kind:?}", site.name);
            }
            let report_due = site.obligations[0].due;
            assert_eq!(report_due, "2025-12-31".parse().ok());
        }
    }

    #[test]
    fn deep_soil_cycles_count_from_the_first_listing() {
        let listed_on = "2025-04-15".parse().unwrap();
        let deep = |first| {
            obligations_for("X", first, 2025, listed_on)
                .into_iter()
                .find(|o| o.kind == ObligationKind::SelfMonitoringDeepSoil)
                .map(|o| (o.period, o.due))
                .unwrap()
        };
        assert_eq!(deep(2025), ("2025..2027".to_string(), "2027-12-31".parse().ok()));
        assert_eq!(deep(2019), ("2025..2027".to_string(), "2027-12-31".parse().ok()));
        assert_eq!(deep(2021), ("2024..2026".to_string(), "2026-12-31".parse().ok()));
        assert_eq!(deep(2020), ("2023..2025".to_string(), "2025-12-31".parse().ok()));
    }

    #[test]
    fn reimporting_keeps_site_and_obligation_ids() {
        assert_eq!(import(UNITS_2025), import(UNITS_2025));
    }

    #[test]
    fn credit_codes_need_a_valid_check_character() {
        let first = UNITS_2025.lines().nth(1).unwrap().split(',').next().unwrap();
        assert_eq!(check_credit_code(first), Ok(()));
        assert_eq!(check_credit_code("91350100M000100Y43"), Ok(()));
        let mut wrong = first.to_string();
        let last = wrong.pop().unwrap();
        wrong.push(if last == '0' { '1' } else { '0' });
        assert!(check_credit_code(&wrong).unwrap_err().contains("check character"));
        assert!(check_credit_code("91450000ABC").unwrap_err().contains("18 characters"));
    }

    #[test]
    fn bad_rows_are_rejected_with_line_and_reason() {
        let good = UNITS_2025.lines().nth(1).unwrap();
        let text = format!(
            "{HEADER}\n\
             {good}\n\
             914512214283FEFC37,校验错,,有色金属冶炼,河池市,南丹县,2025,,2025-04-15,,\n\
             91450332EB8450AG75,县不明,,有色金属冶炼,桂林市,火星县,2025,,2025-04-15,,\n\
             91451082F8GB4C0B79,,,有色金属冶炼,百色市,平果市,2025,,2025-04-15,,\n\
             914510028957475410,日期错,,化工,百色市,右江区,2025,,2024-12-31,,\n\
             914513023G78892E44,坐标错,,冶炼,来宾市,兴宾区,2025,2023,2025-04-15,23.7,999\n\
             {good}\n\
             914502032F8104FB5F,首次晚于名录,,电镀,柳州市,鱼峰区,2025,2026,2025-04-15,,\n"
        );
        let report = import(&text);
        assert_eq!(report.taken.len(), 1);
        let rejected: Vec<(usize, &str)> = report.rejected.iter().map(|r| (r.line, r.reason.as_str())).collect();
        let expected = [
            (3, "check character"),
            (4, "火星县"),
            (5, "name is empty"),
            (6, "not in list_year"),
            (7, "impossible"),
            (8, "first on line 2"),
            (9, "after list_year"),
        ];
        assert_eq!(rejected.len(), expected.len(), "{rejected:?}");
        for ((line, reason), (want_line, want)) in rejected.iter().zip(expected) {
            assert_eq!(*line, want_line, "{reason}");
            assert!(reason.contains(want), "line {line}: {reason}");
        }
    }
}
