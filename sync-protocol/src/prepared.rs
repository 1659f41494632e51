//! What a change's content alone decides, worked out before the engine takes
//! it: its digest and, for a create, the document parsed, split into units and
//! read back as the record the new state holds. None of it reads the store, so
//! the server does it on the request's thread and its single writer, which
//! orders every change, only picks it up (a create's parsing was about a fifth
//! of the writer's time in a full push).

use mobile_schema::record::{AnyRecord, LayoutError, Unit};

use crate::change::{Change, Op};
use crate::engine::EngineConfig;
use crate::outcome::{Refusal, RefusalCode};

/// A change's content-only work; `Prepared::default()` is none of it done,
/// and the engine then does it itself.
#[derive(Debug, Clone, Default)]
pub struct Prepared {
    pub(crate) digest: Option<String>,
    pub(crate) create: Option<Result<ParsedCreate, Refusal>>,
}

/// A create's document, as the engine needs it.
#[derive(Debug, Clone)]
pub(crate) struct ParsedCreate {
    pub(crate) typed: AnyRecord,
    pub(crate) units: Vec<Unit>,
    /// The record a state made of exactly these units materializes to (its
    /// rules are checked on it).
    pub(crate) materialized: Result<AnyRecord, LayoutError>,
}

impl Prepared {
    pub fn of(config: &EngineConfig, change: &Change) -> Self {
        let create = match &change.op {
            // A document over the limit is refused before anything reads it.
            Op::Create { record, .. } if record.get().len() <= config.max_value_bytes * 4 => {
                Some(parse_create(config, change, record.get()))
            }
            _ => None,
        };
        Self {
            digest: Some(digest_of(change)),
            create,
        }
    }
}

pub(crate) fn digest_of(change: &Change) -> String {
    hex::encode(change.digest())
}

/// Parse a create's document: the refusals a document earns on its own, in
/// the order the engine reports them.
pub(crate) fn parse_create(config: &EngineConfig, change: &Change, document: &str) -> Result<ParsedCreate, Refusal> {
    let typed = AnyRecord::from_json(change.kind, document)
        .map_err(|e| Refusal::new(RefusalCode::InvalidStructure, e.to_string()).at(e.field()))?;
    if typed.id() != change.record {
        return Err(Refusal::new(
            RefusalCode::InvalidStructure,
            "the document's id is not the change's record",
        )
        .at("id"));
    }
    let units = typed
        .units()
        .map_err(|e| Refusal::new(RefusalCode::InvalidStructure, e.to_string()).at(e.field()))?;
    if units.len() > config.max_units_per_change {
        return Err(Refusal::new(RefusalCode::TooLarge, "too many units in one record"));
    }
    // As `RecordState::materialize` reads a new state: units in key order,
    // the workflow at its initial state.
    let mut sorted: Vec<(&str, &serde_json::value::RawValue)> =
        units.iter().map(|(k, v)| (k.as_str(), v.as_ref())).collect();
    // Stable, then the first of a repeated key: a list repeating an item id
    // gives its key twice, and the state keeps the first (the second is the
    // same version again).
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    sorted.dedup_by(|later, first| later.0 == first.0);
    let initial = change.kind.layout().workflow.map(|(_, initial)| initial);
    let materialized = AnyRecord::from_units(change.kind, change.record, initial, sorted);
    Ok(ParsedCreate {
        typed,
        units,
        materialized,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hlc::Hlc;
    use crate::ids::VersionId;
    use crate::state::{RecordState, VersionMeta};
    use crate::unit::LiveVersion;
    use crate::value::UnitValue;
    use mobile_schema::ids::{DeviceId, InspectionId, SiteId, UserId};
    use mobile_schema::record::RecordKind;

    fn create(doc: &impl serde::Serialize, record: mobile_schema::ids::RecordId) -> Change {
        Change {
            seq: 1,
            hlc: Hlc::default(),
            kind: RecordKind::Inspection,
            record,
            op: Op::Create {
                record: UnitValue::of(doc).unwrap(),
                versions: None,
            },
        }
    }

    #[test]
    fn a_prepared_create_reads_back_as_the_state_built_from_its_units() {
        let id = InspectionId::generate();
        let doc = mobile_schema::sample::inspection(id, SiteId::generate(), DeviceId::generate());
        let change = create(&doc, id.into());
        let document = serde_json::to_string(&doc).unwrap();
        let parsed = parse_create(&EngineConfig::default(), &change, &document).unwrap();
        // The state the engine builds from the units (in another order),
        // materialized the usual way.
        let mut state = RecordState::new(change.kind, change.record);
        let meta = VersionMeta {
            user: UserId::generate(),
            device: DeviceId::generate(),
            hlc: Hlc::default(),
            received_ms: 0,
        };
        for (key, value) in parsed.units.iter().rev() {
            let v = LiveVersion {
                id: VersionId::new(crate::ids::ReplicaId::generate(), 1),
                hlc: Hlc::default(),
                value: UnitValue::from_raw(value.clone()),
            };
            state.apply(key, v, &[], meta);
        }
        assert!(
            parsed.units.iter().filter(|(k, _)| k.contains('/')).count() >= 2,
            "the sample has entries of a map or set: {:?}",
            parsed.units.iter().map(|(k, _)| k).collect::<Vec<_>>()
        );
        assert_eq!(parsed.materialized.unwrap(), state.materialize().unwrap());
        assert_eq!(parsed.typed.id(), change.record);
    }

    #[test]
    fn a_document_for_another_record_is_refused_at_its_id() {
        let id = InspectionId::generate();
        let doc = mobile_schema::sample::inspection(id, SiteId::generate(), DeviceId::generate());
        let change = create(&doc, InspectionId::generate().into());
        let document = serde_json::to_string(&doc).unwrap();
        let refused = parse_create(&EngineConfig::default(), &change, &document).unwrap_err();
        assert_eq!(refused.code, RefusalCode::InvalidStructure);
        assert_eq!(refused.field.as_deref(), Some("id"));
    }

    #[test]
    fn a_repeated_item_id_reads_back_as_its_first_item_as_the_state_keeps_it() {
        use mobile_schema::ids::{ItemId, ReviewId};
        use mobile_schema::review::{Comment, Decision, Review};
        let comment = |text: &str| Comment {
            id: ItemId::from_name("test", "c1"),
            author: UserId::generate(),
            text: text.into(),
            unit: None,
            written_at: mobile_schema::time::shanghai_at_ms(1_000),
        };
        let review = Review {
            id: ReviewId::generate(),
            schema_version: Review::SCHEMA_VERSION,
            inspection_id: InspectionId::generate(),
            reviewer: UserId::generate(),
            decision: Decision::Return,
            decided_at: mobile_schema::time::shanghai_at_ms(1_000),
            comments: vec![comment("请补充照片"), comment(" ")],
        };
        let mut doc = serde_json::to_value(mobile_schema::record::AnyRecord::from(review.clone())).unwrap();
        doc.as_object_mut().unwrap().remove("kind");
        let change = Change {
            seq: 1,
            hlc: Hlc::default(),
            kind: RecordKind::Review,
            record: review.id.into(),
            op: Op::Create {
                record: UnitValue::of(&doc).unwrap(),
                versions: None,
            },
        };
        let parsed = parse_create(&EngineConfig::default(), &change, &doc.to_string()).unwrap();
        let Ok(mobile_schema::record::AnyRecord::Review(read)) = parsed.materialized else {
            panic!("a review reads back as a review");
        };
        assert_eq!(read.comments.len(), 1);
        assert_eq!(read.comments[0].text, "请补充照片");
    }
}
