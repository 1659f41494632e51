//! Every rule has a failing and a passing example; the passing one is usually the
//! nearest case that must not trip the rule.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, FixedOffset, NaiveDate};

use super::*;
use crate::geo::Crs;
use crate::ids::{
    AddendumId, DeviceId, DrawId, HazardId, InspectionId, ItemId, ReviewId, Sha256Hex, SiteId, TaskId, UserId,
};
use crate::inspection::{ChecklistAnswer, ChecklistRef, EvidenceKind, TeamMember, TimeSpan, Witness};
use crate::review::{Comment, Correction};
use crate::site::{KeySupervisionUnit, PriorityFlags, ProgressReport, SiteDetails, SiteStatus, TailingsPond};
use crate::task::TaskWindow;
use crate::workflow::{AddendumState, TaskState};

// ---- fixtures -------------------------------------------------------------

const SITE_LAT: f64 = 24.83;
const SITE_LON: f64 = 110.83;

fn at(s: &str) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(s).unwrap()
}

fn day(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

/// A tailings pond in Gongcheng county (恭城, 450332), Guangxi, 300 m radius.
fn pond() -> Site {
    Site {
        id: SiteId::from_name("test", "pond"),
        schema_version: Site::SCHEMA_VERSION,
        name: "某锡矿尾矿库".into(),
        operator: "某矿业公司".into(),
        region_code: "450332".parse().unwrap(),
        location: Some(Location {
            lat: SITE_LAT,
            lon: SITE_LON,
            crs: Crs::Wgs84,
            radius_m: Some(300.0),
            polygon: None,
        }),
        status: SiteStatus::Active,
        details: SiteDetails::TailingsPond(TailingsPond::default()),
        priority: PriorityFlags::default(),
        levels: vec![],
        obligations: vec![],
        progress: vec![],
    }
}

fn key_unit() -> Site {
    Site {
        details: SiteDetails::KeyUnit(KeySupervisionUnit {
            industry: "有色金属冶炼".into(),
            list_year: 2024,
            credit_code: None,
        }),
        ..pond()
    }
}

/// Builds a valid, submitted inspection of [`pond`]; tests break one thing.
struct InspectionBuilder(Inspection);

impl InspectionBuilder {
    fn valid() -> Self {
        let photo = ItemId::from_name("test", "photo-1");
        let answers: BTreeMap<String, ChecklistAnswer> = checklist::template("tailings_pond", 1)
            .unwrap()
            .items
            .iter()
            .map(|it| {
                let answer = ChecklistAnswer {
                    result: ItemResult::Ok,
                    note: String::new(),
                    evidence: if it.code == "TP-09" { vec![photo] } else { vec![] },
                };
                (it.code.to_string(), answer)
            })
            .collect();
        Self(Inspection {
            id: InspectionId::from_name("test", "inspection"),
            schema_version: Inspection::SCHEMA_VERSION,
            site_id: pond().id,
            task_id: None,
            team: vec![
                TeamMember {
                    user_id: None,
                    name: "李明".into(),
                    certificate_no: "桂执0450001".into(),
                },
                TeamMember {
                    user_id: None,
                    name: "黄丽".into(),
                    certificate_no: "桂执0450002".into(),
                },
            ],
            device_id: DeviceId::from_name("test", "tablet"),
            times: TimeSpan {
                start: at("2025-03-10T09:00:00+08:00"),
                end: Some(at("2025-03-10T11:00:00+08:00")),
            },
            fix: Some(GnssFix {
                lat: SITE_LAT + 0.001,
                lon: SITE_LON,
                accuracy_m: 9.0,
                altitude_m: None,
                fix_time: at("2025-03-10T09:05:00+08:00"),
                crs: Crs::Wgs84,
            }),
            checklist: ChecklistRef {
                template_id: "tailings_pond".into(),
                version: 1,
            },
            answers,
            evidence: vec![Evidence {
                id: photo,
                sha256: Sha256Hex::of_bytes(b"photo"),
                kind: EvidenceKind::Photo,
                capture_time: Some(at("2025-03-10T09:30:00+08:00")),
                position: Some(LatLon {
                    lat: SITE_LAT,
                    lon: SITE_LON + 0.001,
                }),
                device_id: None,
                caption: "坝体".into(),
            }],
            conclusion: "未发现问题".into(),
            signoff: Some(Signoff::Signed {
                signer_name: "王强".into(),
                signer_title: "安全主管".into(),
                image_sha256: None,
                signed_at: at("2025-03-10T10:55:00+08:00"),
            }),
            status: InspectionStatus::Submitted,
        })
    }

    fn with(mut self, f: impl FnOnce(&mut Inspection)) -> Self {
        f(&mut self.0);
        self
    }

    fn build(self) -> Inspection {
        self.0
    }
}

fn valid() -> InspectionBuilder {
    InspectionBuilder::valid()
}

/// Validates against the pond, with the default scale and tolerances.
fn check(i: &Inspection) -> Report {
    let site = pond();
    validate_inspection(i, &ValidationContext::default().with_site(&site))
}

fn fields_of(issues: &[Issue], code: IssueCode) -> Vec<&str> {
    issues
        .iter()
        .filter(|i| i.code == code)
        .map(|i| i.field.as_str())
        .collect()
}

#[track_caller]
fn assert_error(r: &Report, code: IssueCode, field: &str) {
    assert!(
        fields_of(&r.errors, code).contains(&field),
        "expected error {code} at {field}, got {r:#?}"
    );
    assert!(!r.is_usable());
}

#[track_caller]
fn assert_flag(r: &Report, code: IssueCode, field: &str) {
    assert!(
        fields_of(&r.flags, code).contains(&field),
        "expected flag {code} at {field}, got {r:#?}"
    );
}

#[track_caller]
fn assert_no(r: &Report, code: IssueCode) {
    assert!(r.issues().all(|i| i.code != code), "unexpected {code}: {r:#?}");
}

fn hazard() -> Hazard {
    Hazard {
        id: HazardId::from_name("test", "hazard"),
        schema_version: Hazard::SCHEMA_VERSION,
        inspection_id: InspectionId::from_name("test", "inspection"),
        site_id: pond().id,
        category: "F-LEAK".into(),
        severity: "high".into(),
        description: "坝体下游坡面渗漏".into(),
        deadline: Some(day("2025-04-10")),
        responsible_party: "某矿业公司".into(),
        evidence: vec![],
        notified_on: None,
        rectification_evidence: vec![],
        verification_evidence: vec![],
        state: HazardState::Notified,
    }
}

fn comment(text: &str) -> Comment {
    Comment {
        id: ItemId::generate(),
        author: UserId::from_name("test", "supervisor"),
        text: text.into(),
        unit: Some("answers/TP-09".into()),
        written_at: at("2025-03-12T10:00:00+08:00"),
    }
}

fn review(decision: Decision, comments: Vec<Comment>) -> Review {
    Review {
        id: ReviewId::generate(),
        schema_version: Review::SCHEMA_VERSION,
        inspection_id: InspectionId::from_name("test", "inspection"),
        reviewer: UserId::from_name("test", "supervisor"),
        decision,
        decided_at: at("2025-03-12T10:00:00+08:00"),
        comments,
    }
}

fn addendum() -> Addendum {
    Addendum {
        id: AddendumId::generate(),
        schema_version: Addendum::SCHEMA_VERSION,
        inspection_id: InspectionId::from_name("test", "inspection"),
        author: UserId::from_name("test", "li"),
        text: "补充：TP-09 渗漏点位于坝脚".into(),
        corrects: Some(Correction {
            unit: "answers/TP-09".into(),
            value: serde_json::json!({"result": "problem", "note": "坝脚渗漏"}),
        }),
        written_at: at("2025-03-11T08:00:00+08:00"),
        state: AddendumState::Pending,
    }
}

fn task() -> Task {
    Task {
        id: TaskId::generate(),
        schema_version: Task::SCHEMA_VERSION,
        site_id: pond().id,
        year: 2025,
        window: TaskWindow {
            earliest_start: day("2025-01-01"),
            due: day("2025-03-31"),
        },
        rule: TaskRule::LevelOnePreFlood,
        assigned: vec![UserId::from_name("test", "li"), UserId::from_name("test", "huang")],
        draw_id: None,
        hidden_until: None,
        note: String::new(),
        state: TaskState::Planned,
    }
}

fn draw() -> RandomDraw {
    let sites: Vec<SiteId> = (0..5).map(|n| SiteId::from_name("pond", &n.to_string())).collect();
    RandomDraw {
        id: DrawId::generate(),
        schema_version: RandomDraw::SCHEMA_VERSION,
        year: 2025,
        region_code: "450300".parse().unwrap(),
        pool_hash: "a".repeat(64),
        pool_size: 9,
        pool: vec![],
        flagged: vec![],
        seed: "18446744073709551615".into(),
        method: "chacha20-v1: flagged first, then Fisher-Yates".into(),
        drawn_sites: sites,
        drawn_inspectors: vec![],
        drawn_by: UserId::from_name("test", "planner"),
        drawn_at: at("2025-01-05T09:00:00+08:00"),
    }
}

fn ctx() -> ValidationContext<'static> {
    ValidationContext::default()
}

// ---- the fixtures themselves ------------------------------------------------

#[test]
fn valid_fixtures_have_no_errors_and_no_flags() {
    let site = pond();
    let c = ctx().with_site(&site);
    for record in [
        AnyRecord::from(valid().build()),
        AnyRecord::from(site.clone()),
        AnyRecord::from(hazard()),
        AnyRecord::from(review(Decision::Return, vec![comment("请补拍渗漏点照片")])),
        AnyRecord::from(addendum()),
        AnyRecord::from(task()),
        AnyRecord::from(draw()),
    ] {
        let r = validate(&record, &c);
        assert!(r.is_clean(), "{:?}: {r:#?}", record.kind());
        assert!(r.is_usable());
    }
}

#[test]
fn every_problem_is_reported_at_once() {
    let i = valid()
        .with(|i| {
            i.fix.as_mut().unwrap().lat = 91.0;
            i.times.end = Some(at("2025-03-10T08:00:00+08:00"));
            i.team.truncate(1);
            i.signoff = None;
        })
        .build();
    let r = check(&i);
    assert_error(&r, IssueCode::LatitudeOutOfRange, "fix.lat");
    assert_flag(&r, IssueCode::EndBeforeStart, "times.end");
    assert_flag(&r, IssueCode::TooFewInspectors, "team");
    assert_flag(&r, IssueCode::MissingSignoff, "signoff");
}

#[test]
fn codes_are_snake_case_and_each_is_an_error_or_a_flag() {
    for code in IssueCode::ALL {
        let json = serde_json::to_string(code).unwrap();
        assert_eq!(json, format!("\"{}\"", code.as_str()));
        assert!(code.as_str().bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
    }
    assert_eq!(IssueCode::WrongType.kind(), IssueKind::Error);
    assert_eq!(IssueCode::OutsideSite.kind(), IssueKind::Flag);
    let mut r = Report::default();
    r.push(Issue::new(IssueCode::ProblemWithoutNote, "answers/TP-01.note", "x"));
    assert!(r.is_usable() && !r.is_clean());
}

// ---- decoding ---------------------------------------------------------------

#[test]
fn a_value_of_the_wrong_type_maps_to_wrong_type_at_the_unit_key() {
    let i = valid().build();
    let mut units = AnyRecord::from(i.clone()).units().unwrap();
    let good: Vec<(&str, &serde_json::value::RawValue)> = units.iter().map(|(k, v)| (k.as_str(), v.as_ref())).collect();
    let decoded = AnyRecord::from_units(RecordKind::Inspection, i.id.into(), Some("submitted"), good);
    assert_eq!(decoded.unwrap(), AnyRecord::Inspection(i.clone()));

    let bad = serde_json::value::to_raw_value(&serde_json::json!({"result": 3})).unwrap();
    units.retain(|(k, _)| k != "answers/TP-01");
    units.push(("answers/TP-01".into(), bad));
    units.sort_by(|a, b| a.0.cmp(&b.0));
    let err = AnyRecord::from_units(
        RecordKind::Inspection,
        i.id.into(),
        None,
        units.iter().map(|(k, v)| (k.as_str(), v.as_ref())),
    )
    .unwrap_err();
    let r = Report::from_layout_error(RecordKind::Inspection, &err);
    assert_error(&r, IssueCode::WrongType, "answers/TP-01.result");
}

#[test]
fn unknown_unit_keys_map_to_unknown_unit() {
    let err = LayoutError::UnknownUnit {
        kind: RecordKind::Inspection,
        key: "colour".into(),
    };
    let r = Report::from_layout_error(RecordKind::Inspection, &err);
    assert_error(&r, IssueCode::UnknownUnit, "colour");
    let err = LayoutError::Invalid {
        field: "fix.lat".into(),
        message: "invalid type".into(),
    };
    assert_error(
        &Report::from_layout_error(RecordKind::Inspection, &err),
        IssueCode::WrongType,
        "fix.lat",
    );
}

// ---- inspection: errors -------------------------------------------------------

#[test]
fn impossible_latitude_or_longitude_is_an_error_but_the_poles_are_not() {
    let r = check(&valid().with(|i| i.fix.as_mut().unwrap().lat = -90.5).build());
    assert_error(&r, IssueCode::LatitudeOutOfRange, "fix.lat");
    let r = check(&valid().with(|i| i.fix.as_mut().unwrap().lon = f64::NAN).build());
    assert_error(&r, IssueCode::LongitudeOutOfRange, "fix.lon");
    let r = check(&valid().with(|i| i.fix.as_mut().unwrap().lon = 180.5).build());
    assert_error(&r, IssueCode::LongitudeOutOfRange, "fix.lon");

    let r = check(
        &valid()
            .with(|i| {
                let fix = i.fix.as_mut().unwrap();
                fix.lat = 90.0;
                fix.lon = -180.0;
            })
            .build(),
    );
    assert!(r.is_usable(), "{r:#?}");
    assert_no(&r, IssueCode::LatitudeOutOfRange);
    assert_no(&r, IssueCode::LongitudeOutOfRange);
}

#[test]
fn negative_or_nan_accuracy_is_an_error_and_zero_is_fine() {
    let r = check(&valid().with(|i| i.fix.as_mut().unwrap().accuracy_m = -1.0).build());
    assert_error(&r, IssueCode::InvalidAccuracy, "fix.accuracy_m");
    let r = check(&valid().with(|i| i.fix.as_mut().unwrap().accuracy_m = f64::NAN).build());
    assert_error(&r, IssueCode::InvalidAccuracy, "fix.accuracy_m");
    let r = check(&valid().with(|i| i.fix.as_mut().unwrap().accuracy_m = 0.0).build());
    assert!(r.is_clean(), "{r:#?}");
}

#[test]
fn end_before_start_is_a_flag_that_keeps_the_record_and_equal_times_are_not() {
    let r = check(
        &valid()
            .with(|i| i.times.end = Some(at("2025-03-10T08:59:59+08:00")))
            .build(),
    );
    // A clock reset mid-visit: kept (usable), shown to the supervisor, and
    // the times are not compared with a window that makes no sense.
    assert_flag(&r, IssueCode::EndBeforeStart, "times.end");
    assert!(r.is_usable(), "{r:#?}");
    assert_no(&r, IssueCode::FixOutsideVisit);
    assert_no(&r, IssueCode::SignoffOutsideVisit);
    // Same instant written in another offset is not before.
    let r = check(
        &valid()
            .with(|i| {
                i.times.end = Some(at("2025-03-10T01:00:00+00:00"));
                i.fix.as_mut().unwrap().fix_time = i.times.start;
                i.evidence[0].capture_time = None;
                i.signoff = None;
                i.status = InspectionStatus::Draft;
            })
            .build(),
    );
    assert!(r.is_clean(), "{r:#?}");
}

#[test]
fn unknown_checklist_template_or_version_is_an_error() {
    let r = check(&valid().with(|i| i.checklist.template_id = "fire_safety".into()).build());
    assert_error(&r, IssueCode::UnknownChecklistTemplate, "checklist.template_id");
    let r = check(&valid().with(|i| i.checklist.version = 99).build());
    assert_error(&r, IssueCode::UnknownChecklistVersion, "checklist.version");
    assert_no(&r, IssueCode::UnknownChecklistTemplate);
    assert!(check(&valid().build()).is_usable());
}

#[test]
fn answer_to_an_item_not_in_the_template_is_a_flag() {
    let r = check(
        &valid()
            .with(|i| {
                let a = i.answers["TP-01"].clone();
                i.answers.insert("KU-01".into(), a);
            })
            .build(),
    );
    assert_flag(&r, IssueCode::UnknownChecklistItem, "answers/KU-01");
    assert!(r.errors.is_empty(), "{r:#?}");
}

#[test]
fn checklist_for_another_site_kind_is_an_error_when_the_site_is_known() {
    let i = valid().build();
    let site = key_unit();
    let r = validate_inspection(&i, &ctx().with_site(&site));
    assert_error(&r, IssueCode::ChecklistForOtherSiteKind, "checklist.template_id");
    // Unknown site: nothing to compare with.
    let r = validate_inspection(&i, &ctx());
    assert_no(&r, IssueCode::ChecklistForOtherSiteKind);
    // A site that is not the record's is not used.
    let other = Site {
        id: SiteId::generate(),
        ..key_unit()
    };
    let r = validate_inspection(&i, &ctx().with_site(&other));
    assert_no(&r, IssueCode::ChecklistForOtherSiteKind);
}

#[test]
fn answer_citing_evidence_not_in_the_record_is_a_flag() {
    let r = check(
        &valid()
            .with(|i| {
                i.answers.get_mut("TP-03").unwrap().evidence.push(ItemId::generate());
            })
            .build(),
    );
    assert_flag(&r, IssueCode::UnknownEvidence, "answers/TP-03.evidence");
    assert!(r.errors.is_empty(), "{r:#?}");
    // The fixture's TP-09 cites the photo that is in the record.
    assert_no(&check(&valid().build()), IssueCode::UnknownEvidence);
}

#[test]
fn team_member_without_certificate_is_a_flag() {
    let r = check(&valid().with(|i| i.team[1].certificate_no = "  ".into()).build());
    assert_flag(&r, IssueCode::MissingCertificate, "team[1].certificate_no");
    assert!(r.is_usable(), "{r:#?}");
    assert_no(&check(&valid().build()), IssueCode::MissingCertificate);
}

#[test]
fn empty_inspector_name_is_an_error() {
    let r = check(&valid().with(|i| i.team[0].name = String::new()).build());
    assert_error(&r, IssueCode::EmptyRequiredText, "team[0].name");
}

#[test]
fn refusal_needs_a_reason_and_a_witness_and_a_signature_needs_a_name() {
    let refused = |reason: &str, witness: &str| {
        valid()
            .with(|i| {
                i.signoff = Some(Signoff::Refused {
                    reason: reason.into(),
                    witness: Witness {
                        name: witness.into(),
                        role: "村委会主任".into(),
                    },
                    recorded_at: at("2025-03-10T10:50:00+08:00"),
                })
            })
            .build()
    };
    let r = check(&refused("", ""));
    assert_flag(&r, IssueCode::RefusalWithoutReason, "signoff.reason");
    assert_flag(&r, IssueCode::RefusalWithoutWitness, "signoff.witness.name");
    assert!(r.is_usable(), "a refusal without them is kept: {r:#?}");
    let r = check(&refused("负责人拒绝签字", "张三"));
    assert!(r.is_clean(), "{r:#?}");

    let r = check(
        &valid()
            .with(|i| {
                if let Some(Signoff::Signed { signer_name, .. }) = &mut i.signoff {
                    signer_name.clear();
                }
            })
            .build(),
    );
    assert_error(&r, IssueCode::EmptyRequiredText, "signoff.signer_name");
}

#[test]
fn impossible_evidence_position_is_an_error() {
    let i = valid()
        .with(|i| i.evidence[0].position = Some(LatLon { lat: 24.8, lon: 200.0 }))
        .build();
    let id = i.evidence[0].id;
    let r = check(&i);
    assert_error(
        &r,
        IssueCode::LongitudeOutOfRange,
        &format!("evidence/{id}.position.lon"),
    );
}

// ---- inspection: flags ---------------------------------------------------------

#[test]
fn fewer_than_two_inspectors_is_flagged_not_refused() {
    let r = check(&valid().with(|i| i.team.truncate(1)).build());
    assert_flag(&r, IssueCode::TooFewInspectors, "team");
    assert!(r.is_usable());
    assert_no(&check(&valid().build()), IssueCode::TooFewInspectors);
}

#[test]
fn two_members_with_one_certificate_count_as_one_inspector() {
    let r = check(
        &valid()
            .with(|i| i.team[1].certificate_no = i.team[0].certificate_no.clone())
            .build(),
    );
    assert_flag(&r, IssueCode::DuplicateCertificate, "team[1].certificate_no");
    assert_flag(&r, IssueCode::TooFewInspectors, "team");
    assert!(r.is_usable());
}

#[test]
fn minimum_team_size_is_configurable() {
    let site = pond();
    let c = ValidationContext {
        min_inspectors: 3,
        ..ctx().with_site(&site)
    };
    assert_flag(
        &validate_inspection(&valid().build(), &c),
        IssueCode::TooFewInspectors,
        "team",
    );
}

#[test]
fn fix_outside_china_is_flagged_not_refused() {
    // Bangkok: possible, but outside China's box (Hanoi would be inside it).
    let r = check(
        &valid()
            .with(|i| {
                let fix = i.fix.as_mut().unwrap();
                fix.lat = 13.75;
                fix.lon = 100.50;
            })
            .build(),
    );
    assert_flag(&r, IssueCode::OutsideChina, "fix");
    assert!(r.is_usable());
    assert_no(&check(&valid().build()), IssueCode::OutsideChina);
}

#[test]
fn fix_outside_the_site_province_is_flagged() {
    // Guangzhou: in China, not in Guangxi.
    let r = check(
        &valid()
            .with(|i| {
                let fix = i.fix.as_mut().unwrap();
                fix.lat = 23.13;
                fix.lon = 113.26;
            })
            .build(),
    );
    assert_flag(&r, IssueCode::OutsideProvince, "fix");
    assert_no(&r, IssueCode::OutsideChina);
    assert!(r.is_usable());
    assert_no(&check(&valid().build()), IssueCode::OutsideProvince);
}

#[test]
fn fix_outside_the_site_radius_is_flagged_with_the_distance_and_accuracy() {
    // About 0.03° north: ~3.3 km from the centre, ~3.0 km outside the 300 m radius.
    let r = check(&valid().with(|i| i.fix.as_mut().unwrap().lat = SITE_LAT + 0.03).build());
    assert_flag(&r, IssueCode::OutsideSite, "fix");
    let msg = &r
        .flags
        .iter()
        .find(|f| f.code == IssueCode::OutsideSite)
        .unwrap()
        .message;
    assert!(
        msg.contains("km outside the site radius") && msg.contains("accuracy 9 m"),
        "{msg}"
    );
    assert!(r.is_usable());
}

#[test]
fn fix_just_outside_the_radius_but_within_accuracy_and_tolerance_is_not_flagged() {
    // ~660 m from the centre: 360 m outside the radius, under 500 m tolerance.
    let r = check(&valid().with(|i| i.fix.as_mut().unwrap().lat = SITE_LAT + 0.006).build());
    assert_no(&r, IssueCode::OutsideSite);
    // With no tolerance the same fix is flagged, and a large accuracy excuses it again.
    let site = pond();
    let strict = ValidationContext {
        on_site_tolerance_m: 0.0,
        ..ctx().with_site(&site)
    };
    let i = valid().with(|i| i.fix.as_mut().unwrap().lat = SITE_LAT + 0.006).build();
    assert_flag(&validate_inspection(&i, &strict), IssueCode::OutsideSite, "fix");
    let i = valid()
        .with(|i| {
            let fix = i.fix.as_mut().unwrap();
            fix.lat = SITE_LAT + 0.006;
            fix.accuracy_m = 400.0;
        })
        .build();
    assert_no(&validate_inspection(&i, &strict), IssueCode::OutsideSite);
}

#[test]
fn fix_outside_the_site_polygon_is_flagged() {
    let mut site = pond();
    let loc = site.location.as_mut().unwrap();
    loc.polygon = Some(vec![
        LatLon {
            lat: 24.82,
            lon: 110.82,
        },
        LatLon {
            lat: 24.82,
            lon: 110.84,
        },
        LatLon {
            lat: 24.84,
            lon: 110.84,
        },
        LatLon {
            lat: 24.84,
            lon: 110.82,
        },
    ]);
    let c = ctx().with_site(&site);
    assert_no(&validate_inspection(&valid().build(), &c), IssueCode::OutsideSite);
    let far = valid().with(|i| i.fix.as_mut().unwrap().lon = 110.90).build();
    let r = validate_inspection(&far, &c);
    assert_flag(&r, IssueCode::OutsideSite, "fix");
    assert!(r.flags.iter().any(|f| f.message.contains("site polygon")), "{r:#?}");
}

#[test]
fn missing_fix_on_a_submitted_inspection_is_flagged_but_not_on_a_draft() {
    let r = check(&valid().with(|i| i.fix = None).build());
    assert_flag(&r, IssueCode::MissingFix, "fix");
    let r = check(
        &valid()
            .with(|i| {
                i.fix = None;
                i.status = InspectionStatus::Draft;
            })
            .build(),
    );
    assert_no(&r, IssueCode::MissingFix);
}

#[test]
fn fix_taken_outside_the_visit_window_is_flagged_allowing_the_tolerance() {
    let r = check(
        &valid()
            .with(|i| i.fix.as_mut().unwrap().fix_time = at("2025-03-10T08:30:00+08:00"))
            .build(),
    );
    assert_flag(&r, IssueCode::FixOutsideVisit, "fix.fix_time");
    let r = check(
        &valid()
            .with(|i| i.fix.as_mut().unwrap().fix_time = at("2025-03-10T11:20:00+08:00"))
            .build(),
    );
    assert_flag(&r, IssueCode::FixOutsideVisit, "fix.fix_time");
    // Ten minutes early is within the 15-minute slack.
    let r = check(
        &valid()
            .with(|i| i.fix.as_mut().unwrap().fix_time = at("2025-03-10T08:50:00+08:00"))
            .build(),
    );
    assert_no(&r, IssueCode::FixOutsideVisit);
}

#[test]
fn missing_end_time_is_flagged_on_a_submitted_record_only() {
    let r = check(&valid().with(|i| i.times.end = None).build());
    assert_flag(&r, IssueCode::MissingEndTime, "times.end");
    assert!(r.is_usable());
    let r = check(
        &valid()
            .with(|i| {
                i.times.end = None;
                i.status = InspectionStatus::Draft;
            })
            .build(),
    );
    assert_no(&r, IssueCode::MissingEndTime);
}

#[test]
fn submitting_context_judges_a_draft_as_submitted() {
    let draft = valid()
        .with(|i| {
            i.status = InspectionStatus::Draft;
            i.signoff = None;
        })
        .build();
    let site = pond();
    assert_no(
        &validate_inspection(&draft, &ctx().with_site(&site)),
        IssueCode::MissingSignoff,
    );
    let r = validate_inspection(&draft, &ctx().with_site(&site).submitting());
    assert_flag(&r, IssueCode::MissingSignoff, "signoff");
}

#[test]
fn submitted_without_signoff_is_flagged_not_refused() {
    let r = check(&valid().with(|i| i.signoff = None).build());
    assert_flag(&r, IssueCode::MissingSignoff, "signoff");
    assert!(r.is_usable());
    assert_no(&check(&valid().build()), IssueCode::MissingSignoff);
}

#[test]
fn signoff_outside_the_visit_window_is_flagged() {
    let r = check(
        &valid()
            .with(|i| {
                if let Some(Signoff::Signed { signed_at, .. }) = &mut i.signoff {
                    *signed_at = at("2025-03-11T09:00:00+08:00");
                }
            })
            .build(),
    );
    assert_flag(&r, IssueCode::SignoffOutsideVisit, "signoff.signed_at");
    assert_no(&check(&valid().build()), IssueCode::SignoffOutsideVisit);
}

#[test]
fn problem_answer_without_note_is_flagged_not_refused() {
    let r = check(
        &valid()
            .with(|i| i.answers.get_mut("TP-09").unwrap().result = ItemResult::Problem)
            .build(),
    );
    assert_flag(&r, IssueCode::ProblemWithoutNote, "answers/TP-09.note");
    assert!(r.is_usable());
    let r = check(
        &valid()
            .with(|i| {
                let a = i.answers.get_mut("TP-09").unwrap();
                a.result = ItemResult::Problem;
                a.note = "坝脚渗漏".into();
            })
            .build(),
    );
    assert_no(&r, IssueCode::ProblemWithoutNote);
}

#[test]
fn unanswered_items_are_flagged_on_submission() {
    let r = check(
        &valid()
            .with(|i| {
                i.answers.remove("TP-05");
                i.answers.remove("TP-06");
            })
            .build(),
    );
    assert_flag(&r, IssueCode::UnansweredItems, "answers");
    assert!(
        r.flags
            .iter()
            .any(|f| f.message.contains("2 of 20") && f.message.contains("TP-05"))
    );
    let r = check(
        &valid()
            .with(|i| {
                i.answers.remove("TP-05");
                i.status = InspectionStatus::Draft;
            })
            .build(),
    );
    assert_no(&r, IssueCode::UnansweredItems);
}

#[test]
fn evidence_captured_outside_the_visit_is_flagged_allowing_the_tolerance() {
    let i = valid()
        .with(|i| i.evidence[0].capture_time = Some(at("2025-03-09T15:00:00+08:00")))
        .build();
    let id = i.evidence[0].id;
    assert_flag(
        &check(&i),
        IssueCode::EvidenceOutsideVisit,
        &format!("evidence/{id}.capture_time"),
    );
    let i = valid()
        .with(|i| i.evidence[0].capture_time = Some(at("2025-03-10T11:14:00+08:00")))
        .build();
    assert_no(&check(&i), IssueCode::EvidenceOutsideVisit);
}

#[test]
fn evidence_away_from_the_site_is_flagged() {
    let i = valid()
        .with(|i| {
            i.evidence[0].position = Some(LatLon {
                lat: 25.27,
                lon: 110.29,
            })
        })
        .build();
    let id = i.evidence[0].id;
    assert_flag(
        &check(&i),
        IssueCode::EvidenceAwayFromSite,
        &format!("evidence/{id}.position"),
    );
    assert_no(&check(&valid().build()), IssueCode::EvidenceAwayFromSite);
}

#[test]
fn evidence_away_from_the_fix_is_flagged_when_the_site_is_unknown() {
    let i = valid()
        .with(|i| {
            i.evidence[0].position = Some(LatLon {
                lat: 25.27,
                lon: 110.29,
            })
        })
        .build();
    let id = i.evidence[0].id;
    let r = validate_inspection(&i, &ctx());
    assert_flag(&r, IssueCode::EvidenceAwayFromSite, &format!("evidence/{id}.position"));
    assert_no(
        &validate_inspection(&valid().build(), &ctx()),
        IssueCode::EvidenceAwayFromSite,
    );
}

// ---- hazard -----------------------------------------------------------------------

#[test]
fn hazard_without_description_or_category_is_an_error() {
    let r = validate_hazard(
        &Hazard {
            description: " ".into(),
            category: String::new(),
            ..hazard()
        },
        &ctx(),
    );
    assert_error(&r, IssueCode::EmptyRequiredText, "description");
    assert_error(&r, IssueCode::EmptyRequiredText, "category");
    assert!(validate_hazard(&hazard(), &ctx()).is_clean());
}

#[test]
fn severity_outside_the_configured_scale_is_flagged_and_the_hazard_kept() {
    let h = Hazard {
        severity: "major".into(),
        ..hazard()
    };
    let r = validate_hazard(&h, &ctx());
    assert_flag(&r, IssueCode::UnknownSeverity, "severity");
    assert!(r.is_usable(), "{r:#?}");
    let empty = Hazard {
        severity: " ".into(),
        ..hazard()
    };
    assert_error(
        &validate_hazard(&empty, &ctx()),
        IssueCode::EmptyRequiredText,
        "severity",
    );
    let scale = SeverityScale::general_major();
    assert!(validate_hazard(&h, &ValidationContext::new(&scale)).is_clean());
}

#[test]
fn notified_hazard_without_deadline_or_responsible_party_is_flagged() {
    let h = Hazard {
        deadline: None,
        responsible_party: String::new(),
        ..hazard()
    };
    let r = validate_hazard(&h, &ctx());
    assert_flag(&r, IssueCode::MissingDeadline, "deadline");
    assert_flag(&r, IssueCode::MissingResponsibleParty, "responsible_party");
    assert!(r.is_usable());
    // Just identified: not known yet.
    let h = Hazard {
        state: HazardState::Identified,
        ..h
    };
    assert!(validate_hazard(&h, &ctx()).is_clean());
}

#[test]
fn hazard_evidence_with_impossible_position_is_an_error() {
    let ev = valid().build().evidence[0].clone();
    let id = ev.id;
    let bad = Evidence {
        position: Some(LatLon { lat: 95.0, lon: 110.0 }),
        ..ev.clone()
    };
    let r = validate_hazard(
        &Hazard {
            evidence: vec![bad],
            ..hazard()
        },
        &ctx(),
    );
    assert_error(
        &r,
        IssueCode::LatitudeOutOfRange,
        &format!("evidence/{id}.position.lat"),
    );
    let site = pond();
    let r = validate_hazard(
        &Hazard {
            evidence: vec![ev],
            ..hazard()
        },
        &ctx().with_site(&site),
    );
    assert!(r.is_clean(), "{r:#?}");
}

// ---- review and addendum -------------------------------------------------------------

#[test]
fn return_without_comments_is_flagged_not_refused() {
    let r = validate_review(&review(Decision::Return, vec![]), &ctx());
    assert_flag(&r, IssueCode::ReturnWithoutComments, "comments");
    assert!(r.is_usable());
    assert!(validate_review(&review(Decision::Approve, vec![]), &ctx()).is_clean());
    assert!(validate_review(&review(Decision::Return, vec![comment("请补充")]), &ctx()).is_clean());
}

#[test]
fn empty_comment_text_is_an_error() {
    let c = comment("");
    let id = c.id;
    let r = validate_review(&review(Decision::Approve, vec![c]), &ctx());
    assert_error(&r, IssueCode::EmptyRequiredText, &format!("comments/{id}.text"));
}

#[test]
fn addendum_needs_text_and_a_real_inspection_unit() {
    let r = validate_addendum(
        &Addendum {
            text: String::new(),
            ..addendum()
        },
        &ctx(),
    );
    assert_error(&r, IssueCode::EmptyRequiredText, "text");
    let bad = Addendum {
        corrects: Some(Correction {
            unit: "colour".into(),
            value: serde_json::Value::Null,
        }),
        ..addendum()
    };
    assert_error(
        &validate_addendum(&bad, &ctx()),
        IssueCode::UnknownUnit,
        "corrects.unit",
    );
    assert!(
        validate_addendum(
            &Addendum {
                corrects: None,
                ..addendum()
            },
            &ctx()
        )
        .is_clean()
    );
}

// ---- site --------------------------------------------------------------------------

#[test]
fn site_with_impossible_location_or_empty_name_is_an_error() {
    let mut s = pond();
    s.name = String::new();
    s.location.as_mut().unwrap().lat = 124.0;
    let r = validate_site(&s, &ctx());
    assert_error(&r, IssueCode::EmptyRequiredText, "name");
    assert_error(&r, IssueCode::LatitudeOutOfRange, "location.lat");
    assert!(validate_site(&pond(), &ctx()).is_clean());
}

#[test]
fn site_located_outside_its_province_or_china_is_flagged() {
    let mut s = pond();
    let loc = s.location.as_mut().unwrap();
    loc.lat = 23.13;
    loc.lon = 113.26;
    assert_flag(&validate_site(&s, &ctx()), IssueCode::OutsideProvince, "location");
    let loc = s.location.as_mut().unwrap();
    loc.lat = 1.29;
    loc.lon = 103.85;
    let r = validate_site(&s, &ctx());
    assert_flag(&r, IssueCode::OutsideChina, "location");
    assert!(r.is_usable());
    // A province whose box we do not know is not flagged.
    let mut s = pond();
    s.region_code = "440103".parse().unwrap();
    assert!(validate_site(&s, &ctx()).is_clean());
}

#[test]
fn negative_radius_and_degenerate_polygon_are_errors() {
    let mut s = pond();
    let loc = s.location.as_mut().unwrap();
    loc.radius_m = Some(-5.0);
    loc.polygon = Some(vec![LatLon { lat: 24.8, lon: 110.8 }, LatLon { lat: 24.9, lon: 110.8 }]);
    let r = validate_site(&s, &ctx());
    assert_error(&r, IssueCode::InvalidRadius, "location.radius_m");
    assert_error(&r, IssueCode::DegeneratePolygon, "location.polygon");
    let mut s = pond();
    s.location.as_mut().unwrap().radius_m = Some(0.0);
    assert!(validate_site(&s, &ctx()).is_clean());
}

#[test]
fn progress_percent_outside_0_to_100_is_an_error() {
    let report = |pct: f64| ProgressReport {
        id: ItemId::from_name("test", &pct.to_string()),
        reported_at: at("2025-06-30T12:00:00+08:00"),
        percent_done: Some(pct),
        note: String::new(),
    };
    let bad = report(120.0);
    let id = bad.id;
    let s = Site {
        progress: vec![bad, report(100.0), report(0.0)],
        ..pond()
    };
    let r = validate_site(&s, &ctx());
    assert_error(&r, IssueCode::PercentOutOfRange, &format!("progress/{id}.percent_done"));
    assert_eq!(r.errors.len(), 1);
}

// ---- task and draw -----------------------------------------------------------------

#[test]
fn task_due_before_its_earliest_start_is_an_error() {
    let mut t = task();
    t.window.due = day("2024-12-31");
    assert_error(
        &validate_task(&t, &ctx()),
        IssueCode::WindowEndsBeforeStart,
        "window.due",
    );
    // A one-day window is fine.
    t.window.due = t.window.earliest_start;
    assert!(validate_task(&t, &ctx()).is_clean());
}

#[test]
fn task_with_fewer_than_two_distinct_assignees_is_flagged_not_refused() {
    let mut t = task();
    t.assigned = vec![t.assigned[0], t.assigned[0]];
    let r = validate_task(&t, &ctx());
    assert_flag(&r, IssueCode::TooFewAssignees, "assigned");
    assert!(r.is_usable());
}

#[test]
fn drawn_task_hidden_past_due_or_without_draw_is_flagged() {
    let mut t = task();
    t.rule = TaskRule::LevelThreeDrawn;
    t.hidden_until = Some(day("2025-04-01"));
    let r = validate_task(&t, &ctx());
    assert_flag(&r, IssueCode::DrawnTaskWithoutDraw, "draw_id");
    assert_flag(&r, IssueCode::HiddenPastDue, "hidden_until");
    t.draw_id = Some(DrawId::generate());
    t.hidden_until = Some(t.window.due);
    assert!(validate_task(&t, &ctx()).is_clean());
}

#[test]
fn draw_that_cannot_be_rerun_is_an_error() {
    let d = RandomDraw {
        pool_hash: "A".repeat(64),
        seed: "-1".into(),
        method: String::new(),
        ..draw()
    };
    let r = validate_random_draw(&d, &ctx());
    assert_error(&r, IssueCode::InvalidPoolHash, "pool_hash");
    assert_error(&r, IssueCode::InvalidSeed, "seed");
    assert_error(&r, IssueCode::EmptyRequiredText, "method");
}

#[test]
fn draw_of_more_sites_than_the_pool_or_of_a_site_twice_is_an_error() {
    let mut d = draw();
    d.pool_size = 4;
    let r = validate_random_draw(&d, &ctx());
    assert_error(&r, IssueCode::DrawExceedsPool, "drawn_sites");
    let mut d = draw();
    d.drawn_sites[4] = d.drawn_sites[0];
    assert_error(
        &validate_random_draw(&d, &ctx()),
        IssueCode::DuplicateDrawnSite,
        "drawn_sites[4]",
    );
}

#[test]
fn draw_below_half_the_pool_is_flagged_and_exactly_half_is_not() {
    let d = RandomDraw {
        pool_size: 11,
        ..draw()
    };
    let r = validate_random_draw(&d, &ctx());
    assert_flag(&r, IssueCode::DrawBelowHalfPool, "drawn_sites");
    assert!(r.is_usable());
    assert!(
        validate_random_draw(
            &RandomDraw {
                pool_size: 10,
                ..draw()
            },
            &ctx()
        )
        .is_clean()
    );
}

#[test]
fn time_tolerance_is_configurable() {
    let i = valid()
        .with(|i| i.fix.as_mut().unwrap().fix_time = at("2025-03-10T08:50:00+08:00"))
        .build();
    let site = pond();
    let c = ValidationContext {
        time_tolerance: Duration::minutes(5),
        ..ctx().with_site(&site)
    };
    assert_flag(&validate_inspection(&i, &c), IssueCode::FixOutsideVisit, "fix.fix_time");
}
