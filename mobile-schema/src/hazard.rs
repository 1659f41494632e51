//! A hazard (隐患): a finding of an inspection, followed until it is closed (销号).

use chrono::NaiveDate;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::{HazardId, InspectionId, SiteId};
use crate::inspection::Evidence;
use crate::workflow::{HazardAction, HazardState};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Hazard {
    pub id: HazardId,
    pub schema_version: u32,
    pub inspection_id: InspectionId,
    pub site_id: SiteId,
    /// A finding code such as `F-LEAK`.
    pub category: String,
    /// A level of the configured severity scale (see `severity`); another
    /// value is kept and flagged, an empty one refused.
    pub severity: String,
    pub description: String,
    /// Deadline for rectification (整改期限), a day in Asia/Shanghai.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<NaiveDate>,
    #[serde(default)]
    pub responsible_party: String,
    /// What was found (the finding's photos).
    #[serde(default)]
    pub evidence: Vec<Evidence>,
    /// The day the responsible party was ordered to rectify (责令整改), Asia/Shanghai.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notified_on: Option<NaiveDate>,
    /// What the responsible party handed in as done (整改材料).
    #[serde(default)]
    pub rectification_evidence: Vec<Evidence>,
    /// What the inspector saw when checking the rectification on site.
    #[serde(default)]
    pub verification_evidence: Vec<Evidence>,
    #[serde(default)]
    pub state: HazardState,
}

impl Hazard {
    pub const SCHEMA_VERSION: u32 = 1;

    /// What a step of the lifecycle needs on the record before it may be taken,
    /// if something is missing: the field and why. A notice (责令整改) names
    /// its day, deadline and responsible party; a submitted rectification
    /// carries the party's material; an on-site verification its own evidence.
    pub fn missing_for(&self, action: HazardAction) -> Option<MissingEvidence> {
        let missing = |field: &'static str, message: &'static str| Some(MissingEvidence { field, message });
        match action {
            HazardAction::Notify if self.deadline.is_none() => {
                missing("deadline", "a rectification notice needs a deadline (整改期限)")
            }
            HazardAction::Notify if self.responsible_party.trim().is_empty() => missing(
                "responsible_party",
                "a rectification notice names the responsible party",
            ),
            HazardAction::Notify if self.notified_on.is_none() => {
                missing("notified_on", "a rectification notice needs the day it was served")
            }
            HazardAction::SubmitRectification if self.rectification_evidence.is_empty() => missing(
                "rectification_evidence",
                "a submitted rectification needs the responsible party's material",
            ),
            HazardAction::Verify if self.verification_evidence.is_empty() => {
                missing("verification_evidence", "an on-site verification needs its evidence")
            }
            _ => None,
        }
    }

    /// Past its deadline on `today` (Asia/Shanghai) and not closed (销号): a
    /// hazard stays overdue until the bureau closes it.
    pub fn is_overdue(&self, today: NaiveDate) -> bool {
        self.state != HazardState::Closed && self.deadline.is_some_and(|d| d < today)
    }
}

/// A lifecycle step's missing evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MissingEvidence {
    pub field: &'static str,
    pub message: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{ItemId, Sha256Hex};
    use crate::inspection::EvidenceKind;

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn photo() -> Evidence {
        Evidence {
            id: ItemId::generate(),
            sha256: Sha256Hex::of_bytes(b"photo"),
            kind: EvidenceKind::Photo,
            capture_time: None,
            position: None,
            device_id: None,
            caption: String::new(),
        }
    }

    fn identified() -> Hazard {
        Hazard {
            id: HazardId::from_name("test", "h"),
            schema_version: Hazard::SCHEMA_VERSION,
            inspection_id: InspectionId::from_name("test", "i"),
            site_id: SiteId::from_name("test", "s"),
            category: "F-LEAK".into(),
            severity: "high".into(),
            description: "渗漏".into(),
            deadline: None,
            responsible_party: String::new(),
            evidence: vec![],
            notified_on: None,
            rectification_evidence: vec![],
            verification_evidence: vec![],
            state: HazardState::Identified,
        }
    }

    #[test]
    fn each_step_names_the_evidence_it_lacks() {
        let mut h = identified();
        assert_eq!(h.missing_for(HazardAction::Notify).unwrap().field, "deadline");
        h.deadline = Some(day("2026-12-01"));
        assert_eq!(h.missing_for(HazardAction::Notify).unwrap().field, "responsible_party");
        h.responsible_party = "某矿业公司".into();
        assert_eq!(h.missing_for(HazardAction::Notify).unwrap().field, "notified_on");
        h.notified_on = Some(day("2026-11-01"));
        assert_eq!(h.missing_for(HazardAction::Notify), None);
        assert_eq!(h.missing_for(HazardAction::StartRectification), None);
        assert_eq!(
            h.missing_for(HazardAction::SubmitRectification).unwrap().field,
            "rectification_evidence"
        );
        h.rectification_evidence.push(photo());
        assert_eq!(h.missing_for(HazardAction::SubmitRectification), None);
        assert_eq!(
            h.missing_for(HazardAction::Verify).unwrap().field,
            "verification_evidence"
        );
        h.verification_evidence.push(photo());
        assert_eq!(h.missing_for(HazardAction::Verify), None);
        assert_eq!(h.missing_for(HazardAction::Close), None);
    }

    #[test]
    fn overdue_means_past_the_deadline_and_not_closed() {
        let mut h = identified();
        assert!(!h.is_overdue(day("2026-12-02")), "no deadline, never overdue");
        h.deadline = Some(day("2026-12-01"));
        h.state = HazardState::Rectifying;
        assert!(!h.is_overdue(day("2026-12-01")), "the deadline day itself is in time");
        assert!(h.is_overdue(day("2026-12-02")));
        h.state = HazardState::Verified;
        assert!(h.is_overdue(day("2026-12-02")), "verified but not closed yet");
        h.state = HazardState::Closed;
        assert!(!h.is_overdue(day("2026-12-02")));
    }
}
