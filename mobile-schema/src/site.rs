//! Sites: tailings ponds (尾矿库), soil-pollution key supervision units
//! (土壤污染重点监管单位) and risk-control/remediation sites (修复地块/项目).

use chrono::{DateTime, FixedOffset, NaiveDate};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::geo::Location;
use crate::ids::{ItemId, SiteId};
use crate::region::RegionCode;

/// A place an inspector goes to. Kind-specific facts are in `details`; the
/// histories that grow over time (levels, obligations, progress) are collections
/// whose items merge one by one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Site {
    pub id: SiteId,
    pub schema_version: u32,
    pub name: String,
    /// The operating or responsible company (运营单位/责任单位).
    pub operator: String,
    pub region_code: RegionCode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    pub status: SiteStatus,
    pub details: SiteDetails,
    /// Tailings ponds only: what the random draw prefers (优先抽查).
    #[serde(default)]
    pub priority: PriorityFlags,
    /// Tailings ponds only: the supervision level per year, every change kept.
    #[serde(default)]
    pub levels: Vec<LevelAssignment>,
    /// Key supervision units only: dated legal obligations.
    #[serde(default)]
    pub obligations: Vec<Obligation>,
    /// Remediation sites only: progress reports against the year's target.
    #[serde(default)]
    pub progress: Vec<ProgressReport>,
}

/// Which of the three kinds a site is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SiteKind {
    TailingsPond,
    KeyUnit,
    RemediationSite,
}

impl SiteKind {
    pub const ALL: [SiteKind; 3] = [SiteKind::TailingsPond, SiteKind::KeyUnit, SiteKind::RemediationSite];

    pub fn as_str(self) -> &'static str {
        match self {
            SiteKind::TailingsPond => "tailings_pond",
            SiteKind::KeyUnit => "key_unit",
            SiteKind::RemediationSite => "remediation_site",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum SiteStatus {
    #[default]
    Active,
    /// Closed (闭库) or delisted; kept for history.
    Closed,
}

/// Kind-specific facts, tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SiteDetails {
    TailingsPond(TailingsPond),
    KeyUnit(KeySupervisionUnit),
    RemediationSite(RemediationSite),
}

impl SiteDetails {
    pub fn kind(&self) -> SiteKind {
        match self {
            SiteDetails::TailingsPond(_) => SiteKind::TailingsPond,
            SiteDetails::KeyUnit(_) => SiteKind::KeyUnit,
            SiteDetails::RemediationSite(_) => SiteKind::RemediationSite,
        }
    }
}

/// 尾矿库.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
pub struct TailingsPond {
    /// Minerals processed, e.g. 锡, 铅锌.
    #[serde(default)]
    pub minerals: Vec<String>,
    #[serde(default)]
    pub heavy_metals: bool,
    #[serde(default)]
    pub cyanide: bool,
}

/// 土壤污染重点监管单位.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct KeySupervisionUnit {
    pub industry: String,
    /// The year of the list the unit was first put on.
    pub list_year: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credit_code: Option<String>,
}

/// 风险管控和修复名录地块 / funded remediation project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RemediationSite {
    pub project_name: String,
    /// Category of the funding programme (e.g. 国家土壤污染源头管控重大工程项目).
    #[serde(default)]
    pub category: String,
    /// Project type as the plan prints it (耕地类, 企业类, ...).
    pub project_type: String,
    /// Central funding in 10,000 CNY.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub funding_10k_cny: Option<f64>,
    pub target_year: i32,
    /// The year's target, e.g. "完成总工程量的60%以上".
    pub target: String,
}

/// Graded environmental supervision level (分类分级环境监管); 一级 is the highest risk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SupervisionLevel {
    /// 一级
    One,
    /// 二级
    Two,
    /// 三级
    Three,
}

impl SupervisionLevel {
    pub fn label_zh(self) -> &'static str {
        match self {
            SupervisionLevel::One => "一级",
            SupervisionLevel::Two => "二级",
            SupervisionLevel::Three => "三级",
        }
    }
}

/// One entry of a pond's level history: imported from the provincial list, never
/// computed and never overwritten.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LevelAssignment {
    pub id: ItemId,
    pub year: i32,
    pub level: SupervisionLevel,
    /// The first day this level is in force (Asia/Shanghai).
    pub effective_from: NaiveDate,
    /// The list or document it comes from, e.g. 桂环函〔2024〕xx号.
    pub source_document: String,
    #[serde(default)]
    pub reason: String,
}

/// What the 三级 random draw prefers (优先抽查).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
pub struct PriorityFlags {
    /// 生态环境问题多
    #[serde(default)]
    pub ecological_problems: bool,
    /// 环境风险隐患突出
    #[serde(default)]
    pub prominent_hazards: bool,
    /// 群众反映强烈
    #[serde(default)]
    pub public_complaints: bool,
}

impl PriorityFlags {
    pub fn any(&self) -> bool {
        self.ecological_problems || self.prominent_hazards || self.public_complaints
    }
}

/// The legal obligations of a key supervision unit (DOMAIN.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ObligationKind {
    /// 有毒有害物质排放报告, yearly.
    EmissionReport,
    /// 土壤污染隐患排查, in full within 12 months of listing.
    HiddenDangerInvestigation,
    /// "回头看" re-check.
    HiddenDangerRecheck,
    /// 自行监测: surface soil, yearly.
    SelfMonitoringSurfaceSoil,
    /// 自行监测: deep soil, every 3 years.
    SelfMonitoringDeepSoil,
    /// 自行监测: groundwater, half-yearly or yearly.
    SelfMonitoringGroundwater,
    /// 信息公开.
    InformationDisclosure,
    /// 拆除活动土壤污染防治工作方案备案, ≥ 15 working days before works.
    DemolitionPlanFiling,
}

/// One dated obligation of a key supervision unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Obligation {
    pub id: ItemId,
    pub kind: ObligationKind,
    /// The year or period it is for, e.g. "2025" or "2025-H1".
    pub period: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due: Option<NaiveDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received: Option<NaiveDate>,
    /// For a dismantling plan filing: the day the works start. The filing is
    /// then due 15 working days before it, by the official calendar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub works_start: Option<NaiveDate>,
    #[serde(default)]
    pub note: String,
}

/// A progress report of a remediation project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProgressReport {
    pub id: ItemId,
    pub reported_at: DateTime<FixedOffset>,
    /// Share of the total works done, 0..=100, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent_done: Option<f64>,
    #[serde(default)]
    pub note: String,
}

impl Site {
    pub const SCHEMA_VERSION: u32 = 1;

    pub fn kind(&self) -> SiteKind {
        self.details.kind()
    }

    /// The level in force on `day`: the latest assignment effective on or before it.
    pub fn level_on(&self, day: NaiveDate) -> Option<&LevelAssignment> {
        self.levels
            .iter()
            .filter(|l| l.effective_from <= day)
            .max_by(|a, b| a.effective_from.cmp(&b.effective_from).then(a.id.cmp(&b.id)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(year: i32, level: SupervisionLevel, from: &str) -> LevelAssignment {
        LevelAssignment {
            id: ItemId::generate(),
            year,
            level,
            effective_from: from.parse().unwrap(),
            source_document: "清单".into(),
            reason: String::new(),
        }
    }

    #[test]
    fn level_in_force_is_the_latest_effective_one_and_history_is_kept() {
        let site = Site {
            id: SiteId::generate(),
            schema_version: 1,
            name: "某尾矿库".into(),
            operator: "某公司".into(),
            region_code: "450332".parse().unwrap(),
            location: None,
            status: SiteStatus::Active,
            details: SiteDetails::TailingsPond(TailingsPond::default()),
            priority: PriorityFlags::default(),
            levels: vec![
                level(2024, SupervisionLevel::Two, "2024-01-01"),
                level(2025, SupervisionLevel::One, "2025-06-01"),
            ],
            obligations: vec![],
            progress: vec![],
        };
        let on = |d: &str| site.level_on(d.parse().unwrap()).map(|l| l.level);
        assert_eq!(on("2023-12-31"), None);
        assert_eq!(on("2025-05-31"), Some(SupervisionLevel::Two));
        assert_eq!(on("2025-06-01"), Some(SupervisionLevel::One));
        assert_eq!(site.levels.len(), 2);
    }
}
