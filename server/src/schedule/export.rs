//! CSV for people: UTF-8 with a byte-order mark, so Excel shows the Chinese
//! site names and labels correctly instead of guessing a legacy code page.

use std::collections::HashMap;

use mobile_schema::ids::{SiteId, UserId};
use mobile_schema::schedule::ComplianceReport;
use mobile_schema::site::Site;
use mobile_schema::task::Task;

const BOM: &str = "\u{feff}";

fn snake<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

fn finish(w: csv::Writer<Vec<u8>>) -> String {
    let bytes = w.into_inner().unwrap_or_default();
    format!("{BOM}{}", String::from_utf8_lossy(&bytes))
}

/// One row per task: what, where, when and who.
pub fn tasks_csv(tasks: &[Task], sites: &[Site], names: &HashMap<UserId, String>) -> String {
    let site: HashMap<SiteId, &Site> = sites.iter().map(|s| (s.id, s)).collect();
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record([
        "task_id",
        "site_id",
        "site_name",
        "region_code",
        "rule",
        "earliest_start",
        "due",
        "team",
        "state",
        "hidden_until",
    ]);
    for t in tasks {
        let s = site.get(&t.site_id);
        let team: Vec<&str> = t
            .assigned
            .iter()
            .map(|id| names.get(id).map(String::as_str).unwrap_or("?"))
            .collect();
        let _ = w.write_record([
            t.id.to_string(),
            t.site_id.to_string(),
            s.map(|s| s.name.clone()).unwrap_or_default(),
            s.map(|s| s.region_code.to_string()).unwrap_or_default(),
            snake(&t.rule),
            t.window.earliest_start.to_string(),
            t.window.due.to_string(),
            team.join(" "),
            snake(&t.state),
            t.hidden_until.map(|d| d.to_string()).unwrap_or_default(),
        ]);
    }
    finish(w)
}

/// One row per pond: a sheet of one row shape is what a bureau files; the
/// overdue tasks are listed in the JSON form.
pub fn compliance_csv(report: &ComplianceReport) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record([
        "site_id",
        "site_name",
        "region_code",
        "level",
        "required",
        "done",
        "met",
        "message",
    ]);
    for p in &report.ponds {
        // The rule's verdict, not the plan's windows.
        let met = p.required > 0 && p.outcome == mobile_schema::schedule::compliance::RuleOutcome::Met;
        let _ = w.write_record([
            p.site_id.to_string(),
            p.site_name.clone(),
            p.region_code.to_string(),
            p.level.map(|l| l.label_zh().to_string()).unwrap_or_default(),
            p.required.to_string(),
            p.done.to_string(),
            if met { "yes" } else { "no" }.to_string(),
            p.message.clone(),
        ]);
    }
    finish(w)
}

/// One row per obligation of a key unit.
pub fn obligations_csv(list: &[mobile_schema::schedule::ObligationStatus]) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record([
        "site_id",
        "site_name",
        "region_code",
        "obligation",
        "period",
        "due",
        "received",
        "state",
        "due_provisional",
    ]);
    for o in list {
        let _ = w.write_record([
            o.site_id.to_string(),
            o.site_name.clone(),
            o.region_code.to_string(),
            snake(&o.kind),
            o.period.clone(),
            o.due.map(|d| d.to_string()).unwrap_or_default(),
            o.received.map(|d| d.to_string()).unwrap_or_default(),
            snake(&o.state),
            if o.provisional { "yes" } else { "" }.to_string(),
        ]);
    }
    finish(w)
}
