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
        photos: bench::photos::PhotoSizes {
            count: 6,
            min_bytes: 20_000,
            max_bytes: 60_000,
        },
        ..Options::standard()
    };
    let mut lines = Vec::new();
    let reports = bench::run(&options, &Scenario::ALL, |r| {
        lines.push(serde_json::to_string(r).unwrap());
    })?;
    assert_eq!(reports.len(), 6);
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
    for name in ["photos", "photos_resume"] {
        let p = by(name);
        assert_eq!(p.photos, Some(6), "{p:?}");
        assert!(p.mb_per_s_up.is_some_and(|m| m > 0.0), "{p:?}");
        // Plain bytes over the wire: no base64, only headers on top.
        assert!(
            p.wire_bytes_per_photo_byte.is_some_and(|w| (1.0..1.2).contains(&w)),
            "{p:?}"
        );
    }
    let photos = by("photos");
    assert!(photos.mb_per_s_down.is_some_and(|m| m > 0.0), "{photos:?}");
    assert!(photos.bytes_down >= photos.photo_bytes.unwrap(), "{photos:?}");
    let resumed = by("photos_resume");
    assert!(
        resumed.bytes_resent.is_some_and(|b| b <= 1024 * 1024),
        "at most a chunk again: {resumed:?}"
    );
    for r in &parsed {
        assert!(r.seconds > 0.0 && r.per_second > 0.0, "{r:?}");
        assert!(r.server_peak_rss_mb.is_some_and(|mb| mb > 0.0), "{r:?}");
        // Read from /proc; a tiny workload may use less than a tick (10 ms).
        assert!(r.server_cpu_s.is_some_and(|s| s >= 0.0), "{r:?}");
        assert!(r.tablets_cpu_s.is_some_and(|s| s >= 0.0), "{r:?}");
    }
    Ok(())
}
