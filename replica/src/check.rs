//! The record checks a local edit must pass before it reaches the outbox: the
//! domain's validation (`mobile_schema::validation`), the same the server runs.

use mobile_schema::record::AnyRecord;
use mobile_schema::rule_settings::RuleSettings;
use mobile_schema::site::Site;
use mobile_schema::validation::validate;

pub use mobile_schema::validation::Issue;

/// Errors (the edit is refused) and flags (kept, shown to the user), judged with
/// the record's site when the replica has it, under the deployment's settings.
pub fn check(record: &AnyRecord, site: Option<&Site>, rules: &RuleSettings) -> (Vec<Issue>, Vec<Issue>) {
    let mut ctx = rules.context();
    if let Some(site) = site {
        ctx = ctx.with_site(site);
    }
    let report = validate(record, &ctx);
    (report.errors, report.flags)
}
