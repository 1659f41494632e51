//! Small valid records for tests, examples and benchmarks across the workspace.

use chrono::{DateTime, FixedOffset};

use crate::geo::{Crs, GnssFix, Location};
use crate::ids::{DeviceId, InspectionId, SiteId};
use crate::inspection::{ChecklistAnswer, ChecklistRef, Inspection, ItemResult, TeamMember, TimeSpan};
use crate::site::{PriorityFlags, Site, SiteDetails, SiteStatus, TailingsPond};
use crate::workflow::InspectionStatus;

fn at(text: &str) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(text).unwrap_or_default()
}

/// A tailings pond in 南丹县 (451221), with a 500 m radius.
pub fn pond(id: SiteId) -> Site {
    Site {
        id,
        schema_version: Site::SCHEMA_VERSION,
        name: "大厂矿区某尾矿库".into(),
        operator: "南丹县某矿业有限公司".into(),
        region_code: crate::region::RegionCode::new(451_221).unwrap_or(crate::region::RegionCode::GUANGXI),
        location: Some(Location {
            lat: 24.98,
            lon: 107.55,
            crs: Crs::Wgs84,
            radius_m: Some(500.0),
            polygon: None,
        }),
        status: SiteStatus::Active,
        details: SiteDetails::TailingsPond(TailingsPond {
            minerals: vec!["锡".into(), "铅锌".into()],
            heavy_metals: true,
            cyanide: false,
        }),
        priority: PriorityFlags::default(),
        levels: Vec::new(),
        obligations: Vec::new(),
        progress: Vec::new(),
    }
}

/// An unsigned draft inspection of `site` by two inspectors, fix on site, with
/// three checklist answers.
pub fn inspection(id: InspectionId, site: SiteId, device: DeviceId) -> Inspection {
    let answer = |result, note: &str| ChecklistAnswer {
        result,
        note: note.into(),
        evidence: Vec::new(),
    };
    Inspection {
        id,
        schema_version: Inspection::SCHEMA_VERSION,
        site_id: site,
        task_id: None,
        team: vec![
            TeamMember {
                user_id: None,
                name: "韦明".into(),
                certificate_no: "GX-ZF-0001".into(),
            },
            TeamMember {
                user_id: None,
                name: "黄丽".into(),
                certificate_no: "GX-ZF-0002".into(),
            },
        ],
        device_id: device,
        times: TimeSpan {
            start: at("2025-05-06T09:00:00+08:00"),
            end: Some(at("2025-05-06T10:30:00+08:00")),
        },
        fix: Some(GnssFix {
            lat: 24.981,
            lon: 107.551,
            accuracy_m: 8.0,
            altitude_m: Some(620.0),
            fix_time: at("2025-05-06T09:02:00+08:00"),
            crs: Crs::Wgs84,
        }),
        checklist: ChecklistRef {
            template_id: "tailings_pond".into(),
            version: 1,
        },
        answers: [
            ("TP-01".to_string(), answer(ItemResult::Ok, "标识清晰")),
            ("TP-09".to_string(), answer(ItemResult::Problem, "坝体局部渗水")),
            ("TP-13".to_string(), answer(ItemResult::NotApplicable, "")),
        ]
        .into_iter()
        .collect(),
        evidence: Vec::new(),
        conclusion: "现场检查发现坝体局部渗水，已现场责令整改。".into(),
        signoff: None,
        status: InspectionStatus::Draft,
    }
}

/// A hazard found by `inspection` at `site`, just identified, of severity
/// `high` (a level of the default scale).
pub fn hazard(id: crate::ids::HazardId, inspection: InspectionId, site: SiteId) -> crate::hazard::Hazard {
    crate::hazard::Hazard {
        id,
        schema_version: crate::hazard::Hazard::SCHEMA_VERSION,
        inspection_id: inspection,
        site_id: site,
        category: "F-LEAK".into(),
        severity: "high".into(),
        description: "坝体下游坡面渗漏".into(),
        deadline: None,
        responsible_party: String::new(),
        evidence: vec![],
        notified_on: None,
        rectification_evidence: vec![],
        verification_evidence: vec![],
        state: crate::workflow::HazardState::Identified,
    }
}
