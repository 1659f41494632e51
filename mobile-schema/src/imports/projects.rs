//! The yearly list of centrally funded soil and groundwater projects (中央土壤
//! 污染防治资金项目), as annexed to Guangxi's yearly work plan.
//!
//! Format (`fixtures/guangxi_2024_soil_projects.csv`), one project a row:
//!
//! | column | meaning |
//! |---|---|
//! | `category` | funding programme, e.g. 国家土壤污染源头管控重大工程项目 |
//! | `seq` | number within the category (not a key: it restarts per category) |
//! | `project_name` | the project; its natural key |
//! | `central_funding_10k_cny` | central funding in 10,000 CNY; may be empty |
//! | `city` | city name, or 省本级 / empty for a provincial project |
//! | `county` | county name as printed (short forms and old names allowed), a six-digit code, or 市本级 / empty for a city-wide project |
//! | `project_type` | 耕地类, 企业类, 建设用地风险管控与修复, ... |
//! | `target_<year>` | the year's target, e.g. 完成总工程量的60%以上; the column name gives the target year |

use std::io::Read;

use crate::ids::SiteId;
use crate::imports::{ImportError, ImportReport, SeenKeys, Table, resolve_place};
use crate::region::{Divisions, RegionCode};
use crate::site::{PriorityFlags, RemediationSite, Site, SiteDetails, SiteStatus};

/// The namespace of remediation-project site ids (keyed by project name).
pub const PROJECT_ID_NAMESPACE: &str = "fieldsync.remediation_site";

const LIST: &str = "funded soil project list";
const COLUMNS: [&str; 7] = [
    "category",
    "project_name",
    "central_funding_10k_cny",
    "city",
    "county",
    "project_type",
    "seq",
];

/// Imports a funded project list of `province` into remediation sites.
pub fn import_projects<R: Read>(reader: R, province: RegionCode) -> Result<ImportReport<Site>, ImportError> {
    let divisions = Divisions::gbt2260()?;
    let table = Table::open(reader, LIST)?;
    table.require(&COLUMNS)?;
    let Some((target_column, target_year)) = table.column_names().find_map(|name| {
        let year = name.strip_prefix("target_")?.parse::<i32>().ok()?;
        Some((name.to_string(), year))
    }) else {
        return Err(ImportError::MissingColumns {
            list: LIST,
            columns: vec!["target_<year>".to_string()],
        });
    };
    let mut seen = SeenKeys::default();
    table.rows(|row| {
        let project_name = row.required("project_name")?;
        let region_code = resolve_place(divisions, province, row.get("city"), row.get("county"))?;
        let funding_10k_cny = match row.get("central_funding_10k_cny") {
            "" => None,
            v => Some(
                v.parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite() && *x >= 0.0)
                    .ok_or_else(|| format!("central_funding_10k_cny {v:?} is not an amount"))?,
            ),
        };
        seen.check(project_name, row.line())?;
        Ok(Site {
            id: SiteId::from_name(PROJECT_ID_NAMESPACE, project_name),
            schema_version: Site::SCHEMA_VERSION,
            name: project_name.to_string(),
            // The list names no responsible company; the bureau fills it in.
            operator: String::new(),
            region_code,
            location: None,
            status: SiteStatus::Active,
            details: SiteDetails::RemediationSite(RemediationSite {
                project_name: project_name.to_string(),
                category: row.get("category").to_string(),
                project_type: row.required("project_type")?.to_string(),
                funding_10k_cny,
                target_year,
                target: row.get(&target_column).to_string(),
            }),
            priority: PriorityFlags::default(),
            levels: Vec::new(),
            obligations: Vec::new(),
            progress: Vec::new(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUANGXI_2024: &str = include_str!("../../../fixtures/guangxi_2024_soil_projects.csv");

    fn gx() -> RegionCode {
        "450000".parse().unwrap()
    }

    fn import(text: &str) -> ImportReport<Site> {
        import_projects(text.as_bytes(), gx()).unwrap()
    }

    fn code_of(report: &ImportReport<Site>, name_part: &str) -> String {
        let site = report.taken.iter().find(|s| s.name.contains(name_part)).unwrap();
        site.region_code.to_string()
    }

    #[test]
    fn all_36_guangxi_2024_projects_are_taken() {
        let report = import(GUANGXI_2024);
        assert_eq!(report.rejected, vec![]);
        assert_eq!(report.taken.len(), 36);
        let SiteDetails::RemediationSite(first) = &report.taken[0].details else {
            panic!("not a remediation site");
        };
        assert_eq!(first.target_year, 2024);
        assert_eq!(first.funding_10k_cny, Some(3400.0));
        assert_eq!(first.target, "完成效果评估。");
        assert_eq!(first.project_type, "耕地类");
        assert_eq!(first.category, "国家土壤污染源头管控重大工程项目");
    }

    #[test]
    fn counties_resolve_including_short_forms_and_old_names() {
        let report = import(GUANGXI_2024);
        assert_eq!(code_of(&report, "金通选矿厂"), "451221"); // 南丹县
        assert_eq!(code_of(&report, "金秀瑶族自治县长乐"), "451324"); // printed 金秀县
        assert_eq!(code_of(&report, "鸡叫山"), "451203"); // printed 宜州市, now 宜州区
        assert_eq!(code_of(&report, "申亚锰业"), "451203");
        assert_eq!(code_of(&report, "老山尾矿库"), "450332"); // 恭城瑶族自治县
        assert_eq!(code_of(&report, "砒霜厂"), "451103"); // 平桂区
        assert_eq!(code_of(&report, "藤县集中式"), "450422");
    }

    #[test]
    fn provincial_and_city_wide_projects_stay_at_their_level() {
        let report = import(GUANGXI_2024);
        assert_eq!(code_of(&report, "地下水污染调查与评价（三期）"), "450000"); // 省本级
        assert_eq!(code_of(&report, "百色市全域"), "451000"); // 市本级
    }

    #[test]
    fn ids_are_stable_across_reimports() {
        let a = import(GUANGXI_2024);
        let b = import(GUANGXI_2024);
        let ids = |r: &ImportReport<Site>| r.taken.iter().map(|s| s.id).collect::<Vec<_>>();
        assert_eq!(ids(&a), ids(&b));
        let mut unique = ids(&a);
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 36);
    }

    #[test]
    fn bad_rows_are_rejected_with_line_and_reason() {
        let text = "category,seq,project_name,central_funding_10k_cny,city,county,project_type,target_2025\n\
            类,1,甲项目,100,河池市,南丹县,耕地类,完成验收\n\
            类,2,乙项目,100,河池市,金秀县,耕地类,完成验收\n\
            类,3,丙项目,很多,河池市,南丹县,耕地类,完成验收\n\
            类,4,,100,河池市,南丹县,耕地类,完成验收\n\
            类,5,甲项目,100,河池市,南丹县,耕地类,完成验收\n\
            类,6,丁项目,100,火星市,,耕地类,完成验收\n";
        let report = import(text);
        assert_eq!(report.taken.len(), 1);
        let SiteDetails::RemediationSite(p) = &report.taken[0].details else {
            panic!("not a remediation site");
        };
        assert_eq!(p.target_year, 2025);
        let lines: Vec<usize> = report.rejected.iter().map(|r| r.line).collect();
        assert_eq!(lines, vec![3, 4, 5, 6, 7]);
        let reasons: Vec<&str> = report.rejected.iter().map(|r| r.reason.as_str()).collect();
        assert!(reasons[0].contains("金秀县"), "{}", reasons[0]);
        assert!(reasons[1].contains("central_funding_10k_cny"), "{}", reasons[1]);
        assert!(reasons[2].contains("project_name is empty"), "{}", reasons[2]);
        assert!(reasons[3].contains("first on line 2"), "{}", reasons[3]);
        assert!(reasons[4].contains("火星市"), "{}", reasons[4]);
    }

    #[test]
    fn a_file_without_a_target_column_fails_as_a_whole() {
        let text = "category,seq,project_name,central_funding_10k_cny,city,county,project_type\n";
        let err = import_projects(text.as_bytes(), gx()).unwrap_err();
        assert!(matches!(err, ImportError::MissingColumns { .. }), "{err}");
    }
}
