//! The choices the rules leave to each deployment (DOMAIN): the hazard severity
//! scale (一般/重大, 高/中/低, 红/橙/黄 are all in use) and how far from its site
//! a GNSS fix may be before it is flagged. The server is configured with them
//! and hands them to tablets at login, so both judge a record alike.

use serde::{Deserialize, Serialize};

use crate::severity::SeverityScale;
use crate::validation::{DEFAULT_ON_SITE_TOLERANCE_M, ValidationContext};

/// A deployment's rule settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleSettings {
    pub severity_scale: SeverityScale,
    /// Metres a fix may lie outside the site, on top of its accuracy.
    pub on_site_tolerance_m: u32,
}

impl Default for RuleSettings {
    /// The benchmark data's scale (low/medium/high/critical) and 500 m.
    fn default() -> Self {
        Self {
            severity_scale: SeverityScale::default(),
            on_site_tolerance_m: DEFAULT_ON_SITE_TOLERANCE_M as u32,
        }
    }
}

impl RuleSettings {
    /// A validation context with these settings and no site.
    pub fn context(&self) -> ValidationContext<'_> {
        let mut ctx = ValidationContext::new(&self.severity_scale);
        ctx.on_site_tolerance_m = f64::from(self.on_site_tolerance_m);
        ctx
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validation::validate;

    #[test]
    fn a_severity_of_the_configured_scale_is_clean_and_one_of_another_is_flagged() {
        let mut hazard = crate::sample::hazard(
            crate::ids::HazardId::generate(),
            crate::ids::InspectionId::generate(),
            crate::ids::SiteId::generate(),
        );
        let general_major = RuleSettings {
            severity_scale: SeverityScale::general_major(),
            on_site_tolerance_m: 500,
        };
        hazard.severity = "major".into();
        let record = crate::record::AnyRecord::Hazard(hazard.clone());
        assert!(validate(&record, &general_major.context()).is_clean());
        let judged = validate(&record, &RuleSettings::default().context());
        assert!(judged.errors.is_empty() && !judged.flags.is_empty(), "{judged:?}");
        hazard.severity = "critical".into();
        let record = crate::record::AnyRecord::Hazard(hazard);
        assert!(!validate(&record, &general_major.context()).flags.is_empty());
    }
}
