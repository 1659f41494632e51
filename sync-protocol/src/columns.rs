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
//! text in one walk, without building a tree of it (the walk only finds the
//! tokens: each record is validated first), and a reader copies each leaf's
//! text back into place and parses the rebuilt records as it parses rows.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};
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

/// A column's entry: a leaf's JSON text as stored (numbers keep their exact
/// spelling), or a marker.
enum Entry<'a> {
    Leaf(&'a str),
    /// `{"t": text}`: a container sent whole.
    Text(&'a str),
    /// `{"k": [keys]}`, each key as it is spelled between its quotes. Only a
    /// compact object gets one, and a key with an escape makes its object
    /// not compact, so these keys never need escaping.
    Keys(Vec<&'a str>),
    /// `{"n": length}`
    Len(usize),
}

/// The columns JSON, written by hand: every piece is either JSON text taken
/// from a validated record or a path, kind or key that needs no escaping
/// (paths are built of names, `/*`, `*` and `[i]`), so the writer only joins.
fn write_columns(kinds: &[String], cols: &[(String, Vec<Entry>)], size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size + size / 8);
    out.extend_from_slice(b"{\"kinds\":[");
    quoted_list(&mut out, kinds.iter().map(String::as_str));
    out.extend_from_slice(b"],\"cols\":{");
    // A column whose entries were all taken back (their container went
    // whole) is left out.
    for (i, (path, entries)) in cols.iter().filter(|(_, e)| !e.is_empty()).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        quoted(&mut out, path);
        out.extend_from_slice(b":[");
        for (j, entry) in entries.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            match entry {
                Entry::Leaf(text) => out.extend_from_slice(text.as_bytes()),
                Entry::Text(text) => {
                    out.extend_from_slice(b"{\"t\":");
                    out.extend_from_slice(text.as_bytes());
                    out.push(b'}');
                }
                Entry::Keys(keys) => {
                    out.extend_from_slice(b"{\"k\":[");
                    quoted_list(&mut out, keys.iter().copied());
                    out.extend_from_slice(b"]}");
                }
                Entry::Len(n) => {
                    out.extend_from_slice(b"{\"n\":");
                    out.extend_from_slice(n.to_string().as_bytes());
                    out.push(b'}');
                }
            }
        }
        out.push(b']');
    }
    out.extend_from_slice(b"}}");
    out
}

/// `"a","b",...`
fn quoted_list<'t>(out: &mut Vec<u8>, texts: impl Iterator<Item = &'t str>) {
    for (i, text) in texts.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        quoted(out, text);
    }
}

fn quoted(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    out.extend_from_slice(text.as_bytes());
    out.push(b'"');
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
        // Validated here, so the walk below only has to find the tokens.
        let raw: &RawValue = serde_json::from_slice(record.as_ref())?;
        let text = raw.get();
        path.clear();
        path.push_str(root_of(kind_of(text)?.as_deref()));
        kinds.push(path.clone());
        // Entries are only taken back within a record.
        writer.log.clear();
        // A root path is short, so the record itself is never sent whole for
        // its depth or path.
        if writer.put(text, 0, &mut path, 0)? != text.len() {
            return Err(malformed());
        }
    }
    let size = records.iter().map(|r| r.as_ref().len()).sum();
    Ok(write_columns(&kinds, &writer.cols, size))
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
    let mut cols: foldhash::HashMap<&str, Column> =
        HashMap::with_capacity_and_hasher(read.cols.len(), Default::default());
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
    /// A page has a few hundred paths and a few hundred thousand entries,
    /// each looked up by its path: a fast hash, not SipHash.
    index: foldhash::HashMap<String, usize>,
    /// The column of every entry added, in order, so that the entries of a
    /// container found not to be compact can be taken back.
    log: Vec<usize>,
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
        self.log.push(col);
        (col, entries.len() - 1)
    }

    fn set(&mut self, (col, at): (usize, usize), value: Entry<'a>) {
        if let Some(slot) = self.cols.get_mut(col).and_then(|c| c.1.get_mut(at)) {
            *slot = value;
        }
    }

    /// Take back the entries added since the log was `mark` long.
    fn take_back(&mut self, mark: usize) {
        while self.log.len() > mark {
            if let Some(entries) = self.log.pop().and_then(|col| self.cols.get_mut(col)) {
                entries.1.pop();
            }
        }
    }

    /// Put the value that starts at `at` of `text` (valid JSON) in its
    /// columns; returns where it ends. One walk over the text: a container's
    /// items are put as they are found, and taken back if the container turns
    /// out not to be in the form the reader writes back. An object's or
    /// array's marker is placed before its items, so a column's entries stay
    /// in record order.
    fn put(&mut self, text: &'a str, at: usize, path: &mut String, depth: usize) -> Result<usize, serde_json::Error> {
        let b = text.as_bytes();
        let close = match b.get(at) {
            Some(b'{') => b'}',
            Some(b'[') => b']',
            _ => {
                let end = skip_value(b, at)?;
                self.entry(path, Entry::Leaf(slice(text, at, end)?));
                return Ok(end);
            }
        };
        if depth >= MAX_DEPTH || path.len() + MAX_SEGMENT > MAX_PATH {
            let end = skip_value(b, at)?;
            self.entry(path, Entry::Text(slice(text, at, end)?));
            return Ok(end);
        }
        let mark = self.log.len();
        let slot = self.entry(path, Entry::Len(0));
        let len = path.len();
        let mut keys = Vec::new();
        let mut n = 0;
        // Written back as `{"key":value,...}` or `[item,...]`: anything else
        // (spaces between tokens, escapes in a key) goes whole.
        let mut compact = true;
        let mut pos = at + 1;
        let ws = |pos: usize, compact: &mut bool| {
            let after = skip_ws(b, pos);
            *compact &= after == pos;
            after
        };
        pos = ws(pos, &mut compact);
        if b.get(pos) == Some(&close) {
            pos += 1;
        } else {
            loop {
                if close == b'}' {
                    let key_end = skip_string(b, pos)?;
                    let key = text.get(pos + 1..key_end - 1).ok_or_else(malformed)?;
                    compact &= !key.contains('\\');
                    pos = ws(key_end, &mut compact);
                    if b.get(pos) != Some(&b':') {
                        return Err(malformed());
                    }
                    pos = ws(pos + 1, &mut compact);
                    push_key(path, key);
                    keys.push(key);
                } else {
                    push_index(path, n);
                }
                n += 1;
                // Once the container is known not to be compact, its later
                // items are only skipped; the earlier ones are taken back below.
                pos = if compact {
                    self.put(text, pos, path, depth + 1)?
                } else {
                    skip_value(b, pos)?
                };
                path.truncate(len);
                pos = ws(pos, &mut compact);
                match b.get(pos) {
                    Some(b',') => pos = ws(pos + 1, &mut compact),
                    Some(c) if *c == close => {
                        pos += 1;
                        break;
                    }
                    _ => return Err(malformed()),
                }
            }
        }
        if compact {
            self.set(
                slot,
                if close == b'}' {
                    Entry::Keys(keys)
                } else {
                    Entry::Len(n)
                },
            );
        } else {
            self.take_back(mark);
            self.entry(path, Entry::Text(slice(text, at, pos)?));
        }
        Ok(pos)
    }
}

/// The `kind` of a record's text, if it is an object with one (the first
/// field of a stored record).
fn kind_of(text: &str) -> Result<Option<Cow<'_, str>>, serde_json::Error> {
    let b = text.as_bytes();
    if b.first() != Some(&b'{') {
        return Ok(None);
    }
    let mut pos = skip_ws(b, 1);
    while b.get(pos) == Some(&b'"') {
        let key_end = skip_string(b, pos)?;
        // A key serde cannot read (a lone surrogate escape) is not `kind`;
        // the record still goes through like any other.
        let key = serde_json::from_str::<Name>(text.get(pos..key_end).ok_or_else(malformed)?).ok();
        pos = skip_ws(b, key_end);
        if b.get(pos) != Some(&b':') {
            return Err(malformed());
        }
        pos = skip_ws(b, pos + 1);
        let end = skip_value(b, pos)?;
        if key.is_some_and(|Name(k)| k == "kind") {
            return Ok(serde_json::from_str::<Name>(text.get(pos..end).ok_or_else(malformed)?)
                .ok()
                .map(|n| n.0));
        }
        pos = skip_ws(b, end);
        if b.get(pos) == Some(&b',') {
            pos = skip_ws(b, pos + 1);
        }
    }
    Ok(None)
}

/// `text[at..end]`, a value the walk found.
fn slice(text: &str, at: usize, end: usize) -> Result<&str, serde_json::Error> {
    text.get(at..end).ok_or_else(malformed)
}

/// The walk met text that is not JSON (it was validated, so this is a bug).
fn malformed() -> serde_json::Error {
    serde::de::Error::custom("a record's text ended or broke where a JSON token was expected")
}

fn skip_ws(b: &[u8], mut pos: usize) -> usize {
    while matches!(b.get(pos), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        pos += 1;
    }
    pos
}

/// The end of the string that starts at `pos`.
fn skip_string(b: &[u8], pos: usize) -> Result<usize, serde_json::Error> {
    if b.get(pos) != Some(&b'"') {
        return Err(malformed());
    }
    let mut i = pos + 1;
    loop {
        let rest = b.get(i..).ok_or_else(malformed)?;
        let at = i + memchr::memchr2(b'"', b'\\', rest).ok_or_else(malformed)?;
        match b.get(at) {
            Some(b'"') => return Ok(at + 1),
            _ => i = at + 2,
        }
    }
}

/// The end of the value that starts at `pos`.
fn skip_value(b: &[u8], pos: usize) -> Result<usize, serde_json::Error> {
    match b.get(pos) {
        Some(b'"') => skip_string(b, pos),
        Some(b'{' | b'[') => {
            // Strings may hold brackets; nothing else can.
            let mut open = 0usize;
            let mut i = pos;
            loop {
                match b.get(i) {
                    Some(b'"') => i = skip_string(b, i)?,
                    Some(b'{' | b'[') => {
                        open += 1;
                        i += 1;
                    }
                    Some(b'}' | b']') => {
                        open -= 1;
                        i += 1;
                        if open == 0 {
                            return Ok(i);
                        }
                    }
                    Some(_) => i += 1,
                    None => return Err(malformed()),
                }
            }
        }
        Some(_) => {
            let mut i = pos;
            while !matches!(b.get(i), None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')) {
                i += 1;
            }
            if i == pos { Err(malformed()) } else { Ok(i) }
        }
        None => Err(malformed()),
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
    cols: &mut foldhash::HashMap<&str, Column>,
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
        // A key serde will not read (a lone surrogate) ahead of `kind`.
        let surrogate = br#"{"\ud800":1,"kind":"site"}"#;
        let pretty = serde_json::to_vec_pretty(&json!({"kind": "site", "list": [1, {"a": [2]}]})).unwrap();
        let mut deep = json!("leaf");
        for _ in 0..MAX_DEPTH + 10 {
            deep = json!({"x": [deep]});
        }
        let long = json!({"kind": "site", "abcdefghijklmnopqrstuvwxyz012345": {"abcdefghijklmnopqrstuvwxyz012345": {"abcdefghijklmnopqrstuvwxyz012345": {"abcdefghijklmnopqrstuvwxyz012345": {"abcdefghijklmnopqrstuvwxyz012345": {"abcdefghijklmnopqrstuvwxyz012345": {"abcdefghijklmnopqrstuvwxyz012345": {"abcdefghijklmnopqrstuvwxyz012345": [1]}}}}}}}});
        let texts = vec![
            spaced.to_vec(),
            escaped.to_vec(),
            surrogate.to_vec(),
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
        // A record found not compact only at its end: what was put of its
        // fields is taken back, and their columns are left out.
        let late = br#"{"kind":"site","list":[1,{"a":[2]}],"last":1 }"#;
        let columns: Value = serde_json::from_slice(&shred(&[late]).unwrap()).unwrap();
        assert_eq!(
            columns,
            json!({"kinds": ["site"], "cols": {"site": [{"t": {"kind": "site", "list": [1, {"a": [2]}], "last": 1}}]}})
        );
        round_trip_texts(&[late.to_vec()]);
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
