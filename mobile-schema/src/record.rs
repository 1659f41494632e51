//! Records and their merge units.
//!
//! Every record kind declares its layout: which top-level fields are merge units
//! on their own (scalars, merged as a whole), which are maps whose entries merge
//! one by one (checklist answers by item code), and which are observed-remove
//! collections whose items merge one by one (evidence, comments, level history).
//! The workflow field (status/state) is not a unit: the server decides it.
//!
//! A unit is named by its key: `fix`, `answers/TP-03`, `evidence/<item id>`. Its
//! value is JSON text; `null` in a map or collection entry means removed.

use std::fmt::Write as _;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::hazard::Hazard;
use crate::ids::RecordId;
use crate::inspection::Inspection;
use crate::review::{Addendum, Review};
use crate::site::Site;
use crate::task::{RandomDraw, Task};

/// The kinds of record that sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    Site,
    Inspection,
    Hazard,
    Review,
    Addendum,
    Task,
    RandomDraw,
}

impl RecordKind {
    pub const ALL: [RecordKind; 7] = [
        RecordKind::Site,
        RecordKind::Inspection,
        RecordKind::Hazard,
        RecordKind::Review,
        RecordKind::Addendum,
        RecordKind::Task,
        RecordKind::RandomDraw,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Site => "site",
            RecordKind::Inspection => "inspection",
            RecordKind::Hazard => "hazard",
            RecordKind::Review => "review",
            RecordKind::Addendum => "addendum",
            RecordKind::Task => "task",
            RecordKind::RandomDraw => "random_draw",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub fn layout(self) -> &'static Layout {
        match self {
            RecordKind::Site => &SITE,
            RecordKind::Inspection => &INSPECTION,
            RecordKind::Hazard => &HAZARD,
            RecordKind::Review => &REVIEW,
            RecordKind::Addendum => &ADDENDUM,
            RecordKind::Task => &TASK,
            RecordKind::RandomDraw => &RANDOM_DRAW,
        }
    }
}

/// How a field merges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// The whole value is one unit.
    Scalar,
    /// A JSON object; each entry is a unit keyed `field/entry`.
    Map,
    /// A JSON array of items with an `id`; each item is a unit keyed `field/id`.
    Set,
}

/// One top-level field of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSpec {
    pub name: &'static str,
    pub shape: Shape,
    /// Signing an inspection locks this field's units.
    pub lockable: bool,
}

const fn scalar(name: &'static str) -> FieldSpec {
    FieldSpec {
        name,
        shape: Shape::Scalar,
        lockable: false,
    }
}
const fn locked(name: &'static str) -> FieldSpec {
    FieldSpec {
        name,
        shape: Shape::Scalar,
        lockable: true,
    }
}
const fn map_locked(name: &'static str) -> FieldSpec {
    FieldSpec {
        name,
        shape: Shape::Map,
        lockable: true,
    }
}
const fn set(name: &'static str) -> FieldSpec {
    FieldSpec {
        name,
        shape: Shape::Set,
        lockable: false,
    }
}

/// A record kind's merge layout.
#[derive(Debug)]
pub struct Layout {
    pub kind: RecordKind,
    pub schema_version: u32,
    pub fields: &'static [FieldSpec],
    /// The field the workflow owns, with its initial state.
    pub workflow: Option<(&'static str, &'static str)>,
}

impl Layout {
    /// The field a unit key belongs to, if the key is well formed for this kind.
    pub fn field_of(&self, key: &str) -> Option<&'static FieldSpec> {
        let (name, entry) = match key.split_once('/') {
            Some((n, e)) => (n, Some(e)),
            None => (key, None),
        };
        let spec = self.fields.iter().find(|f| f.name == name)?;
        match (spec.shape, entry) {
            (Shape::Scalar, None) => Some(spec),
            (Shape::Map | Shape::Set, Some(e)) if !e.is_empty() && e.len() <= 128 => Some(spec),
            _ => None,
        }
    }
}

static SITE: Layout = Layout {
    kind: RecordKind::Site,
    schema_version: Site::SCHEMA_VERSION,
    fields: &[
        scalar("name"),
        scalar("operator"),
        scalar("region_code"),
        scalar("location"),
        scalar("status"),
        scalar("details"),
        scalar("priority"),
        set("levels"),
        set("obligations"),
        set("progress"),
    ],
    workflow: None,
};

static INSPECTION: Layout = Layout {
    kind: RecordKind::Inspection,
    schema_version: Inspection::SCHEMA_VERSION,
    fields: &[
        locked("site_id"),
        locked("task_id"),
        locked("team"),
        locked("device_id"),
        locked("times"),
        locked("fix"),
        locked("checklist"),
        map_locked("answers"),
        set("evidence"),
        locked("conclusion"),
        locked("signoff"),
    ],
    workflow: Some(("status", "draft")),
};

static HAZARD: Layout = Layout {
    kind: RecordKind::Hazard,
    schema_version: Hazard::SCHEMA_VERSION,
    fields: &[
        scalar("inspection_id"),
        scalar("site_id"),
        scalar("category"),
        scalar("severity"),
        scalar("description"),
        scalar("deadline"),
        scalar("responsible_party"),
        set("evidence"),
        scalar("notified_on"),
        set("rectification_evidence"),
        set("verification_evidence"),
    ],
    workflow: Some(("state", "identified")),
};

static REVIEW: Layout = Layout {
    kind: RecordKind::Review,
    schema_version: Review::SCHEMA_VERSION,
    fields: &[
        scalar("inspection_id"),
        scalar("reviewer"),
        scalar("decision"),
        scalar("decided_at"),
        set("comments"),
    ],
    workflow: None,
};

static ADDENDUM: Layout = Layout {
    kind: RecordKind::Addendum,
    schema_version: Addendum::SCHEMA_VERSION,
    fields: &[
        scalar("inspection_id"),
        scalar("author"),
        scalar("text"),
        scalar("corrects"),
        scalar("written_at"),
    ],
    workflow: Some(("state", "pending")),
};

static TASK: Layout = Layout {
    kind: RecordKind::Task,
    schema_version: Task::SCHEMA_VERSION,
    fields: &[
        scalar("site_id"),
        scalar("year"),
        scalar("window"),
        scalar("rule"),
        scalar("assigned"),
        scalar("draw_id"),
        scalar("hidden_until"),
        scalar("note"),
    ],
    workflow: Some(("state", "planned")),
};

static RANDOM_DRAW: Layout = Layout {
    kind: RecordKind::RandomDraw,
    schema_version: RandomDraw::SCHEMA_VERSION,
    fields: &[
        scalar("year"),
        scalar("region_code"),
        scalar("pool_hash"),
        scalar("pool_size"),
        scalar("pool"),
        scalar("flagged"),
        scalar("seed"),
        scalar("method"),
        scalar("drawn_sites"),
        scalar("drawn_inspectors"),
        scalar("drawn_by"),
        scalar("drawn_at"),
    ],
    workflow: None,
};

/// Any record, tagged by kind on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)]
pub enum AnyRecord {
    Site(Site),
    Inspection(Inspection),
    Hazard(Hazard),
    Review(Review),
    Addendum(Addendum),
    Task(Task),
    RandomDraw(RandomDraw),
}

/// A record's units could not be split or joined into a valid record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("`{key}` is not a unit of a {kind:?} record")]
    UnknownUnit { kind: RecordKind, key: String },
    #[error("item `{key}` carries the id {found:?}")]
    ItemIdMismatch { key: String, found: String },
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
}

impl LayoutError {
    /// The field path at fault.
    pub fn field(&self) -> &str {
        match self {
            LayoutError::UnknownUnit { key, .. } | LayoutError::ItemIdMismatch { key, .. } => key,
            LayoutError::Invalid { field, .. } => field,
        }
    }
}

/// A unit key and its JSON value.
pub type Unit = (String, Box<RawValue>);

fn raw(v: &serde_json::Value) -> Result<Box<RawValue>, LayoutError> {
    serde_json::value::to_raw_value(v).map_err(|e| LayoutError::Invalid {
        field: String::new(),
        message: e.to_string(),
    })
}

impl AnyRecord {
    pub fn kind(&self) -> RecordKind {
        match self {
            AnyRecord::Site(_) => RecordKind::Site,
            AnyRecord::Inspection(_) => RecordKind::Inspection,
            AnyRecord::Hazard(_) => RecordKind::Hazard,
            AnyRecord::Review(_) => RecordKind::Review,
            AnyRecord::Addendum(_) => RecordKind::Addendum,
            AnyRecord::Task(_) => RecordKind::Task,
            AnyRecord::RandomDraw(_) => RecordKind::RandomDraw,
        }
    }

    pub fn id(&self) -> RecordId {
        match self {
            AnyRecord::Site(r) => r.id.into(),
            AnyRecord::Inspection(r) => r.id.into(),
            AnyRecord::Hazard(r) => r.id.into(),
            AnyRecord::Review(r) => r.id.into(),
            AnyRecord::Addendum(r) => r.id.into(),
            AnyRecord::Task(r) => r.id.into(),
            AnyRecord::RandomDraw(r) => r.id.into(),
        }
    }

    fn to_object(&self) -> Result<serde_json::Map<String, serde_json::Value>, LayoutError> {
        let v = match self {
            AnyRecord::Site(r) => serde_json::to_value(r),
            AnyRecord::Inspection(r) => serde_json::to_value(r),
            AnyRecord::Hazard(r) => serde_json::to_value(r),
            AnyRecord::Review(r) => serde_json::to_value(r),
            AnyRecord::Addendum(r) => serde_json::to_value(r),
            AnyRecord::Task(r) => serde_json::to_value(r),
            AnyRecord::RandomDraw(r) => serde_json::to_value(r),
        };
        match v {
            Ok(serde_json::Value::Object(m)) => Ok(m),
            Ok(_) => Err(LayoutError::Invalid {
                field: String::new(),
                message: "a record must serialize to an object".into(),
            }),
            Err(e) => Err(LayoutError::Invalid {
                field: String::new(),
                message: e.to_string(),
            }),
        }
    }

    /// The record's content as merge units, in layout order. The workflow field,
    /// the id and the schema version are not units.
    pub fn units(&self) -> Result<Vec<Unit>, LayoutError> {
        let layout = self.kind().layout();
        let mut obj = self.to_object()?;
        let mut out = Vec::with_capacity(layout.fields.len() + 24);
        for f in layout.fields {
            let v = obj.remove(f.name).unwrap_or(serde_json::Value::Null);
            match (f.shape, v) {
                (Shape::Scalar, v) => out.push((f.name.to_string(), raw(&v)?)),
                (Shape::Map, serde_json::Value::Object(m)) => {
                    for (k, v) in m {
                        out.push((format!("{}/{k}", f.name), raw(&v)?));
                    }
                }
                (Shape::Set, serde_json::Value::Array(items)) => {
                    for item in items {
                        let id = item
                            .get("id")
                            .and_then(|i| i.as_str())
                            .ok_or_else(|| LayoutError::Invalid {
                                field: f.name.to_string(),
                                message: "collection items need a string `id`".into(),
                            })?;
                        out.push((format!("{}/{id}", f.name), raw(&item)?));
                    }
                }
                (Shape::Map | Shape::Set, serde_json::Value::Null) => {}
                (_, _) => {
                    return Err(LayoutError::Invalid {
                        field: f.name.to_string(),
                        message: "wrong JSON shape for the field's layout".into(),
                    });
                }
            }
        }
        Ok(out)
    }

    /// The workflow state as its wire name, for kinds that have one.
    pub fn workflow_state(&self) -> Option<String> {
        let (field, _) = self.kind().layout().workflow?;
        self.to_object().ok()?.get(field)?.as_str().map(str::to_string)
    }

    /// Build a record from its units. Units must be sorted by key within each
    /// collection for a stable item order; unknown keys and values of the wrong
    /// type are errors naming the field.
    pub fn from_units<'a>(
        kind: RecordKind,
        id: RecordId,
        workflow_state: Option<&str>,
        units: impl IntoIterator<Item = (&'a str, &'a RawValue)>,
    ) -> Result<AnyRecord, LayoutError> {
        let layout = kind.layout();
        // Assemble JSON text directly: cheaper than building a Value tree.
        let mut scalars: Vec<(&'static str, &'a RawValue)> = Vec::new();
        let mut entries: Vec<Vec<(&'a str, &'a RawValue)>> = vec![Vec::new(); layout.fields.len()];
        for (key, value) in units {
            let Some(spec) = layout.field_of(key) else {
                return Err(LayoutError::UnknownUnit {
                    kind,
                    key: key.to_string(),
                });
            };
            let idx = layout.fields.iter().position(|f| f.name == spec.name).unwrap_or(0);
            match spec.shape {
                Shape::Scalar => scalars.push((spec.name, value)),
                Shape::Map | Shape::Set => {
                    if value.get() == "null" {
                        continue; // removed entry
                    }
                    let entry = key.split_once('/').map(|(_, e)| e).unwrap_or_default();
                    entries[idx].push((entry, value));
                }
            }
        }
        let mut text = String::with_capacity(4096);
        text.push('{');
        let _ = write!(text, "\"id\":\"{id}\",\"schema_version\":{}", layout.schema_version);
        if let Some((field, initial)) = layout.workflow {
            let state = serde_json::to_string(workflow_state.unwrap_or(initial)).unwrap_or_default();
            let _ = write!(text, ",\"{field}\":{state}");
        }
        for (name, value) in &scalars {
            let _ = write!(text, ",\"{name}\":{}", value.get());
        }
        for (idx, f) in layout.fields.iter().enumerate() {
            match f.shape {
                Shape::Scalar => {}
                Shape::Map => {
                    let _ = write!(text, ",\"{}\":{{", f.name);
                    for (i, (k, v)) in entries[idx].iter().enumerate() {
                        let k = serde_json::to_string(k).unwrap_or_default();
                        let _ = write!(text, "{}{k}:{}", if i > 0 { "," } else { "" }, v.get());
                    }
                    text.push('}');
                }
                Shape::Set => {
                    let _ = write!(text, ",\"{}\":[", f.name);
                    for (i, (_, v)) in entries[idx].iter().enumerate() {
                        let _ = write!(text, "{}{}", if i > 0 { "," } else { "" }, v.get());
                    }
                    text.push(']');
                }
            }
        }
        text.push('}');
        let record = Self::from_json(kind, &text)?;
        // Items must carry the id their key names, or two keys could hold one item.
        for (idx, f) in layout.fields.iter().enumerate() {
            if f.shape != Shape::Set {
                continue;
            }
            for (entry, v) in &entries[idx] {
                let found = serde_json::from_str::<serde_json::Value>(v.get())
                    .ok()
                    .and_then(|v| v.get("id").and_then(|i| i.as_str()).map(str::to_string))
                    .unwrap_or_default();
                if found != *entry {
                    return Err(LayoutError::ItemIdMismatch {
                        key: format!("{}/{entry}", f.name),
                        found,
                    });
                }
            }
        }
        Ok(record)
    }

    /// Decode a record of a known kind from its JSON document, naming the field at fault.
    pub fn from_json(kind: RecordKind, text: &str) -> Result<AnyRecord, LayoutError> {
        fn parse<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, LayoutError> {
            // Tracking the path costs a third of the parse; a valid record (the
            // usual case) does not need it, so it is only paid to name the field
            // of a failure.
            if let Ok(r) = serde_json::from_str(text) {
                return Ok(r);
            }
            let de = &mut serde_json::Deserializer::from_str(text);
            serde_path_to_error::deserialize(de).map_err(|e| LayoutError::Invalid {
                field: e.path().to_string(),
                message: e.inner().to_string(),
            })
        }
        Ok(match kind {
            RecordKind::Site => AnyRecord::Site(parse(text)?),
            RecordKind::Inspection => AnyRecord::Inspection(parse(text)?),
            RecordKind::Hazard => AnyRecord::Hazard(parse(text)?),
            RecordKind::Review => AnyRecord::Review(parse(text)?),
            RecordKind::Addendum => AnyRecord::Addendum(parse(text)?),
            RecordKind::Task => AnyRecord::Task(parse(text)?),
            RecordKind::RandomDraw => AnyRecord::RandomDraw(parse(text)?),
        })
    }
}

macro_rules! any_record_from {
    ($($t:ident),*) => {
        $(impl From<$t> for AnyRecord {
            fn from(r: $t) -> Self {
                AnyRecord::$t(r)
            }
        })*
    };
}
any_record_from!(Site, Inspection, Hazard, Review, Addendum, Task, RandomDraw);
