//! Validation of records into **errors** and **flags**, all at once.
//!
//! An error makes a record unusable: the tablet does not submit it and the server
//! refuses it. A flag is a breach of a rule (two inspectors, proof of presence,
//! signoff, ...) that a supervisor must see but that never costs the record: field
//! work with wrong clocks and bad GNSS must still reach the bureau.
//!
//! Every issue names its field with the unit key of [`crate::record`] followed by
//! a path inside the unit: `fix.lat`, `answers/TP-03.note`, `team[1].certificate_no`,
//! `evidence/<id>.capture_time`. Codes are stable snake_case; messages are English
//! and say what was compared with what.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::LazyLock;

use chrono::{DateTime, FixedOffset};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::checklist;
use crate::geo::{self, GnssFix, LatLon, Location, bounds};
use crate::hazard::Hazard;
use crate::inspection::{Evidence, Inspection, ItemResult, Signoff};
use crate::record::{AnyRecord, LayoutError, RecordKind, Shape};
use crate::review::{Addendum, Decision, Review};
use crate::severity::SeverityScale;
use crate::site::Site;
use crate::task::{RandomDraw, Task, TaskRule};
use crate::workflow::{HazardState, InspectionStatus};

/// Whether an issue costs the record or only informs the supervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum IssueKind {
    Error,
    Flag,
}

macro_rules! issue_codes {
    ($($(#[$meta:meta])* $variant:ident = $name:literal, $kind:ident;)*) => {
        /// What is wrong, as a stable code. Each code is always an error or always a flag.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum IssueCode {
            $($(#[$meta])* $variant,)*
        }

        impl IssueCode {
            pub const ALL: &'static [IssueCode] = &[$(IssueCode::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(IssueCode::$variant => $name,)*
                }
            }

            pub fn kind(self) -> IssueKind {
                match self {
                    $(IssueCode::$variant => IssueKind::$kind,)*
                }
            }
        }
    };
}

issue_codes! {
    // Errors.
    /// A value of the wrong JSON type, caught when the record was decoded.
    WrongType = "wrong_type", Error;
    /// A unit key that is not part of the record kind's layout.
    UnknownUnit = "unknown_unit", Error;
    /// A collection item whose id differs from the one its key names.
    ItemIdMismatch = "item_id_mismatch", Error;
    /// |lat| > 90 or not a number.
    LatitudeOutOfRange = "latitude_out_of_range", Error;
    /// |lon| > 180 or not a number.
    LongitudeOutOfRange = "longitude_out_of_range", Error;
    /// A GNSS accuracy that is negative or not a number.
    InvalidAccuracy = "invalid_accuracy", Error;
    /// A site radius that is negative or not a number.
    InvalidRadius = "invalid_radius", Error;
    /// A site polygon with fewer than three vertices.
    DegeneratePolygon = "degenerate_polygon", Error;
    /// No checklist template has this id.
    UnknownChecklistTemplate = "unknown_checklist_template", Error;
    /// The template exists, but not in this version.
    UnknownChecklistVersion = "unknown_checklist_version", Error;
    /// The template is for another kind of site than the inspected one.
    ChecklistForOtherSiteKind = "checklist_for_other_site_kind", Error;
    /// Text the record is meaningless without is empty.
    EmptyRequiredText = "empty_required_text", Error;
    /// A percentage outside 0..=100.
    PercentOutOfRange = "percent_out_of_range", Error;
    /// A task whose due day is before its earliest start.
    WindowEndsBeforeStart = "window_ends_before_start", Error;
    /// A pool hash that is not a SHA-256 in lower-case hex.
    InvalidPoolHash = "invalid_pool_hash", Error;
    /// A seed that is not a decimal u64: the draw could not be re-run.
    InvalidSeed = "invalid_seed", Error;
    /// More sites drawn than the pool held.
    DrawExceedsPool = "draw_exceeds_pool", Error;
    /// A site drawn twice.
    DuplicateDrawnSite = "duplicate_drawn_site", Error;

    // Flags.
    /// An answer to an item code the template does not have: kept, as when
    /// an answer written offline meets a template changed meanwhile.
    UnknownChecklistItem = "unknown_checklist_item", Flag;
    /// An answer cites evidence that is not in the record: kept, as when a
    /// colleague removed the photo while the answer was written offline.
    UnknownEvidence = "unknown_evidence", Flag;
    /// A severity that is not a level of the configured scale: a hazard
    /// graded offline before the deployment changed its scale is kept, and a
    /// supervisor regrades it.
    UnknownSeverity = "unknown_severity", Flag;
    /// A visit whose end is before its start (a tablet clock reset mid-visit):
    /// the record is kept; its times cannot be compared with the visit window.
    EndBeforeStart = "end_before_start", Flag;
    /// A team member without a law-enforcement certificate number (执法证号).
    MissingCertificate = "missing_certificate", Flag;
    /// A refusal to sign recorded without its reason.
    RefusalWithoutReason = "refusal_without_reason", Flag;
    /// A refusal to sign recorded without a witness's name.
    RefusalWithoutWitness = "refusal_without_witness", Flag;
    /// Fewer than two inspectors with distinct certificate numbers.
    TooFewInspectors = "too_few_inspectors", Flag;
    /// Two team members give the same certificate number.
    DuplicateCertificate = "duplicate_certificate", Flag;
    /// A position outside China's box (lat 18–54, lon 73–135).
    OutsideChina = "outside_china", Flag;
    /// A position inside China but outside the site's province box.
    OutsideProvince = "outside_province", Flag;
    /// The fix is farther from the site than its accuracy and the tolerance allow.
    OutsideSite = "outside_site", Flag;
    /// A submitted inspection without a GNSS fix.
    MissingFix = "missing_fix", Flag;
    /// The fix was taken outside the visit's start–end window.
    FixOutsideVisit = "fix_outside_visit", Flag;
    /// A submitted inspection without an end time.
    MissingEndTime = "missing_end_time", Flag;
    /// Evidence captured outside the visit's start–end window.
    EvidenceOutsideVisit = "evidence_outside_visit", Flag;
    /// Evidence whose position is away from the site (or the fix).
    EvidenceAwayFromSite = "evidence_away_from_site", Flag;
    /// A `problem` answer without a note.
    ProblemWithoutNote = "problem_without_note", Flag;
    /// A submitted inspection with template items left unanswered.
    UnansweredItems = "unanswered_items", Flag;
    /// Submitted without the inspected party's signature or a recorded refusal.
    MissingSignoff = "missing_signoff", Flag;
    /// Signed or refused outside the visit's start–end window.
    SignoffOutsideVisit = "signoff_outside_visit", Flag;
    /// A hazard past `identified` without a rectification deadline.
    MissingDeadline = "missing_deadline", Flag;
    /// A hazard past `identified` without a responsible party.
    MissingResponsibleParty = "missing_responsible_party", Flag;
    /// A review that returns the inspection without any comment.
    ReturnWithoutComments = "return_without_comments", Flag;
    /// A task assigned to fewer than two distinct inspectors.
    TooFewAssignees = "too_few_assignees", Flag;
    /// A drawn task stays hidden past its due day.
    HiddenPastDue = "hidden_past_due", Flag;
    /// A `level_three_drawn` task that names no draw.
    DrawnTaskWithoutDraw = "drawn_task_without_draw", Flag;
    /// A random draw of fewer than half of its pool (三级: at least 50%).
    DrawBelowHalfPool = "draw_below_half_pool", Flag;
}

impl fmt::Display for IssueCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem of a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Issue {
    pub code: IssueCode,
    /// Unit key and path inside it, e.g. `fix.lat`, `answers/TP-03`.
    pub field: String,
    pub message: String,
}

impl Issue {
    pub fn new(code: IssueCode, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code,
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn kind(&self) -> IssueKind {
        self.code.kind()
    }

    /// A decoding failure as an issue: a value of the wrong type is `wrong_type`.
    /// Map-entry paths are rewritten to unit keys (`answers.TP-03.result` becomes
    /// `answers/TP-03.result`) so that they name the unit like every other issue.
    pub fn from_layout_error(kind: RecordKind, err: &LayoutError) -> Self {
        match err {
            LayoutError::UnknownUnit { key, .. } => Issue::new(IssueCode::UnknownUnit, key.clone(), err.to_string()),
            LayoutError::ItemIdMismatch { key, .. } => {
                Issue::new(IssueCode::ItemIdMismatch, key.clone(), err.to_string())
            }
            LayoutError::Invalid { field, message } => {
                Issue::new(IssueCode::WrongType, unit_path(kind, field), message.clone())
            }
        }
    }
}

fn unit_path(kind: RecordKind, serde_path: &str) -> String {
    let Some((head, rest)) = serde_path.split_once('.') else {
        return serde_path.to_string();
    };
    let is_map = kind
        .layout()
        .fields
        .iter()
        .any(|f| f.name == head && f.shape == Shape::Map);
    if is_map {
        format!("{head}/{rest}")
    } else {
        serde_path.to_string()
    }
}

/// Everything wrong with a record, split by kind.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Report {
    pub errors: Vec<Issue>,
    pub flags: Vec<Issue>,
}

impl Report {
    /// A record with no errors can be submitted and stored; flags do not count.
    pub fn is_usable(&self) -> bool {
        self.errors.is_empty()
    }

    /// Neither errors nor flags.
    pub fn is_clean(&self) -> bool {
        self.errors.is_empty() && self.flags.is_empty()
    }

    /// Files an issue under errors or flags by its code.
    pub fn push(&mut self, issue: Issue) {
        match issue.kind() {
            IssueKind::Error => self.errors.push(issue),
            IssueKind::Flag => self.flags.push(issue),
        }
    }

    fn add(&mut self, code: IssueCode, field: impl Into<String>, message: impl Into<String>) {
        self.push(Issue::new(code, field, message));
    }

    /// The report of a record that could not be decoded.
    pub fn from_layout_error(kind: RecordKind, err: &LayoutError) -> Self {
        let mut r = Report::default();
        r.push(Issue::from_layout_error(kind, err));
        r
    }

    /// All issues, errors first.
    pub fn issues(&self) -> impl Iterator<Item = &Issue> {
        self.errors.iter().chain(&self.flags)
    }
}

/// What validation compares a record with.
#[derive(Debug, Clone)]
pub struct ValidationContext<'a> {
    /// The site the record is about, when known. Used only when its id is the
    /// record's `site_id`; another site is treated as unknown.
    pub site: Option<&'a Site>,
    pub severity_scale: &'a SeverityScale,
    /// How far outside the site's radius or polygon a fix may be, on top of its
    /// reported accuracy, before it is flagged.
    pub on_site_tolerance_m: f64,
    /// Slack for device clocks when comparing fix, evidence and signoff times
    /// with the visit window.
    pub time_tolerance: chrono::Duration,
    /// Judge an inspection as if it were being submitted (the tablet's check
    /// before submitting), whatever its status says.
    pub submitting: bool,
    /// The fewest inspectors an inspection may have (DOMAIN: two).
    pub min_inspectors: usize,
}

static DEFAULT_SCALE: LazyLock<SeverityScale> = LazyLock::new(SeverityScale::default);

/// Sites are drawn as a point or a rough outline, and tailings ponds are large.
pub const DEFAULT_ON_SITE_TOLERANCE_M: f64 = 500.0;
/// Tablet clocks drift; a quarter of an hour is slack, not a different visit.
pub const DEFAULT_TIME_TOLERANCE_MINUTES: i64 = 15;

impl Default for ValidationContext<'static> {
    fn default() -> Self {
        ValidationContext::new(&DEFAULT_SCALE)
    }
}

impl<'a> ValidationContext<'a> {
    /// No site; 500 m on-site tolerance; 15 minutes of clock slack; two inspectors.
    pub fn new(severity_scale: &'a SeverityScale) -> Self {
        Self {
            site: None,
            severity_scale,
            on_site_tolerance_m: DEFAULT_ON_SITE_TOLERANCE_M,
            time_tolerance: chrono::Duration::minutes(DEFAULT_TIME_TOLERANCE_MINUTES),
            submitting: false,
            min_inspectors: 2,
        }
    }

    pub fn with_site(mut self, site: &'a Site) -> Self {
        self.site = Some(site);
        self
    }

    pub fn submitting(mut self) -> Self {
        self.submitting = true;
        self
    }

    fn site_for(&self, id: crate::ids::SiteId) -> Option<&'a Site> {
        self.site.filter(|s| s.id == id)
    }
}

/// Validates any record.
pub fn validate(record: &AnyRecord, ctx: &ValidationContext) -> Report {
    match record {
        AnyRecord::Site(r) => validate_site(r, ctx),
        AnyRecord::Inspection(r) => validate_inspection(r, ctx),
        AnyRecord::Hazard(r) => validate_hazard(r, ctx),
        AnyRecord::Review(r) => validate_review(r, ctx),
        AnyRecord::Addendum(r) => validate_addendum(r, ctx),
        AnyRecord::Task(r) => validate_task(r, ctx),
        AnyRecord::RandomDraw(r) => validate_random_draw(r, ctx),
    }
}

/// Distances read better in km past a kilometre.
fn distance(m: f64) -> String {
    if m >= 1000.0 {
        format!("{:.1} km", m / 1000.0)
    } else {
        format!("{m:.0} m")
    }
}

fn require_text(r: &mut Report, field: &str, text: &str, what: &str) {
    if text.trim().is_empty() {
        r.add(IssueCode::EmptyRequiredText, field, format!("{what} is empty"));
    }
}

/// Checks that a position is possible; returns whether it is.
fn check_possible(r: &mut Report, field: &str, lat: f64, lon: f64) -> bool {
    let mut ok = true;
    if !(lat.is_finite() && (-90.0..=90.0).contains(&lat)) {
        r.add(
            IssueCode::LatitudeOutOfRange,
            format!("{field}lat"),
            format!("latitude {lat} is outside -90..=90"),
        );
        ok = false;
    }
    if !(lon.is_finite() && (-180.0..=180.0).contains(&lon)) {
        r.add(
            IssueCode::LongitudeOutOfRange,
            format!("{field}lon"),
            format!("longitude {lon} is outside -180..=180"),
        );
        ok = false;
    }
    ok
}

/// Flags a possible position outside China, or else outside the site's province.
fn check_bounds(r: &mut Report, field: &str, p: LatLon, site: Option<&Site>, what: &str) {
    if !bounds::within(p, bounds::CHINA) {
        r.add(
            IssueCode::OutsideChina,
            field,
            format!(
                "{what} ({}, {}) is outside China's box (lat 18–54, lon 73–135)",
                p.lat, p.lon
            ),
        );
        return;
    }
    let Some(site) = site else { return };
    let province = site.region_code.as_u32() / 10_000;
    if let Some(b) = bounds::of_province(province).filter(|b| !bounds::within(p, *b)) {
        r.add(
            IssueCode::OutsideProvince,
            field,
            format!(
                "{what} ({}, {}) is outside the box of province {province}0000 (lat {}–{}, lon {}–{})",
                p.lat, p.lon, b.0, b.1, b.2, b.3
            ),
        );
    }
}

/// Flags an instant outside `[start - tol, end + tol]`; without an end only the start bounds it.
fn check_in_visit(
    r: &mut Report,
    code: IssueCode,
    field: &str,
    t: DateTime<FixedOffset>,
    window: (DateTime<FixedOffset>, Option<DateTime<FixedOffset>>),
    tol: chrono::Duration,
    what: &str,
) {
    let (start, end) = window;
    if crate::time::before_by_more_than(t, start, tol) {
        r.add(
            code,
            field,
            format!(
                "{what} {t} is {} min before the visit started at {start} (tolerance {} min)",
                (start - t).num_minutes(),
                tol.num_minutes()
            ),
        );
    } else if let Some(end) = end.filter(|end| crate::time::after_by_more_than(t, *end, tol)) {
        r.add(
            code,
            field,
            format!(
                "{what} {t} is {} min after the visit ended at {end} (tolerance {} min)",
                (t - end).num_minutes(),
                tol.num_minutes()
            ),
        );
    }
}

fn check_fix(r: &mut Report, fix: &GnssFix, site: Option<&Site>, tolerance_m: f64) {
    if !check_possible(r, "fix.", fix.lat, fix.lon) {
        return;
    }
    if !(fix.accuracy_m.is_finite() && fix.accuracy_m >= 0.0) {
        r.add(
            IssueCode::InvalidAccuracy,
            "fix.accuracy_m",
            format!("accuracy {} m is negative or not a number", fix.accuracy_m),
        );
    }
    check_bounds(r, "fix", fix.point(), site, "fix");
    let Some(loc) = site.and_then(|s| s.location.as_ref()) else {
        return;
    };
    if !location_usable(loc) {
        return;
    }
    let outside = loc.distance_outside_m(fix.point());
    let accuracy = if fix.accuracy_m.is_finite() {
        fix.accuracy_m.max(0.0)
    } else {
        0.0
    };
    if outside > accuracy + tolerance_m {
        let area = match (&loc.polygon, loc.radius_m) {
            (Some(p), _) if p.len() >= 3 => "polygon",
            (_, Some(_)) => "radius",
            _ => "point",
        };
        r.add(
            IssueCode::OutsideSite,
            "fix",
            format!(
                "fix is {} outside the site {area} (accuracy {}, tolerance {})",
                distance(outside),
                distance(accuracy),
                distance(tolerance_m)
            ),
        );
    }
}

/// A location distance can be measured against: possible coordinates throughout.
fn location_usable(loc: &Location) -> bool {
    bounds::possible(loc.lat, loc.lon)
        && loc
            .polygon
            .as_deref()
            .unwrap_or_default()
            .iter()
            .all(|p| bounds::possible(p.lat, p.lon))
}

fn check_evidence(
    r: &mut Report,
    prefix: &str,
    ev: &Evidence,
    site: Option<&Site>,
    fix: Option<&GnssFix>,
    ctx: &ValidationContext,
) {
    let field = format!("{prefix}/{}", ev.id);
    let Some(p) = ev.position else { return };
    if !check_possible(r, &format!("{field}.position."), p.lat, p.lon) {
        return;
    }
    let pos_field = format!("{field}.position");
    // Against the site's area when known; else against the record's fix.
    if let Some(loc) = site.and_then(|s| s.location.as_ref()).filter(|l| location_usable(l)) {
        let outside = loc.distance_outside_m(p);
        if outside > ctx.on_site_tolerance_m {
            r.add(
                IssueCode::EvidenceAwayFromSite,
                pos_field,
                format!(
                    "evidence position is {} outside the site (tolerance {})",
                    distance(outside),
                    distance(ctx.on_site_tolerance_m)
                ),
            );
        }
    } else if let Some(fix) = fix.filter(|f| bounds::possible(f.lat, f.lon)) {
        let d = geo::haversine_m(fix.point(), p);
        let accuracy = if fix.accuracy_m.is_finite() {
            fix.accuracy_m.max(0.0)
        } else {
            0.0
        };
        if d > accuracy + ctx.on_site_tolerance_m {
            r.add(
                IssueCode::EvidenceAwayFromSite,
                pos_field,
                format!(
                    "evidence position is {} from the record's fix (accuracy {}, tolerance {})",
                    distance(d),
                    distance(accuracy),
                    distance(ctx.on_site_tolerance_m)
                ),
            );
        }
    }
}

/// Validates an inspection (现场检查记录).
pub fn validate_inspection(i: &Inspection, ctx: &ValidationContext) -> Report {
    let mut r = Report::default();
    let site = ctx.site_for(i.site_id);
    let submitted = ctx.submitting || i.status != InspectionStatus::Draft;

    // Team: each member needs a certificate; the rule wants two distinct ones.
    let mut certs = BTreeSet::new();
    for (n, m) in i.team.iter().enumerate() {
        require_text(&mut r, &format!("team[{n}].name"), &m.name, "inspector name");
        let cert = m.certificate_no.trim();
        if cert.is_empty() {
            r.add(
                IssueCode::MissingCertificate,
                format!("team[{n}].certificate_no"),
                format!("inspector {:?} has no certificate number (执法证号)", m.name),
            );
        } else if !certs.insert(cert) {
            r.add(
                IssueCode::DuplicateCertificate,
                format!("team[{n}].certificate_no"),
                format!("certificate number {cert:?} appears more than once in the team"),
            );
        }
    }
    if certs.len() < ctx.min_inspectors {
        r.add(
            IssueCode::TooFewInspectors,
            "team",
            format!(
                "{} inspector(s) with distinct certificate numbers; the rules want at least {}",
                certs.len(),
                ctx.min_inspectors
            ),
        );
    }

    // Times: a window check needs a sane window.
    let end_ok = match i.times.end {
        Some(end) if end < i.times.start => {
            r.add(
                IssueCode::EndBeforeStart,
                "times.end",
                format!("end {end} is before start {}", i.times.start),
            );
            false
        }
        Some(_) => true,
        None => {
            if submitted {
                r.add(IssueCode::MissingEndTime, "times.end", "submitted without an end time");
            }
            true
        }
    };
    let window = end_ok.then_some((i.times.start, i.times.end));

    match &i.fix {
        Some(fix) => {
            check_fix(&mut r, fix, site, ctx.on_site_tolerance_m);
            if let Some(w) = window {
                check_in_visit(
                    &mut r,
                    IssueCode::FixOutsideVisit,
                    "fix.fix_time",
                    fix.fix_time,
                    w,
                    ctx.time_tolerance,
                    "fix time",
                );
            }
        }
        None if submitted => r.add(IssueCode::MissingFix, "fix", "submitted without a GNSS fix"),
        None => {}
    }

    // Checklist and answers.
    let template = checklist::template(&i.checklist.template_id, i.checklist.version);
    match template {
        None if checklist::TEMPLATES.iter().any(|t| t.id == i.checklist.template_id) => r.add(
            IssueCode::UnknownChecklistVersion,
            "checklist.version",
            format!(
                "checklist {:?} has no version {}",
                i.checklist.template_id, i.checklist.version
            ),
        ),
        None => r.add(
            IssueCode::UnknownChecklistTemplate,
            "checklist.template_id",
            format!("no checklist template {:?}", i.checklist.template_id),
        ),
        Some(t) => {
            if let Some(site) = site.filter(|s| s.kind() != t.site_kind) {
                r.add(
                    IssueCode::ChecklistForOtherSiteKind,
                    "checklist.template_id",
                    format!(
                        "checklist {:?} is for {} sites but the site is a {}",
                        t.id,
                        t.site_kind.as_str(),
                        site.kind().as_str()
                    ),
                );
            }
        }
    }
    let evidence_ids: BTreeSet<_> = i.evidence.iter().map(|e| e.id).collect();
    for (code, answer) in &i.answers {
        let field = format!("answers/{code}");
        if let Some(t) = template.filter(|t| t.item(code).is_none()) {
            r.add(
                IssueCode::UnknownChecklistItem,
                field.as_str(),
                format!("checklist {:?} v{} has no item {code:?}", t.id, t.version),
            );
        }
        if answer.result == ItemResult::Problem && answer.note.trim().is_empty() {
            r.add(
                IssueCode::ProblemWithoutNote,
                format!("{field}.note"),
                format!("item {code} is answered `problem` without a note"),
            );
        }
        for ev in &answer.evidence {
            if !evidence_ids.contains(ev) {
                r.add(
                    IssueCode::UnknownEvidence,
                    format!("{field}.evidence"),
                    format!("item {code} cites evidence {ev}, which is not in the record's evidence"),
                );
            }
        }
    }
    if let Some(t) = template.filter(|_| submitted) {
        let missing: Vec<_> = t
            .items
            .iter()
            .filter(|it| !i.answers.contains_key(it.code))
            .map(|it| it.code)
            .collect();
        if !missing.is_empty() {
            r.add(
                IssueCode::UnansweredItems,
                "answers",
                format!(
                    "{} of {} items unanswered: {}",
                    missing.len(),
                    t.items.len(),
                    missing.join(", ")
                ),
            );
        }
    }

    for ev in &i.evidence {
        check_evidence(&mut r, "evidence", ev, site, i.fix.as_ref(), ctx);
        if let (Some(t), Some(w)) = (ev.capture_time, window) {
            check_in_visit(
                &mut r,
                IssueCode::EvidenceOutsideVisit,
                &format!("evidence/{}.capture_time", ev.id),
                t,
                w,
                ctx.time_tolerance,
                "capture time",
            );
        }
    }

    match &i.signoff {
        Some(Signoff::Signed {
            signer_name, signed_at, ..
        }) => {
            require_text(&mut r, "signoff.signer_name", signer_name, "signer name");
            if let Some(w) = window {
                check_in_visit(
                    &mut r,
                    IssueCode::SignoffOutsideVisit,
                    "signoff.signed_at",
                    *signed_at,
                    w,
                    ctx.time_tolerance,
                    "signature time",
                );
            }
        }
        Some(Signoff::Refused {
            reason,
            witness,
            recorded_at,
        }) => {
            // A refusal is a signoff with its reason and witness (DOMAIN); one
            // recorded without them on site is kept and shown, not lost.
            if reason.trim().is_empty() {
                r.add(
                    IssueCode::RefusalWithoutReason,
                    "signoff.reason",
                    "a refusal recorded without its reason",
                );
            }
            if witness.name.trim().is_empty() {
                r.add(
                    IssueCode::RefusalWithoutWitness,
                    "signoff.witness.name",
                    "a refusal recorded without a witness's name",
                );
            }
            if let Some(w) = window {
                check_in_visit(
                    &mut r,
                    IssueCode::SignoffOutsideVisit,
                    "signoff.recorded_at",
                    *recorded_at,
                    w,
                    ctx.time_tolerance,
                    "refusal time",
                );
            }
        }
        None if submitted => r.add(
            IssueCode::MissingSignoff,
            "signoff",
            "submitted without the inspected party's signature or a recorded refusal",
        ),
        None => {}
    }
    r
}

/// Validates a hazard (隐患).
pub fn validate_hazard(h: &Hazard, ctx: &ValidationContext) -> Report {
    let mut r = Report::default();
    require_text(&mut r, "category", &h.category, "hazard category");
    require_text(&mut r, "description", &h.description, "hazard description");
    // A hazard without a grade at all is meaningless; one graded on another
    // scale is kept for a supervisor to regrade.
    require_text(&mut r, "severity", &h.severity, "hazard severity");
    if !h.severity.trim().is_empty() && !ctx.severity_scale.contains(&h.severity) {
        let levels: Vec<_> = ctx.severity_scale.levels.iter().map(|l| l.code.as_str()).collect();
        r.add(
            IssueCode::UnknownSeverity,
            "severity",
            format!(
                "severity {:?} is not a level of scale {:?} ({})",
                h.severity,
                ctx.severity_scale.id,
                levels.join(", ")
            ),
        );
    }
    // At identification the deadline and party may not be known yet; from
    // notification (责令整改) on they are the point of the hazard.
    if h.state != HazardState::Identified {
        if h.deadline.is_none() {
            r.add(
                IssueCode::MissingDeadline,
                "deadline",
                "hazard is past `identified` without a rectification deadline",
            );
        }
        if h.responsible_party.trim().is_empty() {
            r.add(
                IssueCode::MissingResponsibleParty,
                "responsible_party",
                "hazard is past `identified` without a responsible party",
            );
        }
    }
    let site = ctx.site_for(h.site_id);
    for (field, list) in [
        ("evidence", &h.evidence),
        ("rectification_evidence", &h.rectification_evidence),
        ("verification_evidence", &h.verification_evidence),
    ] {
        for ev in list {
            check_evidence(&mut r, field, ev, site, None, ctx);
        }
    }
    r
}

/// Validates a supervisor's review.
pub fn validate_review(v: &Review, _ctx: &ValidationContext) -> Report {
    let mut r = Report::default();
    for c in &v.comments {
        require_text(&mut r, &format!("comments/{}.text", c.id), &c.text, "comment text");
    }
    if v.decision == Decision::Return && v.comments.iter().all(|c| c.text.trim().is_empty()) {
        r.add(
            IssueCode::ReturnWithoutComments,
            "comments",
            "inspection returned without a comment saying what to fix",
        );
    }
    r
}

/// Validates an addendum to a signed inspection.
pub fn validate_addendum(a: &Addendum, _ctx: &ValidationContext) -> Report {
    let mut r = Report::default();
    require_text(&mut r, "text", &a.text, "addendum text");
    if let Some(c) = a
        .corrects
        .as_ref()
        .filter(|c| RecordKind::Inspection.layout().field_of(&c.unit).is_none())
    {
        r.add(
            IssueCode::UnknownUnit,
            "corrects.unit",
            format!("{:?} is not a unit of an inspection", c.unit),
        );
    }
    r
}

/// Validates a site's shape (not whether its region code is in the GB/T table).
pub fn validate_site(s: &Site, _ctx: &ValidationContext) -> Report {
    let mut r = Report::default();
    require_text(&mut r, "name", &s.name, "site name");
    if let Some(loc) = &s.location {
        if check_possible(&mut r, "location.", loc.lat, loc.lon) {
            check_bounds(&mut r, "location", loc.point(), Some(s), "site location");
        }
        if let Some(radius) = loc.radius_m.filter(|r| !(r.is_finite() && *r >= 0.0)) {
            r.add(
                IssueCode::InvalidRadius,
                "location.radius_m",
                format!("radius {radius} m is negative or not a number"),
            );
        }
        if let Some(poly) = &loc.polygon {
            if poly.len() < 3 {
                r.add(
                    IssueCode::DegeneratePolygon,
                    "location.polygon",
                    format!("polygon has {} vertices; an area needs at least 3", poly.len()),
                );
            }
            for (n, p) in poly.iter().enumerate() {
                check_possible(&mut r, &format!("location.polygon[{n}]."), p.lat, p.lon);
            }
        }
    }
    for p in &s.progress {
        if let Some(pct) = p.percent_done.filter(|pct| !(0.0..=100.0).contains(pct)) {
            r.add(
                IssueCode::PercentOutOfRange,
                format!("progress/{}.percent_done", p.id),
                format!("{pct}% done is outside 0..=100"),
            );
        }
    }
    r
}

/// Validates a scheduled task.
pub fn validate_task(t: &Task, _ctx: &ValidationContext) -> Report {
    let mut r = Report::default();
    if t.window.due < t.window.earliest_start {
        r.add(
            IssueCode::WindowEndsBeforeStart,
            "window.due",
            format!(
                "due {} is before earliest start {}",
                t.window.due, t.window.earliest_start
            ),
        );
    }
    let distinct: BTreeSet<_> = t.assigned.iter().collect();
    if distinct.len() < 2 {
        r.add(
            IssueCode::TooFewAssignees,
            "assigned",
            format!(
                "{} distinct inspector(s) assigned; an inspection needs two",
                distinct.len()
            ),
        );
    }
    if let Some(hidden) = t.hidden_until.filter(|h| *h > t.window.due) {
        r.add(
            IssueCode::HiddenPastDue,
            "hidden_until",
            format!("hidden until {hidden}, after the due day {}", t.window.due),
        );
    }
    if t.rule == TaskRule::LevelThreeDrawn && t.draw_id.is_none() {
        r.add(
            IssueCode::DrawnTaskWithoutDraw,
            "draw_id",
            "a level_three_drawn task names no random draw",
        );
    }
    r
}

/// Validates a recorded random draw (双随机): it must be re-runnable.
pub fn validate_random_draw(d: &RandomDraw, _ctx: &ValidationContext) -> Report {
    let mut r = Report::default();
    if !(d.pool_hash.len() == 64 && d.pool_hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))) {
        r.add(
            IssueCode::InvalidPoolHash,
            "pool_hash",
            format!("{:?} is not a SHA-256 in lower-case hex", d.pool_hash),
        );
    }
    if d.seed.parse::<u64>().is_err() {
        r.add(
            IssueCode::InvalidSeed,
            "seed",
            format!("{:?} is not a decimal u64", d.seed),
        );
    }
    require_text(&mut r, "method", &d.method, "draw method");
    let drawn = d.drawn_sites.len();
    if drawn > d.pool_size as usize {
        r.add(
            IssueCode::DrawExceedsPool,
            "drawn_sites",
            format!("{drawn} sites drawn from a pool of {}", d.pool_size),
        );
    }
    let mut seen = BTreeSet::new();
    for (n, s) in d.drawn_sites.iter().enumerate() {
        if !seen.insert(s) {
            r.add(
                IssueCode::DuplicateDrawnSite,
                format!("drawn_sites[{n}]"),
                format!("site {s} is drawn more than once"),
            );
        }
    }
    if drawn * 2 < d.pool_size as usize {
        r.add(
            IssueCode::DrawBelowHalfPool,
            "drawn_sites",
            format!("{drawn} of {} drawn, below the 50% the rule asks for", d.pool_size),
        );
    }
    r
}

#[cfg(test)]
mod tests;
