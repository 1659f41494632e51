//! Merge throughput: decoded versions applied to in-memory records with conflict
//! bookkeeping, and a 500-change push batch through the full rules.
//! `cargo bench -p sync-protocol --bench merge`

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use mobile_schema::ids::{DeviceId, InspectionId, RecordId, SiteId, UserId};
use mobile_schema::record::{AnyRecord, RecordKind};
use mobile_schema::sample;
use mobile_schema::workflow::Role;
use sync_protocol::change::{Actor, Change, Op, UnitWrite};
use sync_protocol::engine::EngineConfig;
use sync_protocol::outcome::Outcome;
use sync_protocol::reference::ReferenceServer;
use sync_protocol::state::VersionMeta;
use sync_protocol::unit::LiveVersion;
use sync_protocol::{Hlc, RecordState, ReplicaId, UnitValue, VersionId};
use uuid::Uuid;

const RECORDS: usize = 1_000;
const KEYS: [&str; 8] = [
    "conclusion",
    "fix",
    "times",
    "team",
    "answers/TP-01",
    "answers/TP-02",
    "answers/TP-03",
    "signoff",
];

/// 100k versions over 1,000 records: each unit gets a chain of edits from two
/// replicas, half of them concurrent (a conflict) and then resolved.
fn versions() -> Vec<(usize, &'static str, LiveVersion, Vec<VersionId>)> {
    let value = UnitValue::parse("\"现场检查发现坝体局部渗水\"".into()).unwrap_or_else(|_| UnitValue::null());
    let ra = ReplicaId(Uuid::from_u128(1));
    let rb = ReplicaId(Uuid::from_u128(2));
    let mut out = Vec::new();
    let mut seq = [0u64; 2];
    for round in 0..12u64 {
        for r in 0..RECORDS {
            for key in KEYS.iter().take(if round % 2 == 0 { 8 } else { 4 }) {
                let who = (r + round as usize) % 2;
                seq[who] += 1;
                let id = VersionId::new(if who == 0 { ra } else { rb }, seq[who]);
                let bases = if round == 0 {
                    vec![]
                } else {
                    vec![VersionId::new(ra, seq[0].saturating_sub(1))]
                };
                out.push((
                    r,
                    *key,
                    LiveVersion {
                        id,
                        hlc: Hlc::new(1_700_000_000_000 + round, 0),
                        value: value.clone(),
                    },
                    bases,
                ));
            }
        }
    }
    out
}

fn apply_versions(c: &mut Criterion) {
    let input = versions();
    let meta = VersionMeta {
        user: UserId(Uuid::from_u128(7)),
        device: DeviceId(Uuid::from_u128(8)),
        hlc: Hlc::new(1, 0),
        received_ms: 0,
    };
    let mut g = c.benchmark_group("merge");
    g.throughput(Throughput::Elements(input.len() as u64));
    g.bench_function(format!("apply_{}_versions", input.len()), |b| {
        b.iter_batched(
            || {
                let records: Vec<RecordState> = (0..RECORDS)
                    .map(|i| RecordState::new(RecordKind::Inspection, RecordId(Uuid::from_u128(i as u128))))
                    .collect();
                (records, input.clone())
            },
            |(mut records, input)| {
                let mut conflicts = 0usize;
                for (r, key, v, bases) in input {
                    let rec = &mut records[r];
                    rec.apply(key, v, &bases, meta);
                    conflicts += usize::from(rec.units.get(key).is_some_and(|u| u.in_conflict()));
                }
                (records, conflicts)
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn push_batch(c: &mut Criterion) {
    let site = SiteId(Uuid::from_u128(0x5000));
    let actor = Actor {
        replica: ReplicaId(Uuid::from_u128(0x1000)),
        user: UserId(Uuid::from_u128(0x2000)),
        device: DeviceId(Uuid::from_u128(0x3000)),
        role: Role::Inspector,
    };
    let mut seed = ReferenceServer::new(EngineConfig::default());
    let site_doc = UnitValue::of(&AnyRecord::Site(sample::pond(site))).unwrap_or_else(|_| UnitValue::null());
    let setup = Change {
        seq: 1,
        hlc: Hlc::new(1_746_500_000_000, 0),
        kind: RecordKind::Site,
        record: site.into(),
        op: Op::Create {
            record: site_doc,
            versions: None,
        },
    };
    seed.push(&actor, &[setup], 1_746_500_000_000);
    let changes: Vec<Change> = (0..500u64)
        .map(|i| {
            let id = InspectionId(Uuid::from_u128(0x6000 + u128::from(i)));
            let doc = serde_json::to_value(sample::inspection(id, site, actor.device)).unwrap_or_default();
            Change {
                seq: i + 2,
                hlc: Hlc::new(1_746_500_000_000 + i, 0),
                kind: RecordKind::Inspection,
                record: id.into(),
                op: Op::Create {
                    record: UnitValue::of(&doc).unwrap_or_else(|_| UnitValue::null()),
                    versions: None,
                },
            }
        })
        .collect();
    // Then one edit of each: the path most of a tablet's changes take.
    let edits: Vec<Change> = changes
        .iter()
        .map(|create| Change {
            seq: create.seq + 500,
            hlc: Hlc::new(create.hlc.ms + 1_000, 0),
            kind: RecordKind::Inspection,
            record: create.record,
            op: Op::Edit {
                units: vec![UnitWrite {
                    key: "conclusion".into(),
                    bases: vec![VersionId::new(actor.replica, create.seq)],
                    value: UnitValue::of(&"复查已整改到位").unwrap_or_else(|_| UnitValue::null()),
                }],
            },
        })
        .collect();
    let mut created = seed.clone();
    created.push(&actor, &changes, 1_746_500_000_000);
    let mut g = c.benchmark_group("push");
    g.throughput(Throughput::Elements(changes.len() as u64));
    for (name, seed, batch, now_ms) in [
        ("reference_push_500_creates", &seed, &changes, 1_746_500_000_000),
        ("reference_push_500_edits", &created, &edits, 1_746_500_001_000),
    ] {
        g.bench_function(name, |b| {
            b.iter_batched(
                || seed.clone(),
                |mut server| {
                    let reply = server.push(&actor, batch, now_ms);
                    let applied = reply
                        .outcomes
                        .iter()
                        .filter(|o| matches!(o.outcome, Outcome::Applied { .. }))
                        .count();
                    assert_eq!(applied, batch.len(), "every change is applied");
                    server
                },
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(std::time::Duration::from_secs(3));
    targets = apply_versions, push_batch
}
criterion_main!(benches);
