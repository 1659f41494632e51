//! The national list size: 7,820 ponds (76 一级, 2,109 二级, 5,635 三级) across
//! 300 counties, 2,000 inspectors. Target: one generation under 100 ms.

use chrono::NaiveDate;
use criterion::{Criterion, criterion_group, criterion_main};
use mobile_schema::ids::{ItemId, SiteId, UserId};
use mobile_schema::region::RegionCode;
use mobile_schema::schedule::{FloodCalendar, Inspector, ScheduleRequest, generate};
use mobile_schema::site::{
    LevelAssignment, PriorityFlags, Site, SiteDetails, SiteStatus, SupervisionLevel, TailingsPond,
};

/// 300 county codes: 30 cities of 10 counties, in one province so that one
/// request covers them all (the codes need not exist; only their shape matters).
fn counties() -> Vec<RegionCode> {
    let mut out = Vec::new();
    for city in 1..=30u32 {
        for county in 1..=10u32 {
            if let Ok(code) = RegionCode::new(450_000 + city * 100 + county) {
                out.push(code);
            }
        }
    }
    out
}

fn sites(counties: &[RegionCode]) -> Vec<Site> {
    let effective = NaiveDate::from_ymd_opt(2025, 1, 1).unwrap_or(NaiveDate::MIN);
    (0..7_820usize)
        .map(|n| {
            let level = match n {
                0..76 => SupervisionLevel::One,
                76..2185 => SupervisionLevel::Two,
                _ => SupervisionLevel::Three,
            };
            Site {
                id: SiteId::from_name("bench-pond", &n.to_string()),
                schema_version: 1,
                name: format!("尾矿库{n}"),
                operator: "公司".into(),
                region_code: counties[n % counties.len()],
                location: None,
                status: SiteStatus::Active,
                details: SiteDetails::TailingsPond(TailingsPond::default()),
                priority: PriorityFlags {
                    public_complaints: n % 17 == 0,
                    ..PriorityFlags::default()
                },
                levels: vec![LevelAssignment {
                    id: ItemId::from_name("bench-level", &n.to_string()),
                    year: 2025,
                    level,
                    effective_from: effective,
                    source_document: "清单".into(),
                    reason: String::new(),
                }],
                obligations: vec![],
                progress: vec![],
            }
        })
        .collect()
}

fn inspectors(counties: &[RegionCode], sites: &[Site]) -> Vec<Inspector> {
    (0..2_000usize)
        .map(|n| Inspector {
            id: UserId::from_name("bench-user", &n.to_string()),
            region: counties[n % counties.len()],
            // A few recusals, as in life.
            recused_from: if n % 50 == 0 { vec![sites[n].id] } else { vec![] },
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let counties = counties();
    let sites = sites(&counties);
    let inspectors = inspectors(&counties, &sites);
    let flood = FloodCalendar::new();
    let drawn_at = "2025-01-02T09:00:00+08:00".parse().unwrap_or_default();
    let req = ScheduleRequest {
        year: 2025,
        jurisdiction: RegionCode::new(450_000).unwrap_or(counties[0]),
        generated_on: NaiveDate::from_ymd_opt(2025, 1, 2).unwrap_or(NaiveDate::MIN),
        sites: &sites,
        flood: &flood,
        intensified: &[],
        periodic: &[],
        inspectors: &inspectors,
        seed: 20250101,
        drawn_by: UserId::from_name("bench-user", "planner"),
        drawn_at,
        hidden_salt: "bench",
    };
    let schedule = generate(&req);
    // 76 × 2 + 2,109 + at least half of the 5,635 三级.
    assert!(
        matches!(&schedule, Ok(s) if s.tasks.len() >= 76 * 2 + 2_109 + 5_635 / 2 && s.draws.len() == 300),
        "{:?}",
        schedule.map(|s| s.tasks.len())
    );
    c.bench_function("generate_7820_ponds_300_counties_2000_inspectors", |b| {
        b.iter(|| generate(std::hint::black_box(&req)).map(|s| s.tasks.len()))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
