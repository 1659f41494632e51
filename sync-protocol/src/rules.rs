//! Record rules the server applies after a merge: the domain's validation,
//! split into errors (a change that introduces one is refused) and flags (kept
//! on the record for a supervisor).

use mobile_schema::record::AnyRecord;
use mobile_schema::rule_settings::RuleSettings;
use mobile_schema::site::Site;
use mobile_schema::validation::{Issue, validate};

use crate::outcome::Flag;

/// Errors make a record unusable; flags are rule breaches a supervisor sees.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checked {
    pub errors: Vec<Flag>,
    pub flags: Vec<Flag>,
}

fn to_flag(i: Issue) -> Flag {
    Flag {
        code: i.code.as_str().to_string(),
        field: i.field,
        message: i.message,
    }
}

/// Check a merged record, with its site when known, under the deployment's settings.
pub fn check(record: &AnyRecord, site: Option<&Site>, settings: &RuleSettings) -> Checked {
    let mut ctx = settings.context();
    if let Some(site) = site {
        ctx = ctx.with_site(site);
    }
    let report = validate(record, &ctx);
    Checked {
        errors: report.errors.into_iter().map(to_flag).collect(),
        flags: report.flags.into_iter().map(to_flag).collect(),
    }
}
