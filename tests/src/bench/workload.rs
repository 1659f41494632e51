//! The standard workload (`fixtures/bench/WORKLOAD.md`) mapped into the
//! project's records, deterministically: the same line always gives the same
//! records, byte for byte.
//!
//! - Each line is one [`Inspection`] (`_id` is its id), created by the device
//!   named in `device_id`, then submitted (the lines are `submitted`, unsigned).
//! - Checklist codes `TP-nn`, `KU-nn`, `RS-nn` are answers of the matching
//!   template; `ok` → `ok`, `issue` → `problem`, `na` → `not_applicable`.
//! - Each finding is a [`Hazard`] of the inspection (its code the category, its
//!   severity a level of the configured low…critical scale), with the finding's
//!   photos as evidence; the inspection's evidence is every photo its findings cite.
//!   The photos' bytes are not part of these scenarios: their SHA-256 is derived
//!   from the photo id.
//! - The sites are [`Site`] records in one of five Guangxi counties chosen by
//!   site id; the bureau creates them before the tablets go out.
//! - The team is the line's inspector and a second inspector working in the
//!   site's county (inspector `n` works in county `(n - 1) mod 5`), each with a
//!   certificate number derived from the inspector number.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::BufRead;
use std::path::Path;

use anyhow::{Context, bail};
use chrono::{DateTime, FixedOffset, Offset as _};
use mobile_schema::checklist;
use mobile_schema::geo::{Crs, GnssFix};
use mobile_schema::hazard::Hazard;
use mobile_schema::ids::{DeviceId, HazardId, InspectionId, ItemId, RecordId, Sha256Hex, SiteId, UserId};
use mobile_schema::inspection::{
    ChecklistAnswer, ChecklistRef, Evidence, EvidenceKind, Inspection, ItemResult, TeamMember, TimeSpan,
};
use mobile_schema::region::RegionCode;
use mobile_schema::site::{
    KeySupervisionUnit, PriorityFlags, RemediationSite, Site, SiteDetails, SiteKind, SiteStatus, TailingsPond,
};
use mobile_schema::workflow::{HazardState, InspectionStatus};
use serde::Deserialize;
use uuid::Uuid;

/// The five counties the workload's sites lie in.
pub const COUNTIES: [(u32, &str); 5] = [
    (451_221, "南丹县"),
    (451_226, "环江毛南族自治县"),
    (451_082, "平果市"),
    (451_424, "大新县"),
    (450_422, "藤县"),
];

/// Inspectors in the workload (`insp-0001` … `insp-0040`).
pub const INSPECTORS: u32 = 40;

/// Namespaces of the ids derived from the workload's names.
const NS_DEVICE: &str = "fieldsync-bench/device";
const NS_INSPECTOR: &str = "fieldsync-bench/inspector";
const NS_FINDING: &str = "fieldsync-bench/finding";
const NS_PHOTO: &str = "fieldsync-bench/photo";

/// Asia/Shanghai: times are shown with the device's offset.
fn china() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).unwrap_or_else(|| chrono::Utc.fix())
}

#[derive(Debug, Deserialize)]
struct Line {
    #[serde(rename = "_id")]
    id: Uuid,
    site_id: Uuid,
    site_kind: SiteKind,
    inspector_id: String,
    device_id: String,
    started_at: DateTime<FixedOffset>,
    finished_at: DateTime<FixedOffset>,
    gps: Gps,
    checklist: BTreeMap<String, LineAnswer>,
    #[serde(default)]
    findings: Vec<Finding>,
    conclusion: String,
}

#[derive(Debug, Deserialize)]
struct Gps {
    lat: f64,
    lon: f64,
    accuracy_m: f64,
    #[serde(default)]
    alt_m: Option<f64>,
    fix_at: DateTime<FixedOffset>,
}

#[derive(Debug, Deserialize)]
struct LineAnswer {
    answer: String,
    #[serde(default)]
    note: String,
}

#[derive(Debug, Deserialize)]
struct Finding {
    code: String,
    severity: String,
    description: String,
    #[serde(default)]
    photo_ids: Vec<Uuid>,
}

/// One workload line as records.
#[derive(Debug, Clone)]
pub struct WorkRecord {
    /// The line's `device_id`: the tablet that holds it offline.
    pub device: String,
    pub inspection: Inspection,
    /// The line's findings.
    pub hazards: Vec<Hazard>,
}

impl WorkRecord {
    pub fn id(&self) -> RecordId {
        self.inspection.id.into()
    }

    /// Changes its device makes: create, submit, one create per hazard.
    pub fn changes(&self) -> usize {
        2 + self.hazards.len()
    }
}

/// The workload: records in file order, the devices holding them, the sites.
#[derive(Debug, Clone)]
pub struct Workload {
    pub records: Vec<WorkRecord>,
    /// Device names in order of first appearance.
    pub devices: Vec<String>,
    /// Every site the records name, in order of first appearance.
    pub sites: Vec<Site>,
}

impl Workload {
    /// The first `limit` lines of a JSONL file (all of them without a limit).
    pub fn load(path: &Path, limit: Option<usize>) -> anyhow::Result<Self> {
        let file = std::fs::File::open(path).with_context(|| format!("opening the workload {}", path.display()))?;
        let mut lines = Vec::new();
        for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
            if limit.is_some_and(|l| lines.len() >= l) {
                break;
            }
            let line = line.with_context(|| format!("reading {} line {}", path.display(), n + 1))?;
            if line.trim().is_empty() {
                continue;
            }
            lines.push(line);
        }
        if let Some(l) = limit.filter(|l| *l > lines.len()) {
            bail!(
                "{} has {} records, not {l}: write a larger one with `python3 fixtures/bench/gen_workload.py --n {l} --seed 42 --out FILE`",
                path.display(),
                lines.len()
            );
        }
        Self::from_lines(lines.iter().map(String::as_str))
    }

    /// Map JSONL lines into records.
    pub fn from_lines<'a>(lines: impl IntoIterator<Item = &'a str>) -> anyhow::Result<Self> {
        let mut records = Vec::new();
        let mut devices = Vec::new();
        let mut sites: Vec<Site> = Vec::new();
        let mut seen_sites: HashSet<Uuid> = HashSet::new();
        for (n, text) in lines.into_iter().enumerate() {
            let line: Line =
                serde_json::from_str(text).with_context(|| format!("workload line {} does not decode", n + 1))?;
            if seen_sites.insert(line.site_id) {
                sites.push(site(line.site_id, line.site_kind, sites.len()));
            }
            if !devices.contains(&line.device_id) {
                devices.push(line.device_id.clone());
            }
            records.push(map_line(line).with_context(|| format!("workload line {}", n + 1))?);
        }
        Ok(Self {
            records,
            devices,
            sites,
        })
    }

    /// Fold the devices onto at most `n` tablets (device `i` by first appearance
    /// goes to tablet `i mod n`): a small run with few logins.
    pub fn fold_devices(&mut self, n: usize) {
        let n = n.max(1);
        if self.devices.len() <= n {
            return;
        }
        let index: HashMap<String, usize> = self.devices.iter().enumerate().map(|(i, d)| (d.clone(), i)).collect();
        let kept: Vec<String> = self.devices[..n].to_vec();
        for r in &mut self.records {
            let i = index.get(&r.device).copied().unwrap_or(0);
            r.device = kept[i % n].clone();
        }
        self.devices = kept;
    }

    /// Changes the tablets make to capture every record.
    pub fn changes(&self) -> usize {
        self.records.iter().map(WorkRecord::changes).sum()
    }

    /// Records on the server once everything is pushed: sites, inspections, hazards.
    pub fn server_records(&self) -> usize {
        self.sites.len() + self.records.iter().map(|r| 1 + r.hazards.len()).sum::<usize>()
    }
}

/// The tablet id of a workload device name.
pub fn device_id(name: &str) -> DeviceId {
    DeviceId::from_name(NS_DEVICE, name)
}

/// The county of a site: by its id, so every run assigns the same one.
pub fn county_of(site: Uuid) -> (RegionCode, &'static str) {
    let (code, name) = COUNTIES[(site.as_u128() % COUNTIES.len() as u128) as usize];
    (RegionCode::new(code).unwrap_or(RegionCode::GUANGXI), name)
}

/// The county (index into [`COUNTIES`]) inspector `n` works in.
pub fn inspector_county(n: u32) -> usize {
    (n.saturating_sub(1) % COUNTIES.len() as u32) as usize
}

fn inspector_number(id: &str) -> anyhow::Result<u32> {
    id.strip_prefix("insp-")
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("inspector id {id:?} is not insp-NNNN"))
}

const SURNAMES: [&str; 10] = ["韦", "黄", "覃", "陆", "莫", "梁", "蒙", "农", "罗", "李"];
const GIVEN: [&str; 8] = ["明", "丽", "强", "芳", "海燕", "志刚", "秀英", "建华"];

fn inspector(n: u32) -> TeamMember {
    let name = format!(
        "{}{}",
        SURNAMES[n as usize % SURNAMES.len()],
        GIVEN[(n as usize / SURNAMES.len()) % GIVEN.len()]
    );
    TeamMember {
        user_id: Some(UserId::from_name(NS_INSPECTOR, &format!("insp-{n:04}"))),
        name,
        certificate_no: format!("GX-ZF-{n:04}"),
    }
}

/// An inspector of the site's county other than `first`, picked by record id.
fn second_inspector(first: u32, county: usize, record: Uuid) -> u32 {
    let per_county = INSPECTORS / COUNTIES.len() as u32;
    let pick = (record.as_u128() % per_county as u128) as u32;
    let nth = |k: u32| county as u32 + 1 + COUNTIES.len() as u32 * (k % per_county);
    if nth(pick) == first { nth(pick + 1) } else { nth(pick) }
}

fn photo(id: Uuid, device: DeviceId, caption: &str) -> Evidence {
    Evidence {
        id: ItemId(id),
        sha256: Sha256Hex::of_bytes(format!("{NS_PHOTO}/{id}").as_bytes()),
        kind: EvidenceKind::Photo,
        capture_time: None,
        position: None,
        device_id: Some(device),
        caption: caption.to_string(),
    }
}

fn map_line(line: Line) -> anyhow::Result<WorkRecord> {
    let tz = china();
    let device = device_id(&line.device_id);
    let template = checklist::current_for(line.site_kind).context("no checklist template for the site kind")?;
    let mut answers = BTreeMap::new();
    for (code, a) in line.checklist {
        let result = match a.answer.as_str() {
            "ok" => ItemResult::Ok,
            "issue" => ItemResult::Problem,
            "na" => ItemResult::NotApplicable,
            other => bail!("checklist answer {other:?} of {code} is not ok, issue or na"),
        };
        answers.insert(
            code,
            ChecklistAnswer {
                result,
                note: a.note,
                evidence: Vec::new(),
            },
        );
    }
    let first = inspector_number(&line.inspector_id)?;
    let (_, county_name) = county_of(line.site_id);
    let county = COUNTIES.iter().position(|(_, n)| *n == county_name).unwrap_or(0);
    let second = second_inspector(first, county, line.id);
    let id = InspectionId(line.id);
    let site_id = SiteId(line.site_id);

    let mut evidence: Vec<Evidence> = Vec::new();
    let mut hazards = Vec::with_capacity(line.findings.len());
    for (j, f) in line.findings.into_iter().enumerate() {
        for p in &f.photo_ids {
            if !evidence.iter().any(|e| e.id.0 == *p) {
                evidence.push(photo(*p, device, &f.code));
            }
        }
        hazards.push(Hazard {
            id: HazardId::from_name(NS_FINDING, &format!("{}/{j}", line.id)),
            schema_version: Hazard::SCHEMA_VERSION,
            inspection_id: id,
            site_id,
            evidence: f.photo_ids.iter().map(|p| photo(*p, device, &f.code)).collect(),
            category: f.code,
            severity: f.severity,
            description: f.description,
            deadline: None,
            responsible_party: String::new(),
            notified_on: None,
            rectification_evidence: vec![],
            verification_evidence: vec![],
            state: HazardState::Identified,
        });
    }
    let inspection = Inspection {
        id,
        schema_version: Inspection::SCHEMA_VERSION,
        site_id,
        task_id: None,
        team: vec![inspector(first), inspector(second)],
        device_id: device,
        times: TimeSpan {
            start: line.started_at.with_timezone(&tz),
            end: Some(line.finished_at.with_timezone(&tz)),
        },
        fix: Some(GnssFix {
            lat: line.gps.lat,
            lon: line.gps.lon,
            accuracy_m: line.gps.accuracy_m,
            altitude_m: line.gps.alt_m,
            fix_time: line.gps.fix_at.with_timezone(&tz),
            crs: Crs::Wgs84,
        }),
        checklist: ChecklistRef {
            template_id: template.id.to_string(),
            version: template.version,
        },
        answers,
        evidence,
        conclusion: line.conclusion,
        signoff: None,
        // A new record starts as a draft; the tablet then submits it.
        status: InspectionStatus::Draft,
    };
    Ok(WorkRecord {
        device: line.device_id,
        inspection,
        hazards,
    })
}

/// The site record of a workload site: its county by id, a name from its
/// county and kind, no location (the workload has none).
fn site(id: Uuid, kind: SiteKind, n: usize) -> Site {
    let (region_code, county) = county_of(id);
    let (label, details) = match kind {
        SiteKind::TailingsPond => (
            "尾矿库",
            SiteDetails::TailingsPond(TailingsPond {
                minerals: vec!["铅锌".into()],
                heavy_metals: true,
                cyanide: false,
            }),
        ),
        SiteKind::KeyUnit => (
            "重点监管单位",
            SiteDetails::KeyUnit(KeySupervisionUnit {
                industry: "有色金属冶炼".into(),
                list_year: 2020,
                credit_code: None,
            }),
        ),
        SiteKind::RemediationSite => (
            "修复地块",
            SiteDetails::RemediationSite(RemediationSite {
                project_name: format!("{county}第{}号地块土壤修复项目", n + 1),
                category: String::new(),
                project_type: "企业类".into(),
                funding_10k_cny: None,
                target_year: 2025,
                target: "完成总工程量的60%以上".into(),
            }),
        ),
    };
    Site {
        id: SiteId(id),
        schema_version: Site::SCHEMA_VERSION,
        name: format!("{county}{label}{:03}", n + 1),
        operator: format!("{county}某有限公司"),
        region_code,
        location: None,
        status: SiteStatus::Active,
        details,
        priority: PriorityFlags::default(),
        levels: Vec::new(),
        obligations: Vec::new(),
        progress: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn fixture(n: usize) -> Workload {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/bench/workload-5000.jsonl");
        Workload::load(&path, Some(n)).unwrap()
    }

    #[test]
    fn lines_map_to_valid_inspections_and_hazards_the_same_way_every_time() {
        let w = fixture(50);
        assert_eq!(w.records.len(), 50);
        let again = fixture(50);
        for (a, b) in w.records.iter().zip(&again.records) {
            assert_eq!(
                serde_json::to_string(&a.inspection).unwrap(),
                serde_json::to_string(&b.inspection).unwrap()
            );
            assert_eq!(a.hazards, b.hazards);
        }
        let scale = mobile_schema::severity::SeverityScale::default();
        for r in &w.records {
            let i = &r.inspection;
            assert_eq!(i.answers.len(), 20);
            assert_eq!(i.team.len(), 2);
            assert_ne!(i.team[0].certificate_no, i.team[1].certificate_no);
            let site = w.sites.iter().find(|s| s.id == i.site_id).unwrap();
            let ctx = mobile_schema::validation::ValidationContext::new(&scale).with_site(site);
            let any = mobile_schema::AnyRecord::Inspection(i.clone());
            let report = mobile_schema::validation::validate(&any, &ctx);
            assert!(report.errors.is_empty(), "{:?}", report.errors);
            for h in &r.hazards {
                let report = mobile_schema::validation::validate(&mobile_schema::AnyRecord::Hazard(h.clone()), &ctx);
                assert!(report.errors.is_empty(), "{:?}", report.errors);
            }
        }
    }

    #[test]
    fn sites_fall_in_the_five_counties_and_second_inspectors_work_there() {
        let w = fixture(200);
        let codes: Vec<u32> = COUNTIES.iter().map(|c| c.0).collect();
        for s in &w.sites {
            assert!(codes.contains(&s.region_code.as_u32()));
        }
        for r in &w.records {
            let county = county_of(r.inspection.site_id.0).0.as_u32();
            let second: u32 = r.inspection.team[1].certificate_no[6..].parse().unwrap();
            assert_eq!(COUNTIES[inspector_county(second)].0, county);
        }
    }

    #[test]
    fn folding_devices_keeps_every_record() {
        let mut w = fixture(40);
        let before = w.devices.len();
        assert!(before > 4);
        w.fold_devices(4);
        assert_eq!(w.devices.len(), 4);
        assert!(w.records.iter().all(|r| w.devices.contains(&r.device)));
    }
}
