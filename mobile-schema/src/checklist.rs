//! Checklist templates, one per site kind, versioned. Item codes are stable:
//! an answer keeps its meaning across template versions, and a new version only
//! adds codes. Contents follow the obligations and checks of DOMAIN.md.

use schemars::JsonSchema;
use serde::Serialize;

use crate::site::SiteKind;

/// One question of a checklist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
pub struct ChecklistItem {
    pub code: &'static str,
    pub title: &'static str,
}

/// A versioned checklist for one kind of site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ChecklistTemplate {
    pub id: &'static str,
    pub version: u32,
    pub site_kind: SiteKind,
    pub items: &'static [ChecklistItem],
}

impl ChecklistTemplate {
    pub fn item(&self, code: &str) -> Option<&'static ChecklistItem> {
        self.items.iter().find(|i| i.code == code)
    }
}

const TAILINGS_POND_V1: &[ChecklistItem] = &[
    ChecklistItem {
        code: "TP-01",
        title: "尾矿库环境监管级别及信息公示牌",
    },
    ChecklistItem {
        code: "TP-02",
        title: "环境影响评价及“三同时”执行情况",
    },
    ChecklistItem {
        code: "TP-03",
        title: "排污许可及污染物排放情况",
    },
    ChecklistItem {
        code: "TP-04",
        title: "突发环境事件应急预案编制、备案及演练",
    },
    ChecklistItem {
        code: "TP-05",
        title: "在线监测设备运行情况",
    },
    ChecklistItem {
        code: "TP-06",
        title: "库底及坝体防渗措施",
    },
    ChecklistItem {
        code: "TP-07",
        title: "渗滤液收集与处理设施",
    },
    ChecklistItem {
        code: "TP-08",
        title: "回水系统运行情况",
    },
    ChecklistItem {
        code: "TP-09",
        title: "坝体渗漏、裂缝、沉降",
    },
    ChecklistItem {
        code: "TP-10",
        title: "排洪系统（截洪沟、排洪井）畅通情况",
    },
    ChecklistItem {
        code: "TP-11",
        title: "雨污分流设施",
    },
    ChecklistItem {
        code: "TP-12",
        title: "下游地表水及地下水监测井",
    },
    ChecklistItem {
        code: "TP-13",
        title: "干滩长度与安全超高",
    },
    ChecklistItem {
        code: "TP-14",
        title: "库区水位",
    },
    ChecklistItem {
        code: "TP-15",
        title: "周边环境敏感目标（村庄、水源地）",
    },
    ChecklistItem {
        code: "TP-16",
        title: "扬尘控制与覆土绿化",
    },
    ChecklistItem {
        code: "TP-17",
        title: "环境隐患排查治理台账",
    },
    ChecklistItem {
        code: "TP-18",
        title: "视频监控",
    },
    ChecklistItem {
        code: "TP-19",
        title: "应急物资储备",
    },
    ChecklistItem {
        code: "TP-20",
        title: "上次检查问题整改情况",
    },
];

const KEY_UNIT_V1: &[ChecklistItem] = &[
    ChecklistItem {
        code: "KU-01",
        title: "有毒有害物质排放报告（年度）",
    },
    ChecklistItem {
        code: "KU-02",
        title: "土壤污染隐患排查制度建立情况",
    },
    ChecklistItem {
        code: "KU-03",
        title: "隐患排查报告（纳入名录后12个月内完成）",
    },
    ChecklistItem {
        code: "KU-04",
        title: "隐患排查“回头看”",
    },
    ChecklistItem {
        code: "KU-05",
        title: "自行监测方案",
    },
    ChecklistItem {
        code: "KU-06",
        title: "表层土壤监测（每年）",
    },
    ChecklistItem {
        code: "KU-07",
        title: "深层土壤监测（每3年）",
    },
    ChecklistItem {
        code: "KU-08",
        title: "地下水监测（每半年或每年）",
    },
    ChecklistItem {
        code: "KU-09",
        title: "监测结果报送",
    },
    ChecklistItem {
        code: "KU-10",
        title: "信息公开",
    },
    ChecklistItem {
        code: "KU-11",
        title: "拆除活动土壤污染防治工作方案备案（拆除前不少于15个工作日）",
    },
    ChecklistItem {
        code: "KU-12",
        title: "储罐、管线防渗漏设施",
    },
    ChecklistItem {
        code: "KU-13",
        title: "危险废物贮存间规范化",
    },
    ChecklistItem {
        code: "KU-14",
        title: "物料及废物堆存场所防扬散、防流失、防渗漏",
    },
    ChecklistItem {
        code: "KU-15",
        title: "排放口规范化",
    },
    ChecklistItem {
        code: "KU-16",
        title: "排污许可证载明的土壤污染防治义务",
    },
    ChecklistItem {
        code: "KU-17",
        title: "突发环境事件应急预案",
    },
    ChecklistItem {
        code: "KU-18",
        title: "地下水监测井完好情况",
    },
    ChecklistItem {
        code: "KU-19",
        title: "隐患整改台账",
    },
    ChecklistItem {
        code: "KU-20",
        title: "上次检查问题整改情况",
    },
];

const REMEDIATION_SITE_V1: &[ChecklistItem] = &[
    ChecklistItem {
        code: "RS-01",
        title: "风险管控或修复方案备案",
    },
    ChecklistItem {
        code: "RS-02",
        title: "施工组织及二次污染防治方案",
    },
    ChecklistItem {
        code: "RS-03",
        title: "施工围挡与标志牌",
    },
    ChecklistItem {
        code: "RS-04",
        title: "基坑开挖与污染土壤清挖范围",
    },
    ChecklistItem {
        code: "RS-05",
        title: "污染土壤暂存场所防渗与遮盖",
    },
    ChecklistItem {
        code: "RS-06",
        title: "污染土壤转运联单",
    },
    ChecklistItem {
        code: "RS-07",
        title: "施工扬尘控制",
    },
    ChecklistItem {
        code: "RS-08",
        title: "施工废水收集处理",
    },
    ChecklistItem {
        code: "RS-09",
        title: "废气及异味控制",
    },
    ChecklistItem {
        code: "RS-10",
        title: "周边环境监测",
    },
    ChecklistItem {
        code: "RS-11",
        title: "工程进度与年度目标完成情况",
    },
    ChecklistItem {
        code: "RS-12",
        title: "工程监理",
    },
    ChecklistItem {
        code: "RS-13",
        title: "环境监理",
    },
    ChecklistItem {
        code: "RS-14",
        title: "效果评估",
    },
    ChecklistItem {
        code: "RS-15",
        title: "地块用途管控（不得用于住宅、公共管理与公共服务用地）",
    },
    ChecklistItem {
        code: "RS-16",
        title: "风险管控措施运行维护",
    },
    ChecklistItem {
        code: "RS-17",
        title: "信息公开",
    },
    ChecklistItem {
        code: "RS-18",
        title: "突发环境事件应急预案",
    },
    ChecklistItem {
        code: "RS-19",
        title: "施工台账",
    },
    ChecklistItem {
        code: "RS-20",
        title: "上次检查问题整改情况",
    },
];

/// Every template the system knows, all versions.
pub const TEMPLATES: &[ChecklistTemplate] = &[
    ChecklistTemplate {
        id: "tailings_pond",
        version: 1,
        site_kind: SiteKind::TailingsPond,
        items: TAILINGS_POND_V1,
    },
    ChecklistTemplate {
        id: "key_unit",
        version: 1,
        site_kind: SiteKind::KeyUnit,
        items: KEY_UNIT_V1,
    },
    ChecklistTemplate {
        id: "remediation_site",
        version: 1,
        site_kind: SiteKind::RemediationSite,
        items: REMEDIATION_SITE_V1,
    },
];

/// A template by id and version.
pub fn template(id: &str, version: u32) -> Option<&'static ChecklistTemplate> {
    TEMPLATES.iter().find(|t| t.id == id && t.version == version)
}

/// The newest template for a kind of site.
pub fn current_for(kind: SiteKind) -> Option<&'static ChecklistTemplate> {
    TEMPLATES
        .iter()
        .filter(|t| t.site_kind == kind)
        .max_by_key(|t| t.version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_template_with_unique_prefixed_codes() {
        for kind in SiteKind::ALL {
            let t = current_for(kind).unwrap();
            assert_eq!(t.items.len(), 20);
            let mut codes: Vec<_> = t.items.iter().map(|i| i.code).collect();
            codes.sort_unstable();
            codes.dedup();
            assert_eq!(codes.len(), t.items.len());
            assert_eq!(template(t.id, t.version), Some(t));
        }
        assert!(template("tailings_pond", 1).unwrap().item("TP-13").is_some());
        assert!(template("tailings_pond", 1).unwrap().item("KU-01").is_none());
        assert!(template("tailings_pond", 99).is_none());
    }
}
