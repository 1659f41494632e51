//! JSON Schemas of the records, generated from the Rust types so that they cannot
//! drift from what serde accepts. The committed copies under `schemas/` are for
//! tablet developers and reviewers; a test keeps them current.

use crate::hazard::Hazard;
use crate::inspection::Inspection;
use crate::record::RecordKind;
use crate::review::{Addendum, Review};
use crate::site::Site;
use crate::task::{RandomDraw, Task};

/// The JSON Schema (draft 2020-12) of one record kind, as serde writes and reads it
/// (the record alone, without the `kind` tag that [`crate::AnyRecord`] adds).
pub fn schema_for(kind: RecordKind) -> serde_json::Value {
    let schema = match kind {
        RecordKind::Site => schemars::schema_for!(Site),
        RecordKind::Inspection => schemars::schema_for!(Inspection),
        RecordKind::Hazard => schemars::schema_for!(Hazard),
        RecordKind::Review => schemars::schema_for!(Review),
        RecordKind::Addendum => schemars::schema_for!(Addendum),
        RecordKind::Task => schemars::schema_for!(Task),
        RecordKind::RandomDraw => schemars::schema_for!(RandomDraw),
    };
    schema.to_value()
}

/// The committed file name of a kind's schema, relative to the crate root.
pub fn schema_path(kind: RecordKind) -> String {
    format!("schemas/{}.schema.json", kind.as_str())
}

/// The schema as committed: pretty JSON with a final newline.
pub fn schema_text(kind: RecordKind) -> String {
    let mut text = serde_json::to_string_pretty(&schema_for(kind)).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// Regenerates every schema and compares it with the committed file. Run with
    /// `UPDATE_SCHEMAS=1` to rewrite the files after changing a record type.
    #[test]
    fn committed_schemas_match_the_rust_types() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let update = std::env::var_os("UPDATE_SCHEMAS").is_some_and(|v| v == "1");
        let mut stale = Vec::new();
        for kind in RecordKind::ALL {
            let path = root.join(schema_path(kind));
            let fresh = schema_text(kind);
            if update {
                std::fs::write(&path, &fresh).unwrap();
                continue;
            }
            let committed = std::fs::read_to_string(&path).unwrap_or_default();
            if committed != fresh {
                stale.push(path.display().to_string());
            }
        }
        assert!(
            stale.is_empty(),
            "schemas differ from the Rust types: {stale:?}\n\
             run `UPDATE_SCHEMAS=1 cargo test -p mobile-schema schema` and commit the files \
             (a changed schema is a protocol change: check the schema_version)"
        );
    }

    #[test]
    fn schemas_describe_the_wire_shape_of_ids_and_codes() {
        let s = schema_for(RecordKind::Inspection);
        assert_eq!(s["title"], "Inspection");
        let required = s["required"].as_array().unwrap();
        assert!(required.iter().any(|r| r == "team"));
        // Optional fields with serde defaults are not required.
        assert!(!required.iter().any(|r| r == "signoff" || r == "answers"));
        let site = schema_for(RecordKind::Site);
        assert_eq!(site["properties"]["region_code"]["$ref"], "#/$defs/RegionCode");
        assert_eq!(site["$defs"]["RegionCode"]["type"], "string");
    }
}
