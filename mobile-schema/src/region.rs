//! Administrative divisions (GB/T 2260). A region code is six digits: two for the
//! province, two for the city, two for the county. A city covers its counties and
//! a province covers its cities.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A GB/T 2260 code such as 450332 (恭城瑶族自治县). Six digits on the wire, as a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "String", into = "String")]
pub struct RegionCode(u32);

/// The text was not a six-digit division code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a six-digit GB/T 2260 code: {0:?}")]
pub struct BadRegionCode(pub String);

/// How far down the hierarchy a code points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DivisionLevel {
    Province,
    City,
    County,
}

impl RegionCode {
    pub fn new(code: u32) -> Result<Self, BadRegionCode> {
        if (110_000..=999_999).contains(&code) {
            Ok(Self(code))
        } else {
            Err(BadRegionCode(code.to_string()))
        }
    }

    pub fn as_u32(self) -> u32 {
        self.0
    }

    /// The level the code's shape implies (xx0000 province, xxyy00 city, else county).
    pub fn level(self) -> DivisionLevel {
        if self.0 % 10_000 == 0 {
            DivisionLevel::Province
        } else if self.0 % 100 == 0 {
            DivisionLevel::City
        } else {
            DivisionLevel::County
        }
    }

    pub fn province(self) -> RegionCode {
        RegionCode(self.0 / 10_000 * 10_000)
    }

    /// The city a county belongs to, or the code itself for a city or province.
    pub fn city(self) -> RegionCode {
        match self.level() {
            DivisionLevel::County => RegionCode(self.0 / 100 * 100),
            _ => self,
        }
    }

    /// Whether this region contains `other` (a region covers itself).
    pub fn covers(self, other: RegionCode) -> bool {
        match self.level() {
            DivisionLevel::Province => self.0 / 10_000 == other.0 / 10_000,
            DivisionLevel::City => self.0 / 100 == other.0 / 100,
            DivisionLevel::County => self == other,
        }
    }
}

impl TryFrom<String> for RegionCode {
    type Error = BadRegionCode;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl FromStr for RegionCode {
    type Err = BadRegionCode;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 6 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(BadRegionCode(s.to_string()));
        }
        let n: u32 = s.parse().map_err(|_| BadRegionCode(s.to_string()))?;
        RegionCode::new(n).map_err(|_| BadRegionCode(s.to_string()))
    }
}

impl From<RegionCode> for String {
    fn from(c: RegionCode) -> Self {
        c.to_string()
    }
}

impl fmt::Display for RegionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:06}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn city_covers_its_counties_and_province_its_cities() {
        let gx: RegionCode = "450000".parse().unwrap();
        let guilin: RegionCode = "450300".parse().unwrap();
        let gongcheng: RegionCode = "450332".parse().unwrap();
        let nanning_county: RegionCode = "450103".parse().unwrap();
        assert!(gx.covers(guilin) && gx.covers(gongcheng));
        assert!(guilin.covers(gongcheng));
        assert!(!guilin.covers(nanning_county));
        assert!(!gongcheng.covers(guilin));
        assert_eq!(gongcheng.city(), guilin);
        assert_eq!(gongcheng.province(), gx);
    }

    #[test]
    fn codes_must_be_six_digits() {
        assert!("45033".parse::<RegionCode>().is_err());
        assert!("4503321".parse::<RegionCode>().is_err());
        assert!("45a332".parse::<RegionCode>().is_err());
        assert_eq!(serde_json::to_string(&"450332".parse::<RegionCode>().unwrap()).unwrap(), "\"450332\"");
    }
}

impl RegionCode {
    /// 广西壮族自治区.
    pub const GUANGXI: RegionCode = RegionCode(450_000);
}
