#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! CI smoke test of the benchmark: every scenario on a tiny workload (40
//! records on 4 tablets) against the real server, its JSON lines parsed back.

use tests::bench::{self, Options, Scenario, ScenarioReport};

#[test]
fn every_scenario_runs_on_a_tiny_workload_and_prints_parseable_lines() -> anyhow::Result<()> {
    let options = Options {
        records: Some(40),
        devices: Some(4),
        concurrency: 4,
        ..Options::standard()
    };
    let mut lines = Vec::new();
    let reports = bench::run(&options, &Scenario::ALL, |r| {
        lines.push(serde_json::to_string(r).unwrap());
    })?;
    assert_eq!(reports.len(), 4);
    let parsed: Vec<ScenarioReport> = lines.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(parsed, reports);
    let by = |name: &str| parsed.iter().find(|r| r.scenario == name).unwrap();

    let workload = bench::Workload::load(&options.workload, Some(40))?;
    let push = by("push_full");
    assert_eq!(push.records, 40);
    assert_eq!(push.changes, Some(workload.changes()));
    assert!(push.bytes_up > 0 && push.raw_bytes_up > push.bytes_up, "{push:?}");
    let pull = by("pull_full");
    assert_eq!(pull.records, 40);
    assert_eq!(pull.record_states, Some(workload.server_records()));
    assert!(pull.bytes_down > 0, "{pull:?}");
    let inc = by("incremental");
    assert_eq!((inc.records, inc.changes), (1, Some(1)));
    let conflict = by("conflict");
    assert_eq!(conflict.records, 2);
    assert_eq!(conflict.conflicts, Some(1), "{conflict:?}");
    assert_eq!(conflict.conflict_outcomes, Some(1), "{conflict:?}");
    assert_eq!(conflict.identical, Some(true), "{conflict:?}");
    for r in &parsed {
        assert!(r.seconds > 0.0 && r.per_second > 0.0, "{r:?}");
        assert!(r.server_peak_rss_mb.is_some_and(|mb| mb > 0.0), "{r:?}");
    }
    Ok(())
}
