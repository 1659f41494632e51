//! Who may see and change which record.
//!
//! A user's [`Scope`] is their role and the GB/T 2260 regions they work in (a
//! city covers its counties, the province covers all). A record belongs to a
//! region through its [`Link`]: a site or a draw names its region; an
//! inspection, hazard or task names its site; a review or addendum names its
//! inspection. Regions are resolved against the server's current records, so a
//! site that moves takes its records with it.

use chrono::NaiveDate;
use mobile_schema::ids::{RecordId, UserId};
use mobile_schema::record::RecordKind;
use mobile_schema::region::RegionCode;
use mobile_schema::workflow::Role;
use serde::{Deserialize, Serialize};

use crate::change::{Change, Op};
use crate::outcome::{Refusal, RefusalCode};
use crate::state::RecordState;

/// A user as far as access goes, read from the user record on each request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    pub user: UserId,
    pub role: Role,
    pub regions: Vec<RegionCode>,
}

impl Scope {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Whether the region is one of the user's (admins cover everything).
    pub fn covers(&self, region: RegionCode) -> bool {
        self.is_admin() || self.regions.iter().any(|r| r.covers(region))
    }

    /// A short name of what this scope lets a user see: it changes when the role
    /// or the regions do, and a pull cursor carries it to notice that.
    pub fn tag(&self) -> String {
        let mut regions: Vec<u32> = self.regions.iter().map(|r| r.as_u32()).collect();
        regions.sort_unstable();
        regions.dedup();
        let text = format!("{:?}:{regions:?}", self.role);
        // FNV-1a: stable across builds, which std's hasher is not promised to be.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in text.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{:08x}", h as u32)
    }
}

/// What a record hangs on for scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    Region(RegionCode),
    Site(RecordId),
    Inspection(RecordId),
    /// Not (yet) known: e.g. a field missing from a malformed record.
    Unknown,
}

/// The unit that holds what a record of `kind` hangs on.
pub fn link_field(kind: RecordKind) -> &'static str {
    match kind {
        RecordKind::Site | RecordKind::RandomDraw => "region_code",
        RecordKind::Inspection | RecordKind::Hazard | RecordKind::Task => "site_id",
        RecordKind::Review | RecordKind::Addendum => "inspection_id",
    }
}

fn link_from(field: &str, raw: &str) -> Link {
    match field {
        "region_code" => serde_json::from_str::<RegionCode>(raw).map_or(Link::Unknown, Link::Region),
        "site_id" => serde_json::from_str::<RecordId>(raw).map_or(Link::Unknown, Link::Site),
        "inspection_id" => serde_json::from_str::<RecordId>(raw).map_or(Link::Unknown, Link::Inspection),
        _ => Link::Unknown,
    }
}

/// The link of a stored record, from its winning version of the link unit.
pub fn link_of_state(state: &RecordState) -> Link {
    let field = link_field(state.kind);
    match state.units.get(field).and_then(|u| u.winner()) {
        Some(w) => link_from(field, w.value.get()),
        None => Link::Unknown,
    }
}

/// The link a change gives its record: from a created document, or from an edit
/// that rewrites the link unit (a site moving to another county). `None` when
/// the change leaves the link as it was.
pub fn link_of_change(kind: RecordKind, change: &Change) -> Option<Link> {
    let field = link_field(kind);
    match &change.op {
        Op::Create { record, .. } => {
            // Only the link fields, left raw: the document is parsed in full once, by the engine.
            #[derive(Deserialize)]
            struct Links<'a> {
                #[serde(borrow)]
                region_code: Option<&'a serde_json::value::RawValue>,
                #[serde(borrow)]
                site_id: Option<&'a serde_json::value::RawValue>,
                #[serde(borrow)]
                inspection_id: Option<&'a serde_json::value::RawValue>,
            }
            let links: Links<'_> = serde_json::from_str(record.get()).ok()?;
            let raw = match field {
                "region_code" => links.region_code,
                "site_id" => links.site_id,
                _ => links.inspection_id,
            }?;
            Some(link_from(field, raw.get()))
        }
        Op::Edit { units } => units
            .iter()
            .rev()
            .find(|w| w.key == field)
            .map(|w| link_from(field, w.value.get())),
        Op::Transition { .. } => None,
    }
}

/// The region at the end of a link, following an inspection to its site.
/// `lookup` reads a record; `None` when a record on the way is not known.
pub fn region_of<E>(
    link: Link,
    lookup: &mut impl FnMut(RecordId) -> Result<Option<RecordState>, E>,
) -> Result<Option<RegionCode>, E> {
    let mut link = link;
    // At most inspection → site → region.
    for _ in 0..3 {
        link = match link {
            Link::Region(r) => return Ok(Some(r)),
            Link::Unknown => return Ok(None),
            Link::Site(id) | Link::Inspection(id) => match lookup(id)? {
                Some(state) => link_of_state(&state),
                None => return Ok(None),
            },
        };
    }
    Ok(None)
}

/// The user an addendum names as its author (its correction is theirs to
/// append or discard), as its current value says.
pub fn addendum_author(state: &RecordState) -> Option<UserId> {
    let w = state.units.get("author")?.winner()?;
    serde_json::from_str(w.value.get()).ok()
}

/// An addendum's correction is its author's to word, append or discard (or a
/// supervisor's), never another inspector's: the one rule the server's
/// engine and scope check, and the tablet's own checks, apply.
pub fn may_decide_addendum(state: &RecordState, role: Role, user: UserId) -> Result<(), Refusal> {
    if role == Role::Inspector && addendum_author(state) != Some(user) {
        return Err(Refusal::new(
            RefusalCode::RoleNotAllowed,
            "only the addendum's author or a supervisor may change, append or discard it",
        )
        .at("action"));
    }
    Ok(())
}

/// Whether the user wrote any version of the record.
pub fn authored(state: &RecordState, user: UserId) -> bool {
    state.meta.values().any(|m| m.user == user)
}

/// May `scope` make this change? `before` is the record as the server has it.
/// Content, workflow and role rules of the record kind are the engine's; this
/// is about whose record it is. A record whose region is not known yet (its
/// site is on another tablet still offline) is not refused: losing offline
/// work would be worse than letting it in.
///
/// A record the user may not see (a draw, a drawn task before its window
/// opens, a review of others' work) is answered as missing: the answer to a
/// write must not tell an inspector what a pull would not. `today` is the
/// server's day in Asia/Shanghai.
pub fn check_write<E>(
    scope: &Scope,
    kind: RecordKind,
    change: &Change,
    before: Option<&RecordState>,
    today: NaiveDate,
    lookup: &mut impl FnMut(RecordId) -> Result<Option<RecordState>, E>,
) -> Result<Result<(), Refusal>, E> {
    if scope.is_admin() {
        return Ok(Ok(()));
    }
    if scope.role == Role::Inspector
        && let Some(refusal) = inspector_may_not(kind, &change.op)
    {
        return Ok(Err(refusal));
    }
    // Another's addendum is theirs to word (its steps are the engine's to
    // check), and who wrote it is not changed.
    if scope.role == Role::Inspector
        && kind == RecordKind::Addendum
        && let Some(before) = before
        && let Op::Edit { units } = &change.op
    {
        if let Some(u) = units.iter().find(|u| u.key == "author") {
            return Ok(Err(Refusal::new(
                RefusalCode::RoleNotAllowed,
                "an addendum's author is not changed",
            )
            .at(u.key.clone())));
        }
        if let Err(refusal) = may_decide_addendum(before, scope.role, scope.user) {
            return Ok(Err(refusal));
        }
    }
    let outside = |region: RegionCode| {
        Refusal::new(
            RefusalCode::ForbiddenScope,
            format!("the record belongs to region {region}, outside this user's regions"),
        )
    };
    if let Some(before) = before
        && let Some(region) = region_of(link_of_state(before), lookup)?
    {
        if !scope.covers(region) {
            return Ok(Err(outside(region)));
        }
        if !matches!(change.op, Op::Create { .. }) && !visible(scope, before, Some(region), today, lookup)? {
            return Ok(Err(Refusal::new(
                RefusalCode::UnknownRecord,
                "no such record on the server",
            )));
        }
    }
    if let Some(link) = link_of_change(kind, change)
        && let Some(region) = region_of(link, lookup)?
        && !scope.covers(region)
    {
        return Ok(Err(outside(region).at(link_field(kind))));
    }
    Ok(Ok(()))
}

/// What an inspector may not write whatever the region: reviews and draws are
/// the supervisors' decisions, and tasks their plan. An inspector keeps a
/// task's `note`; its window, team, rule and `hidden_until` (which keeps a
/// drawn pond from being told in advance) are the planner's. Steps are the
/// state machines' (roles are checked there).
fn inspector_may_not(kind: RecordKind, op: &Op) -> Option<Refusal> {
    let planners = matches!(kind, RecordKind::Review | RecordKind::RandomDraw | RecordKind::Task);
    match op {
        Op::Create { .. } if planners => Some(Refusal::new(
            RefusalCode::RoleNotAllowed,
            format!("an inspector may not create a {}", kind.as_str()),
        )),
        Op::Edit { units } if matches!(kind, RecordKind::Review | RecordKind::RandomDraw) => Some(
            Refusal::new(
                RefusalCode::RoleNotAllowed,
                format!("an inspector may not edit a {}", kind.as_str()),
            )
            .at(units.first().map(|u| u.key.clone()).unwrap_or_default()),
        ),
        Op::Edit { units } if kind == RecordKind::Task => units.iter().find(|u| u.key != "note").map(|u| {
            Refusal::new(
                RefusalCode::RoleNotAllowed,
                "an inspector may edit only a task's note: its plan is the supervisors'",
            )
            .at(u.key.clone())
        }),
        _ => None,
    }
}

/// Whether a pull by `scope` shows the record. `region` is the record's region
/// ([`region_of`] its link); `today` is the date in Asia/Shanghai.
pub fn visible<E>(
    scope: &Scope,
    state: &RecordState,
    region: Option<RegionCode>,
    today: NaiveDate,
    lookup: &mut impl FnMut(RecordId) -> Result<Option<RecordState>, E>,
) -> Result<bool, E> {
    if scope.is_admin() {
        return Ok(true);
    }
    let Some(region) = region else {
        // Nowhere yet: only its author sees it.
        return Ok(authored(state, scope.user));
    };
    if !scope.covers(region) {
        return Ok(false);
    }
    if scope.role == Role::Supervisor {
        return Ok(true);
    }
    Ok(match state.kind {
        // Who is drawn is not told to those who may be drawn.
        RecordKind::RandomDraw => false,
        // An inspector sees the reviews of inspections they worked on.
        RecordKind::Review => match link_of_state(state) {
            Link::Inspection(id) => lookup(id)?.is_some_and(|i| authored(&i, scope.user)),
            _ => false,
        },
        // A drawn task stays hidden until its window opens.
        RecordKind::Task => hidden_until(state).is_none_or(|day| today >= day),
        _ => true,
    })
}

/// Whether the commit just stamped on `state` changed a unit that decides who
/// sees it: its link (site, inspection, region) or a drawn task's day.
pub fn visibility_changed(state: &RecordState) -> bool {
    let changed = |key: &str| state.units.get(key).is_some_and(|u| u.seq == state.commit_seq);
    changed(link_field(state.kind)) || (state.kind == RecordKind::Task && changed("hidden_until"))
}

/// The day a drawn task becomes visible to inspectors, if it is one.
pub fn hidden_until(state: &RecordState) -> Option<NaiveDate> {
    let w = state.units.get("hidden_until")?.winner()?;
    serde_json::from_str::<Option<NaiveDate>>(w.value.get()).ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(role: Role, regions: &[u32]) -> Scope {
        Scope {
            user: UserId::generate(),
            role,
            regions: regions.iter().map(|r| RegionCode::new(*r).unwrap()).collect(),
        }
    }

    #[test]
    fn a_city_covers_its_counties_and_the_province_covers_all() {
        let county = RegionCode::new(450_332).unwrap();
        assert!(scope(Role::Inspector, &[450_300]).covers(county));
        assert!(scope(Role::Inspector, &[450_000]).covers(county));
        assert!(!scope(Role::Inspector, &[450_100]).covers(county));
        assert!(scope(Role::Admin, &[]).covers(county));
    }

    #[test]
    fn the_tag_follows_role_and_regions_not_their_order() {
        let a = scope(Role::Inspector, &[450_300, 450_100]);
        let mut b = a.clone();
        b.regions.reverse();
        assert_eq!(a.tag(), b.tag());
        b.regions.pop();
        assert_ne!(a.tag(), b.tag());
        let mut c = a.clone();
        c.role = Role::Supervisor;
        assert_ne!(a.tag(), c.tag());
    }
}
