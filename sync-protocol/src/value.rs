//! A unit's value: JSON text, carried through untouched. The merge never looks
//! inside a value, so it never pays to parse one.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

/// JSON text of one merge unit. In JSON it is embedded as JSON; in binary
/// encodings it is a string.
#[derive(Clone)]
pub struct UnitValue(Box<RawValue>);

// Equal as text: the same change always carries the same bytes.
impl PartialEq for UnitValue {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }
}

impl Eq for UnitValue {}

impl UnitValue {
    pub fn null() -> Self {
        Self::from_raw(RawValue::NULL.to_owned())
    }

    pub fn from_raw(raw: Box<RawValue>) -> Self {
        Self(raw)
    }

    /// Parse JSON text; fails on anything that is not one JSON value.
    pub fn parse(text: String) -> Result<Self, serde_json::Error> {
        RawValue::from_string(text).map(Self)
    }

    /// Serialize any value into a unit value.
    pub fn of<T: Serialize>(v: &T) -> Result<Self, serde_json::Error> {
        serde_json::value::to_raw_value(v).map(Self)
    }

    pub fn get(&self) -> &str {
        self.0.get()
    }

    pub fn raw(&self) -> &RawValue {
        &self.0
    }

    /// `null`: in a map or collection entry it means removed.
    pub fn is_null(&self) -> bool {
        self.0.get() == "null"
    }
}

impl fmt::Debug for UnitValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.get())
    }
}

impl Serialize for UnitValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            self.0.serialize(s)
        } else {
            s.serialize_str(self.0.get())
        }
    }
}

impl<'de> Deserialize<'de> for UnitValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            Box::<RawValue>::deserialize(d).map(Self)
        } else {
            let s = String::deserialize(d)?;
            RawValue::from_string(s).map(Self).map_err(serde::de::Error::custom)
        }
    }
}
