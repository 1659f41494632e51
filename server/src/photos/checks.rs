//! Evidence checks of an inspection against its photos: proof of presence.
//!
//! Each check is a flag in the domain's style (`{code, field, message}`, the
//! message saying what was compared with what). The fix check reuses the
//! domain validation (`outside_site`); the photo checks compare each declared
//! photo's *EXIF* (not what the tablet declared) with the site and the visit.
//!
//! The report is stored in the `photos` tree under the inspection and served
//! at `GET /api/v1/inspections/{id}/evidence`. It is recomputed when a photo
//! the inspection names arrives, and on every read (so a record that changed
//! since is never shown stale). It is not (yet) part of the record's own
//! `flags`, which the sync engine recomputes from the record alone.

use chrono::{DateTime, Duration, FixedOffset};
use mobile_schema::geo::{self, GnssFix, LatLon, Location};
use mobile_schema::ids::RecordId;
use mobile_schema::inspection::{EvidenceKind, Inspection};
use mobile_schema::record::AnyRecord;
use mobile_schema::site::Site;
use mobile_schema::validation::{IssueCode, validate_inspection};
use serde::{Deserialize, Serialize};
use sync_protocol::Flag;

use super::exif::{ExifFacts, TimeSource};
use super::store::{decode, encode, keys};
use super::{PhotoError, PhotoSettings, Photos};

/// Flag codes of the evidence checks (besides the domain's `outside_site` and `missing_fix`).
pub mod codes {
    pub const FIX_IMPRECISE: &str = "fix_imprecise";
    pub const SITE_WITHOUT_LOCATION: &str = "site_without_location";
    pub const PHOTO_NOT_UPLOADED: &str = "photo_not_uploaded";
    pub const PHOTO_AWAY_FROM_SITE: &str = "photo_away_from_site";
    pub const PHOTO_WITHOUT_POSITION: &str = "photo_without_position";
    pub const PHOTO_OUTSIDE_VISIT: &str = "photo_outside_visit";
    pub const PHOTO_WITHOUT_TIME: &str = "photo_without_capture_time";
}

/// One declared photo as the checks saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhotoEvidence {
    /// 1-based position in the record's evidence list: "photo 3".
    pub n: usize,
    pub evidence_id: String,
    pub sha256: String,
    pub uploaded: bool,
    #[serde(default)]
    pub exif: ExifFacts,
    /// Metres outside the site's area (or from the fix when the site has no location).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distance_m: Option<f64>,
}

/// The evidence checks of one inspection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvidenceReport {
    pub inspection: RecordId,
    /// The record's commit seq the report was computed from.
    pub record_commit_seq: u64,
    pub computed_ms: u64,
    pub flags: Vec<Flag>,
    pub photos: Vec<PhotoEvidence>,
}

/// Distances read better in km past a kilometre (as in the domain's messages).
fn distance(m: f64) -> String {
    if m >= 1000.0 {
        format!("{:.1} km", m / 1000.0)
    } else {
        format!("{m:.0} m")
    }
}

fn span(d: Duration) -> String {
    let minutes = d.num_minutes().abs();
    match minutes {
        m if m >= 48 * 60 => format!("{} days", m / (24 * 60)),
        m if m >= 60 => format!("{} h {} min", m / 60, m % 60),
        m => format!("{m} min"),
    }
}

fn flag(code: &str, field: String, message: String) -> Flag {
    Flag {
        code: code.to_string(),
        field,
        message,
    }
}

fn usable(loc: &Location) -> bool {
    geo::bounds::possible(loc.lat, loc.lon)
        && loc
            .polygon
            .as_deref()
            .unwrap_or_default()
            .iter()
            .all(|p| geo::bounds::possible(p.lat, p.lon))
}

/// The checks, pure: the inspection, its site, and each declared photo's stored facts.
pub fn evaluate(
    inspection: &Inspection,
    site: Option<&Site>,
    photo_facts: &[Option<ExifFacts>],
    settings: &PhotoSettings,
) -> (Vec<Flag>, Vec<PhotoEvidence>) {
    let mut flags = Vec::new();
    let location = site.and_then(|s| s.location.as_ref()).filter(|l| usable(l));
    let area = location.map(|l| match (&l.polygon, l.radius_m) {
        (Some(p), _) if p.len() >= 3 => "polygon",
        (_, Some(_)) => "radius",
        _ => "point",
    });

    // The fix: the domain's own check (inside the radius or polygon, allowing
    // for accuracy and tolerance), and whether its accuracy can show anything.
    if let Some(site) = site {
        let ctx = settings.rules.context().with_site(site);
        let report = validate_inspection(inspection, &ctx);
        for issue in report.flags {
            if matches!(issue.code, IssueCode::OutsideSite | IssueCode::MissingFix) {
                flags.push(flag(issue.code.as_str(), issue.field, issue.message));
            }
        }
        if location.is_none() {
            flags.push(flag(
                codes::SITE_WITHOUT_LOCATION,
                "site_id".into(),
                format!("site {} has no usable location: presence cannot be checked", site.id),
            ));
        }
    }
    if let Some(fix) = &inspection.fix
        && fix.accuracy_m.is_finite()
        && fix.accuracy_m > settings.fix_max_accuracy_m
    {
        flags.push(flag(
            codes::FIX_IMPRECISE,
            "fix.accuracy_m".into(),
            format!(
                "fix accuracy {}: worse than the {} that can show presence at the site",
                distance(fix.accuracy_m),
                distance(settings.fix_max_accuracy_m)
            ),
        ));
    }

    let tolerance = Duration::minutes(settings.capture_time_tolerance_min);
    let window = match inspection.times.end {
        Some(end) if end < inspection.times.start => None,
        end => Some((inspection.times.start, end)),
    };
    let mut photos = Vec::new();
    for (i, ev) in inspection.evidence.iter().enumerate() {
        let n = i + 1;
        let what = match ev.kind {
            EvidenceKind::Photo => "photo",
            EvidenceKind::Document => "document",
        };
        let field = format!("evidence/{}", ev.id);
        let facts = photo_facts.get(i).cloned().flatten();
        let mut seen = PhotoEvidence {
            n,
            evidence_id: ev.id.to_string(),
            sha256: ev.sha256.to_string(),
            uploaded: facts.is_some(),
            exif: facts.clone().unwrap_or_default(),
            distance_m: None,
        };
        let Some(facts) = facts else {
            flags.push(flag(
                codes::PHOTO_NOT_UPLOADED,
                format!("{field}.sha256"),
                format!(
                    "{what} {n} (sha256 {}…) is declared on the record but not uploaded yet",
                    ev.sha256.as_str().get(..12).unwrap_or_default()
                ),
            ));
            photos.push(seen);
            continue;
        };
        if ev.kind == EvidenceKind::Document {
            photos.push(seen);
            continue;
        }
        match facts.position {
            None => flags.push(flag(
                codes::PHOTO_WITHOUT_POSITION,
                format!("{field}.position"),
                format!("photo {n} has no GPS position in its EXIF"),
            )),
            Some(p) => {
                if let Some(f) = position_flag(
                    n,
                    p,
                    location,
                    area,
                    inspection.fix.as_ref(),
                    settings,
                    &field,
                    &mut seen,
                ) {
                    flags.push(f);
                }
            }
        }
        match (facts.capture_time, window) {
            (None, _) => flags.push(flag(
                codes::PHOTO_WITHOUT_TIME,
                format!("{field}.capture_time"),
                format!("photo {n} has no capture time in its EXIF"),
            )),
            (Some(t), Some(w)) => {
                if let Some(f) = time_flag(n, t, facts.time_source, w, tolerance, &field) {
                    flags.push(f);
                }
            }
            (Some(_), None) => {}
        }
        photos.push(seen);
    }
    (flags, photos)
}

#[allow(clippy::too_many_arguments)]
fn position_flag(
    n: usize,
    p: LatLon,
    location: Option<&Location>,
    area: Option<&str>,
    fix: Option<&GnssFix>,
    settings: &PhotoSettings,
    field: &str,
    seen: &mut PhotoEvidence,
) -> Option<Flag> {
    let allowed = settings.photo_max_distance_m;
    if let Some(loc) = location {
        let outside = loc.distance_outside_m(p);
        seen.distance_m = Some(outside);
        let what = match area {
            Some("point") | None => "from the site".to_string(),
            Some(a) => format!("outside the site {a}"),
        };
        return (outside > allowed).then(|| {
            flag(
                codes::PHOTO_AWAY_FROM_SITE,
                format!("{field}.position"),
                format!(
                    "photo {n} taken {} {what} (EXIF position {:.5}, {:.5}; allowed {})",
                    distance(outside),
                    p.lat,
                    p.lon,
                    distance(allowed)
                ),
            )
        });
    }
    let fix = fix.filter(|f| geo::bounds::possible(f.lat, f.lon))?;
    let d = geo::haversine_m(fix.point(), p);
    seen.distance_m = Some(d);
    let accuracy = if fix.accuracy_m.is_finite() {
        fix.accuracy_m.max(0.0)
    } else {
        0.0
    };
    (d > allowed + accuracy).then(|| {
        flag(
            codes::PHOTO_AWAY_FROM_SITE,
            format!("{field}.position"),
            format!(
                "photo {n} taken {} from the record's fix (the site has no location; fix accuracy {}, allowed {})",
                distance(d),
                distance(accuracy),
                distance(allowed)
            ),
        )
    })
}

fn time_flag(
    n: usize,
    t: DateTime<FixedOffset>,
    source: Option<TimeSource>,
    (start, end): (DateTime<FixedOffset>, Option<DateTime<FixedOffset>>),
    tolerance: Duration,
    field: &str,
) -> Option<Flag> {
    let note = match source {
        Some(TimeSource::AssumedShanghai) => " (EXIF time without offset, read as Asia/Shanghai)",
        Some(TimeSource::Gps) => " (GPS time)",
        _ => "",
    };
    let message = if mobile_schema::time::before_by_more_than(t, start, tolerance) {
        format!(
            "photo {n} taken {t}{note}, {} before the visit started at {start} (tolerance {})",
            span(start - t),
            span(tolerance)
        )
    } else if let Some(end) = end.filter(|e| mobile_schema::time::after_by_more_than(t, *e, tolerance)) {
        format!(
            "photo {n} taken {t}{note}, {} after the visit ended at {end} (tolerance {})",
            span(t - end),
            span(tolerance)
        )
    } else {
        return None;
    };
    Some(flag(
        codes::PHOTO_OUTSIDE_VISIT,
        format!("{field}.capture_time"),
        message,
    ))
}

impl Photos {
    /// Recomputes and stores the evidence report of an inspection; `None` when
    /// the server has no such inspection (yet).
    pub fn refresh_evidence(&self, id: RecordId) -> Result<Option<EvidenceReport>, PhotoError> {
        let storage = &self.inner.storage;
        let Some(state) = storage.record(id).map_err(|e| PhotoError::Internal(e.to_string()))? else {
            return Ok(None);
        };
        let Ok(AnyRecord::Inspection(inspection)) = state.materialize() else {
            return Ok(None);
        };
        let site = match storage
            .record(inspection.site_id.into())
            .map_err(|e| PhotoError::Internal(e.to_string()))?
            .map(|s| s.materialize())
        {
            Some(Ok(AnyRecord::Site(s))) => Some(s),
            _ => None,
        };
        let mut facts = Vec::with_capacity(inspection.evidence.len());
        for ev in &inspection.evidence {
            let sha = ev.sha256.as_str();
            self.note_named_by(sha, id)?;
            facts.push(self.photo(sha)?.map(|m| m.exif));
        }
        let (flags, photos) = evaluate(&inspection, site.as_ref(), &facts, &self.inner.settings);
        let report = EvidenceReport {
            inspection: id,
            record_commit_seq: state.commit_seq,
            computed_ms: self.now_ms(),
            flags,
            photos,
        };
        let key = keys::evidence(id);
        let changed = match self.inner.tree.get(&key)? {
            Some(old) => decode::<EvidenceReport>(&old, "evidence report")
                .map(|o| {
                    o.flags != report.flags
                        || o.photos != report.photos
                        || o.record_commit_seq != report.record_commit_seq
                })
                .unwrap_or(true),
            None => true,
        };
        if changed {
            self.inner.tree.insert(key, encode(&report))?;
        }
        // On the record itself too, so supervisors' devices get them by pull;
        // minus what the record's own validation already says (the fix checks).
        let own: Vec<(&str, &str)> = state
            .flags
            .iter()
            .map(|f| (f.code.as_str(), f.field.as_str()))
            .collect();
        let evidence: Vec<Flag> = report
            .flags
            .iter()
            .filter(|f| !own.contains(&(f.code.as_str(), f.field.as_str())))
            .cloned()
            .collect();
        // Only when they changed: every write to the store costs an fsync.
        if state.evidence != evidence {
            storage
                .annotate(id, evidence)
                .map_err(|e| PhotoError::Internal(e.to_string()))?;
        }
        Ok(Some(report))
    }

    /// The stored report, as last computed.
    pub fn stored_evidence(&self, id: RecordId) -> Result<Option<EvidenceReport>, PhotoError> {
        match self.inner.tree.get(keys::evidence(id))? {
            Some(v) => Ok(Some(decode(&v, "evidence report")?)),
            None => Ok(None),
        }
    }
}
