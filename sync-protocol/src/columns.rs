//! A pull page's records stored column by column (`layout=columns`).
//!
//! Each value of the page goes into a column named after its path in its
//! record (`inspection.units.answers/*[1].note`), so that zstd sees the
//! checklist notes of a page side by side instead of spread between GPS fixes
//! and version ids: on the standard workload a full pull is 17% fewer bytes at
//! the same zstd level. The transposition knows nothing of the record types:
//! the text of any JSON value comes back byte for byte, and a reader rebuilds
//! each record by walking the same paths in the same order.
//!
//! - An object becomes the entry `{"k": [its keys]}` in its path's column and
//!   each field goes on at `path.KEY`, where KEY is the key itself when it is a
//!   short lower-case name, `name/*` for `name/anything`, else `*` (map keys such
//!   as version ids share one column).
//! - An array becomes `{"n": its length}` and its items go on at `path[0]`,
//!   `path[1]`, `path[2]`, and `path[3]` for the fourth and later.
//! - Anything else is an entry as it is. An entry is an object only as a
//!   marker, since every object of a record is transposed or sent whole.
//! - An object or array whose text is not what the transposition would write
//!   back (spaces between tokens, escapes in a key), or that lies deeper than
//!   [`MAX_DEPTH`] or at a path near [`MAX_PATH`], is the entry `{"t": text}`
//!   and comes back as that text: a unit's value pushed by another client is
//!   compared as text, so it must return byte for byte.
//! - A record's root path is its `kind` (or `_`), listed in `kinds`.
//!
//! Both directions work on JSON text: the server shreds the stored record
//! text without building a tree of it, and a reader copies each leaf's text
//! back into place and parses the rebuilt records as it parses rows.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Nesting a reader follows before it gives up on a page; the writer sends
/// deeper containers whole.
pub const MAX_DEPTH: usize = 64;

/// The longest column path a reader takes (bytes); the writer sends a
/// container whose items would be at longer paths whole.
pub const MAX_PATH: usize = 256;

/// Entries a reader takes in one page: a legitimate page of 1,000 records
/// has about 250,000.
pub const MAX_ENTRIES: usize = 2_000_000;

/// The longest segment a key or index adds to a path: `.` and a 32-byte name
/// and `/*`.
const MAX_SEGMENT: usize = 35;

/// Why columns could not be turned back into records.
#[derive(Debug, thiserror::Error)]
pub enum ColumnsError {
    #[error("columns are not JSON of the expected shape: {0}")]
    Json(#[from] serde_json::Error),
    #[error("column `{0}` ends before the records that need it")]
    Short(String),
    #[error("column `{0}` holds a marker that is not one of {{\"k\": [keys]}}, {{\"n\": length}}, {{\"t\": text}}")]
    BadMarker(String),
    #[error("records nest deeper than {MAX_DEPTH} levels or at paths longer than {MAX_PATH} bytes")]
    TooDeep,
    #[error("column `{0}` has entries no record used")]
    Unused(String),
    #[error("column `{0}` is named twice")]
    Duplicate(String),
    #[error("a record's root path is `_` or a lower-case name, not {0:?}")]
    BadKind(String),
    #[error("more than {MAX_ENTRIES} entries in a page")]
    TooMany,
}

/// Records as columns, as the server writes them.
#[derive(Serialize)]
struct Shredded<'a> {
    kinds: &'a [String],
    #[serde(serialize_with = "ordered")]
    cols: &'a [(String, Vec<Entry<'a>>)],
}

fn ordered<S: serde::Serializer>(cols: &&[(String, Vec<Entry>)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(cols.iter().map(|(k, v)| (k, v)))
}

/// A column's entry: a leaf's JSON text as stored (numbers keep their exact
/// spelling), or a marker.
enum Entry<'a> {
    Leaf(&'a RawValue),
    /// `{"t": text}`: a container sent whole.
    Text(&'a RawValue),
    /// `{"k": [keys]}`
    Keys(Vec<Cow<'a, str>>),
    /// `{"n": length}`
    Len(usize),
}

impl Serialize for Entry<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Entry::Leaf(raw) => raw.serialize(s),
            Entry::Text(raw) => s.collect_map([("t", raw)]),
            Entry::Keys(keys) => s.collect_map([("k", keys)]),
            Entry::Len(n) => s.collect_map([("n", n)]),
        }
    }
}

/// An object's fields in their order, values unparsed.
struct Fields<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(Name(k)) = map.next_key()? {
                    out.push((k, map.next_value()?));
                }
                Ok(Fields(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// A map key, borrowed when it has no escapes.
#[derive(Deserialize)]
struct Name<'a>(#[serde(borrow)] Cow<'a, str>);

/// The columns JSON (`{"kinds": [...], "cols": {...}}`) of records given as
/// JSON texts, each usually an object with a `kind`.
pub fn shred<T: AsRef<[u8]>>(records: &[T]) -> Result<Vec<u8>, serde_json::Error> {
    let mut writer = Writer::default();
    let mut path = String::new();
    let mut kinds = Vec::with_capacity(records.len());
    for record in records {
        let raw: &RawValue = serde_json::from_slice(record.as_ref())?;
        path.clear();
        if raw.get().starts_with('{') {
            // The fields are read once, for the kind and for the columns; a
            // root path is short, so the record itself is never sent whole
            // for its depth or path.
            let fields: Fields = serde_json::from_str(raw.get())?;
            let kind = fields
                .0
                .iter()
                .find(|(k, _)| k == "kind")
                .and_then(|(_, v)| serde_json::from_str::<Name>(v.get()).ok());
            path.push_str(root_of(kind.as_ref().map(|n| n.0.as_ref())));
            kinds.push(path.clone());
            writer.put_object(&mut path, raw, fields, 0)?;
        } else {
            path.push_str(root_of(None));
            kinds.push(path.clone());
            writer.put(&mut path, raw, 0)?;
        }
    }
    serde_json::to_vec(&Shredded {
        kinds: &kinds,
        cols: &writer.cols,
    })
}

/// The records of a columns JSON text, as one JSON array text.
pub fn rows(columns: &str) -> Result<Vec<u8>, ColumnsError> {
    #[derive(Deserialize)]
    struct Read<'a> {
        #[serde(borrow)]
        kinds: Vec<Name<'a>>,
        #[serde(borrow, deserialize_with = "columns_in")]
        cols: ReadColumns<'a>,
    }
    let read: Read = serde_json::from_str(columns)?;
    let mut cols: HashMap<&str, Column> = HashMap::with_capacity(read.cols.len());
    for (name, entries) in &read.cols {
        if cols.insert(name.as_ref(), Column { entries, next: 0 }).is_some() {
            return Err(ColumnsError::Duplicate(name.to_string()));
        }
    }
    // The records' text is about the size of the columns' (a little larger
    // for the keys written back).
    let mut out = Vec::with_capacity(columns.len() + columns.len() / 8);
    out.push(b'[');
    let mut path = String::new();
    for (i, Name(kind)) in read.kinds.iter().enumerate() {
        if kind != "_" && !is_name(kind) {
            return Err(ColumnsError::BadKind(kind.chars().take(40).collect()));
        }
        if i > 0 {
            out.push(b',');
        }
        path.clear();
        path.push_str(kind);
        write_value(&mut cols, &mut path, &mut out, 0)?;
    }
    out.push(b']');
    for (name, _) in &read.cols {
        if cols.get(name.as_ref()).is_some_and(|c| c.next < c.entries.len()) {
            return Err(ColumnsError::Unused(name.to_string()));
        }
    }
    Ok(out)
}

/// Columns as read: each path with its entries' texts, borrowed from the page.
type ReadColumns<'a> = Vec<(Cow<'a, str>, Vec<&'a RawValue>)>;

/// Reads the columns, at most [`MAX_ENTRIES`] entries in all.
fn columns_in<'de, D: Deserializer<'de>>(d: D) -> Result<ReadColumns<'de>, D::Error> {
    struct Cols;
    impl<'de> Visitor<'de> for Cols {
        type Value = ReadColumns<'de>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object of columns")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            let mut left = MAX_ENTRIES;
            while let Some(Name(k)) = map.next_key()? {
                let entries = map.next_value_seed(Entries { left: &mut left })?;
                out.push((k, entries));
            }
            Ok(out)
        }
    }
    d.deserialize_map(Cols)
}

/// One column's entries, counted against the page's budget.
struct Entries<'b> {
    left: &'b mut usize,
}

impl<'de> serde::de::DeserializeSeed<'de> for Entries<'_> {
    type Value = Vec<&'de RawValue>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Entries<'_> {
    type Value = Vec<&'de RawValue>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of entries")
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(entry) = seq.next_element()? {
            if *self.left == 0 {
                return Err(serde::de::Error::custom(ColumnsError::TooMany));
            }
            *self.left -= 1;
            out.push(entry);
        }
        Ok(out)
    }
}

/// A record's root path: its `kind` when that is a name.
fn root_of(kind: Option<&str>) -> &str {
    match kind {
        Some(kind) if is_name(kind) => kind,
        _ => "_",
    }
}

/// A short lower-case name: a struct field rather than a map key.
fn is_name(key: &str) -> bool {
    let mut bytes = key.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z'))
        && key.len() <= 32
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'))
}

/// Append a field's path segment for `key`.
fn push_key(path: &mut String, key: &str) {
    path.push('.');
    if is_name(key) {
        path.push_str(key);
        return;
    }
    match key.split_once('/') {
        Some((head, _)) if is_name(head) => {
            path.push_str(head);
            path.push_str("/*");
        }
        _ => path.push('*'),
    }
}

/// Append an array item's path segment.
fn push_index(path: &mut String, i: usize) {
    const SEGMENTS: [&str; 4] = ["[0]", "[1]", "[2]", "[3]"];
    path.push_str(SEGMENTS[i.min(3)]);
}

#[derive(Default)]
struct Writer<'a> {
    cols: Vec<(String, Vec<Entry<'a>>)>,
    index: HashMap<String, usize>,
}

impl<'a> Writer<'a> {
    /// Add an entry to a column; returns where it went.
    fn entry(&mut self, path: &str, value: Entry<'a>) -> (usize, usize) {
        let col = match self.index.get(path) {
            Some(&i) => i,
            None => {
                self.index.insert(path.to_string(), self.cols.len());
                self.cols.push((path.to_string(), Vec::new()));
                self.cols.len() - 1
            }
        };
        let entries = &mut self.cols[col].1;
        entries.push(value);
        (col, entries.len() - 1)
    }

    fn set(&mut self, (col, at): (usize, usize), value: Entry<'a>) {
        if let Some(slot) = self.cols.get_mut(col).and_then(|c| c.1.get_mut(at)) {
            *slot = value;
        }
    }

    /// Put one value in its columns. An object's or array's marker is placed
    /// before its items, so a column's entries stay in record order.
    fn put(&mut self, path: &mut String, raw: &'a RawValue, depth: usize) -> Result<(), serde_json::Error> {
        let len = path.len();
        let text = raw.get();
        let container = matches!(text.as_bytes().first(), Some(b'{' | b'['));
        if container && (depth >= MAX_DEPTH || len + MAX_SEGMENT > MAX_PATH) {
            self.entry(path, Entry::Text(raw));
            return Ok(());
        }
        match text.as_bytes().first() {
            Some(b'{') => self.put_object(path, raw, serde_json::from_str(text)?, depth)?,
            Some(b'[') => {
                let items: Vec<&RawValue> = serde_json::from_str(text)?;
                // Written back as `[item,...]`.
                let compact = 1 + items.iter().map(|v| v.get().len() + 1).sum::<usize>().max(1);
                if compact != text.len() {
                    self.entry(path, Entry::Text(raw));
                    return Ok(());
                }
                let slot = self.entry(path, Entry::Len(0));
                let n = items.len();
                for (i, item) in items.into_iter().enumerate() {
                    push_index(path, i);
                    self.put(path, item, depth + 1)?;
                    path.truncate(len);
                }
                self.set(slot, Entry::Len(n));
            }
            _ => {
                self.entry(path, Entry::Leaf(raw));
            }
        }
        Ok(())
    }

    /// `put` of an object whose fields are read (`raw` is its text).
    fn put_object(
        &mut self,
        path: &mut String,
        raw: &'a RawValue,
        Fields(fields): Fields<'a>,
        depth: usize,
    ) -> Result<(), serde_json::Error> {
        // Written back as `{"key":value,...}`: only when that is the text,
        // byte for byte (a key borrowed from it has no escapes).
        let compact = 1 + fields
            .iter()
            .map(|(k, v)| k.len() + v.get().len() + 4)
            .sum::<usize>()
            .max(1);
        if compact != raw.get().len() || fields.iter().any(|(k, _)| matches!(k, Cow::Owned(_))) {
            self.entry(path, Entry::Text(raw));
            return Ok(());
        }
        let len = path.len();
        let slot = self.entry(path, Entry::Len(0));
        let mut keys = Vec::with_capacity(fields.len());
        for (key, item) in fields {
            push_key(path, &key);
            self.put(path, item, depth + 1)?;
            path.truncate(len);
            keys.push(key);
        }
        self.set(slot, Entry::Keys(keys));
        Ok(())
    }
}

struct Column<'a> {
    entries: &'a [&'a RawValue],
    next: usize,
}

/// A marker as read: an object's keys, an array's length, or a container's text.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Marker<'a> {
    #[serde(borrow)]
    k: Option<Vec<Name<'a>>>,
    n: Option<u64>,
    #[serde(borrow)]
    t: Option<&'a RawValue>,
}

fn write_value(
    cols: &mut HashMap<&str, Column>,
    path: &mut String,
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), ColumnsError> {
    if depth > MAX_DEPTH || path.len() > MAX_PATH {
        return Err(ColumnsError::TooDeep);
    }
    let entry = {
        let column = cols
            .get_mut(path.as_str())
            .ok_or_else(|| ColumnsError::Short(path.clone()))?;
        let entry = *column
            .entries
            .get(column.next)
            .ok_or_else(|| ColumnsError::Short(path.clone()))?;
        column.next += 1;
        entry
    };
    let text = entry.get();
    if !text.starts_with('{') {
        // A leaf: its JSON text as it came.
        out.extend_from_slice(text.as_bytes());
        return Ok(());
    }
    let len = path.len();
    let bad = |path: &str| ColumnsError::BadMarker(path[..len].to_string());
    match serde_json::from_str::<Marker>(text) {
        Ok(Marker {
            k: Some(keys),
            n: None,
            t: None,
        }) => {
            out.push(b'{');
            for (i, key) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, key.0.as_ref())?;
                out.push(b':');
                push_key(path, &key.0);
                write_value(cols, path, out, depth + 1)?;
                path.truncate(len);
            }
            out.push(b'}');
            Ok(())
        }
        Ok(Marker {
            k: None,
            n: Some(n),
            t: None,
        }) => {
            out.push(b'[');
            for i in 0..n {
                if i > 0 {
                    out.push(b',');
                }
                push_index(path, usize::try_from(i).unwrap_or(usize::MAX));
                write_value(cols, path, out, depth + 1)?;
                path.truncate(len);
            }
            out.push(b']');
            Ok(())
        }
        Ok(Marker {
            k: None,
            n: None,
            t: Some(text),
        }) if matches!(text.get().as_bytes().first(), Some(b'{' | b'[')) => {
            out.extend_from_slice(text.get().as_bytes());
            Ok(())
        }
        _ => Err(bad(path)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Map, Value, json};

    fn texts(records: &[Value]) -> Vec<Vec<u8>> {
        records.iter().map(|r| serde_json::to_vec(r).unwrap()).collect()
    }

    /// The records' texts come back byte for byte (compared as text: a
    /// float parsed into a `Value` may lose its last digit).
    fn round_trip(records: &[Value]) {
        round_trip_texts(&texts(records));
    }

    fn round_trip_texts(texts: &[Vec<u8>]) {
        let columns = shred(texts).unwrap();
        let back = rows(std::str::from_utf8(&columns).unwrap()).unwrap();
        let expected = format!(
            "[{}]",
            texts
                .iter()
                .map(|t| String::from_utf8_lossy(t))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert_eq!(String::from_utf8_lossy(&back), expected);
    }

    #[test]
    fn text_the_columns_would_not_write_back_is_sent_whole() {
        // Another client's spacing and escapes, kept in a unit's value.
        let spaced = br#"{"kind":"inspection","units":{"note":[0,{"note": "x",  "result":"ok"}]}}"#;
        let escaped = br#"{"kind":"site","k\u0065y":[1 ,2],"a\"b":{}}"#;
        let pretty = serde_json::to_vec_pretty(&json!({"kind": "site", "list": [1, {"a": [2]}]})).unwrap();
        let mut deep = json!("leaf");
        for _ in 0..MAX_DEPTH + 10 {
            deep = json!({"x": [deep]});
        }
        let long = json!({"kind": "site", "abcdefghijklmnopqrstuvwxyz012345": {"abcdefghijklmnopqrstuvwxyz012345": {"abcdefghijklmnopqrstuvwxyz012345": {"abcdefghijklmnopqrstuvwxyz012345": {"abcdefghijklmnopqrstuvwxyz012345": {"abcdefghijklmnopqrstuvwxyz012345": {"abcdefghijklmnopqrstuvwxyz012345": {"abcdefghijklmnopqrstuvwxyz012345": [1]}}}}}}}});
        let texts = vec![
            spaced.to_vec(),
            escaped.to_vec(),
            pretty,
            serde_json::to_vec(&deep).unwrap(),
            serde_json::to_vec(&long).unwrap(),
        ];
        round_trip_texts(&texts);
        let columns: Value = serde_json::from_slice(&shred(&texts[..1]).unwrap()).unwrap();
        assert_eq!(
            columns["cols"]["inspection.units.note[1]"][0]["t"],
            json!({"note": "x", "result": "ok"})
        );
        assert_eq!(
            columns["cols"]["inspection.units.note[0]"],
            json!([0]),
            "the canonical parts are still columns"
        );
    }

    fn rows_of(columns: &Value) -> Result<Vec<u8>, ColumnsError> {
        rows(&columns.to_string())
    }

    #[test]
    fn a_page_of_records_comes_back_as_it_was() {
        let records = vec![
            json!({"kind": "inspection", "id": "a", "v": [["r:1", 5, 0]], "units": {"answers/TP-01": [0, {"note": "正常", "result": "ok"}], "answers/TP-02": [0, {"note": "渗漏\"\n", "result": "problem"}], "fix": [0, null]}, "meta": {"r:1": {"user": "u"}}}),
            json!({"kind": "hazard", "id": "b", "units": {"deadline": [0, {"date": "2025-01-01"}]}, "lat": 23.124919, "big": u64::MAX, "neg": -7}),
            json!({"kind": "inspection", "id": "c", "units": {"fix": [0, {"lat": 23.1, "lon": 108.2}]}, "flags": [], "empty": {}}),
            json!([1, 2, 3, 4, 5, {"k": 1}]),
            json!("no kind"),
            json!({"kind": "Not A Name", "x": true}),
        ];
        round_trip(&records);
    }

    #[test]
    fn like_values_share_a_column() {
        let columns: Value = serde_json::from_slice(
            &shred(&texts(&[
                json!({"kind": "inspection", "units": {"answers/TP-01": [0, {"note": "a"}], "answers/TP-02": [0, {"note": "b"}]}}),
                json!({"kind": "inspection", "units": {"answers/KU-07": [0, {"note": "c"}]}}),
            ]))
            .unwrap(),
        )
        .unwrap();
        assert_eq!(
            columns["cols"]["inspection.units.answers/*[1].note"],
            json!(["a", "b", "c"])
        );
        assert_eq!(columns["kinds"], json!(["inspection", "inspection"]));
    }

    #[test]
    fn damaged_columns_are_an_error_not_a_panic() {
        let good: Value =
            serde_json::from_slice(&shred(&texts(&[json!({"kind": "site", "name": "x", "list": [1, 2]})])).unwrap())
                .unwrap();
        assert!(rows_of(&good).is_ok());

        let mut short = good.clone();
        short["cols"].as_object_mut().unwrap().remove("site.name");
        assert!(matches!(rows_of(&short), Err(ColumnsError::Short(c)) if c == "site.name"));

        for marker in [
            json!({"k": "not a list"}),
            json!({"k": ["a"], "n": 1}),
            json!({"x": 1}),
            json!({"n": -1}),
        ] {
            let mut bad = good.clone();
            bad["cols"]["site"][0] = marker;
            assert!(matches!(rows_of(&bad), Err(ColumnsError::BadMarker(c)) if c == "site"));
        }

        let mut extra = good.clone();
        extra["kinds"] = json!(["site", "site"]);
        assert!(matches!(rows_of(&extra), Err(ColumnsError::Short(_))));

        let mut unused = good.clone();
        unused["cols"]["site.other"] = json!([1]);
        assert!(matches!(rows_of(&unused), Err(ColumnsError::Unused(c)) if c == "site.other"));

        let mut huge = good.clone();
        huge["cols"]["site.list"][0] = json!({"n": u64::MAX});
        assert!(matches!(rows_of(&huge), Err(ColumnsError::Short(_))));

        let mut text_leaf = good.clone();
        text_leaf["cols"]["site.name"][0] = json!({"t": "a string"});
        assert!(matches!(rows_of(&text_leaf), Err(ColumnsError::BadMarker(_))));

        let mut kind = good.clone();
        kind["kinds"] = json!(["Site"]);
        assert!(matches!(rows_of(&kind), Err(ColumnsError::BadKind(_))));

        let twice = good.to_string().replacen("\"site.name\"", "\"site.list\"", 1);
        assert!(matches!(rows(&twice), Err(ColumnsError::Duplicate(c)) if c == "site.list"));

        let many = format!("{{\"kinds\":[],\"cols\":{{\"a\":[{}0]}}}}", "0,".repeat(MAX_ENTRIES));
        assert!(matches!(rows(&many), Err(ColumnsError::Json(_))));

        assert!(matches!(rows("{\"kinds\": 3}"), Err(ColumnsError::Json(_))));
        assert!(matches!(rows("[1, 2"), Err(ColumnsError::Json(_))));

        // Paths grow with each level, so nesting ends where the columns do;
        // columns made for every level stop at the depth limit.
        let mut cols = Map::new();
        for i in 0..MAX_DEPTH + 8 {
            cols.insert(format!("_{}", ".*".repeat(i)), json!([{"k": ["X"]}]));
        }
        let deep = json!({"kinds": ["_"], "cols": cols});
        assert!(matches!(rows_of(&deep), Err(ColumnsError::TooDeep)));
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            (-1e6f64..1e6).prop_map(Value::from),
            "[a-z/:\\-0-9尾矿\"\\\\\\u{1}]{0,8}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map(
                    "(kind|id|[a-z]{1,3}(/[A-Z0-9-]{1,4})?|[0-9:]{1,4}|[A-Z尾\"\\\\\\u{1}]{0,3})",
                    inner,
                    0..6
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        // Cases: PROPTEST_CASES (proptest's default config reads it).
        #[test]
        fn any_json_comes_back_as_it_was(records in proptest::collection::vec((json_value(), any::<bool>()), 0..8)) {
            // Compact as the server stores it, or spaced as another client may write it.
            let texts: Vec<Vec<u8>> = records
                .iter()
                .map(|(r, pretty)| if *pretty { serde_json::to_vec_pretty(r) } else { serde_json::to_vec(r) }.unwrap())
                .collect();
            round_trip_texts(&texts);
        }
    }
}
