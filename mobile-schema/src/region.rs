//! Administrative divisions (GB/T 2260). A region code is six digits: two for the
//! province, two for the city, two for the county. A city covers its counties and
//! a province covers its cities.
//!
//! [`Divisions`] is the national table (embedded from
//! `fixtures/gbt2260_divisions.csv`): names, levels and parents by code, and
//! names resolved as official documents print them (short forms of autonomous
//! counties, and old names listed in [`GUANGXI_RENAMES`]).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

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
        if self.0.is_multiple_of(10_000) {
            DivisionLevel::Province
        } else if self.0.is_multiple_of(100) {
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

/// One row of the GB/T 2260 table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Division {
    pub code: RegionCode,
    /// The full official name, e.g. 恭城瑶族自治县.
    pub name: String,
    pub level: DivisionLevel,
    /// The enclosing division; `None` for a province.
    pub parent: Option<RegionCode>,
}

/// The division table could not be read. Only a broken embedded table or a bad
/// table handed to [`Divisions::from_csv`] gets here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DivisionTableError {
    #[error("division table, line {line}: {message}")]
    Csv { line: u64, message: String },
    #[error("division table, line {line}: bad code {code:?}")]
    BadCode { line: u64, code: String },
    #[error("division table, line {line}: unknown level {level:?}")]
    BadLevel { line: u64, level: String },
    #[error("division table, line {line}: code {code} appears twice")]
    Duplicate { line: u64, code: RegionCode },
}

/// A name could not be resolved to one division.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("no division named {name:?} within {within}")]
    Unknown { name: String, within: RegionCode },
    #[error("{name:?} is ambiguous within {within}: {candidates:?}")]
    Ambiguous {
        name: String,
        within: RegionCode,
        candidates: Vec<RegionCode>,
    },
}

/// Ethnic groups named in autonomous-county names (the 55 minorities, plus 各族
/// for 龙胜各族自治县 and 隆林各族自治县). Documents drop them with 自治, so
/// 金秀瑶族自治县 prints as 金秀县.
const ETHNIC_GROUPS: [&str; 56] = [
    "各",
    "蒙古",
    "回",
    "藏",
    "维吾尔",
    "苗",
    "彝",
    "壮",
    "布依",
    "朝鲜",
    "满",
    "侗",
    "瑶",
    "白",
    "土家",
    "哈尼",
    "哈萨克",
    "傣",
    "黎",
    "傈僳",
    "佤",
    "畲",
    "高山",
    "拉祜",
    "水",
    "东乡",
    "纳西",
    "景颇",
    "柯尔克孜",
    "土",
    "达斡尔",
    "仫佬",
    "羌",
    "布朗",
    "撒拉",
    "毛南",
    "仡佬",
    "锡伯",
    "阿昌",
    "普米",
    "塔吉克",
    "怒",
    "乌孜别克",
    "俄罗斯",
    "鄂温克",
    "德昂",
    "保安",
    "裕固",
    "京",
    "塔塔尔",
    "独龙",
    "鄂伦春",
    "赫哲",
    "门巴",
    "珞巴",
    "基诺",
];

/// Old names still printed in Guangxi documents, with the division that now
/// holds the area. Upgrades (县→区/市) kept the area; 蝶山区 was merged into
/// 万秀区 in 2013.
pub const GUANGXI_RENAMES: [(&str, u32); 11] = [
    ("宜州市", 451203),     // 2016, now 宜州区
    ("武鸣县", 450110),     // 2015, now 武鸣区
    ("横县", 450181),       // 2021, now 横州市
    ("临桂县", 450312),     // 2013, now 临桂区
    ("柳江县", 450206),     // 2016, now 柳江区
    ("荔浦县", 450381),     // 2018, now 荔浦市
    ("靖西县", 451081),     // 2015, now 靖西市
    ("平果县", 451082),     // 2019, now 平果市
    ("田阳县", 451003),     // 2019, now 田阳区
    ("平桂管理区", 451103), // 2016, now 平桂区
    ("蝶山区", 450403),     // 2013, merged into 万秀区
];

/// The GB/T 2260 division table: look-ups by code, children, and names as
/// official documents print them.
#[derive(Debug, Clone, Default)]
pub struct Divisions {
    by_code: BTreeMap<RegionCode, Division>,
    children: BTreeMap<RegionCode, Vec<RegionCode>>,
    exact: HashMap<String, Vec<RegionCode>>,
    short: HashMap<String, Vec<RegionCode>>,
    renamed: HashMap<String, Vec<RegionCode>>,
}

const GBT2260_CSV: &str = include_str!("../../fixtures/gbt2260_divisions.csv");

impl Divisions {
    /// The embedded table (fixtures/gbt2260_divisions.csv), parsed on first use.
    pub fn gbt2260() -> Result<&'static Divisions, DivisionTableError> {
        static TABLE: OnceLock<Result<Divisions, DivisionTableError>> = OnceLock::new();
        TABLE
            .get_or_init(|| {
                let mut table = Divisions::from_csv(GBT2260_CSV)?;
                table.add_renames(&GUANGXI_RENAMES);
                Ok(table)
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Parses a table with the columns `code,name,level,parent_code`.
    pub fn from_csv(text: &str) -> Result<Divisions, DivisionTableError> {
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let mut table = Divisions::default();
        for row in reader.records() {
            let row = row.map_err(|e| DivisionTableError::Csv {
                line: e.position().map_or(0, |p| p.line()),
                message: e.to_string(),
            })?;
            let line = row.position().map_or(0, |p| p.line());
            let field = |i: usize| row.get(i).unwrap_or("").trim();
            let code: RegionCode = field(0).parse().map_err(|_| DivisionTableError::BadCode {
                line,
                code: field(0).to_string(),
            })?;
            let level = match field(2) {
                "province" => DivisionLevel::Province,
                "city" => DivisionLevel::City,
                "county" => DivisionLevel::County,
                other => {
                    return Err(DivisionTableError::BadLevel {
                        line,
                        level: other.to_string(),
                    });
                }
            };
            let parent = match field(3) {
                "" => None,
                p => Some(p.parse().map_err(|_| DivisionTableError::BadCode {
                    line,
                    code: p.to_string(),
                })?),
            };
            let name = field(1).to_string();
            if let Some(known) = table.by_code.get(&code) {
                // Cities without counties (东莞市, 中山市, 儋州市) are listed a second
                // time as their own county; the city row already stands for them.
                if known.name == name && parent == Some(code) {
                    continue;
                }
                return Err(DivisionTableError::Duplicate { line, code });
            }
            table.exact.entry(name.clone()).or_default().push(code);
            if let Some(short) = short_form(&name) {
                table.short.entry(short).or_default().push(code);
            }
            if let Some(p) = parent {
                table.children.entry(p).or_default().push(code);
            }
            table.by_code.insert(
                code,
                Division {
                    code,
                    name,
                    level,
                    parent,
                },
            );
        }
        Ok(table)
    }

    /// Adds old names (old name, code that now holds the area).
    pub fn add_renames(&mut self, renames: &[(&str, u32)]) {
        for &(old, code) in renames {
            if let Ok(code) = RegionCode::new(code) {
                self.renamed.entry(old.to_string()).or_default().push(code);
            }
        }
    }

    pub fn get(&self, code: RegionCode) -> Option<&Division> {
        self.by_code.get(&code)
    }

    /// The divisions directly under `code` (a province's cities, a city's counties).
    pub fn children(&self, code: RegionCode) -> impl Iterator<Item = &Division> {
        self.children
            .get(&code)
            .into_iter()
            .flatten()
            .filter_map(|c| self.by_code.get(c))
    }

    /// Every division of `level` that `region` covers, in code order; a region
    /// of that level lists itself.
    pub fn covered(&self, region: RegionCode, level: DivisionLevel) -> impl Iterator<Item = &Division> {
        self.by_code
            .values()
            .filter(move |d| d.level == level && region.covers(d.code))
    }

    /// Resolves a division name below `within` as documents print it: the
    /// official name first, then the short form of an autonomous county
    /// (金秀县), then an old name (宜州市).
    pub fn resolve(&self, name: &str, within: RegionCode) -> Result<RegionCode, ResolveError> {
        let name = name.trim();
        for index in [&self.exact, &self.short, &self.renamed] {
            let mut found: Vec<RegionCode> = index
                .get(name)
                .into_iter()
                .flatten()
                .copied()
                .filter(|&c| c != within && within.covers(c))
                .collect();
            found.sort();
            found.dedup();
            match found.as_slice() {
                [] => continue,
                [one] => return Ok(*one),
                _ => {
                    return Err(ResolveError::Ambiguous {
                        name: name.to_string(),
                        within,
                        candidates: found,
                    });
                }
            }
        }
        Err(ResolveError::Unknown {
            name: name.to_string(),
            within,
        })
    }
}

/// 金秀瑶族自治县 → 金秀县, 双江拉祜族佤族布朗族傣族自治县 → 双江县: drop 自治 and
/// every ethnic qualifier before it. `None` when the name has no short form.
fn short_form(name: &str) -> Option<String> {
    let (stem, suffix) = [("自治县", "县"), ("自治旗", "旗")]
        .into_iter()
        .find_map(|(long, short)| name.strip_suffix(long).map(|s| (s, short)))?;
    let mut place = stem;
    while let Some(rest) = ETHNIC_GROUPS
        .iter()
        .filter_map(|g| place.strip_suffix('族').and_then(|p| p.strip_suffix(g)))
        // The longest group wins, so 土家族 is not read as 家 + 土族.
        .min_by_key(|rest| rest.len())
    {
        if rest.is_empty() {
            // The place is named for the group itself (东乡族自治县 → 东乡县).
            place = place.strip_suffix('族').unwrap_or(place);
            break;
        }
        place = rest;
    }
    (!place.is_empty()).then(|| format!("{place}{suffix}"))
}

impl RegionCode {
    /// 广西壮族自治区.
    pub const GUANGXI: RegionCode = RegionCode(450_000);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> &'static Divisions {
        Divisions::gbt2260().unwrap()
    }

    fn code(s: &str) -> RegionCode {
        s.parse().unwrap()
    }

    #[test]
    fn embedded_table_holds_every_row_of_the_fixture() {
        let t = table();
        assert_eq!(t.covered(code("110000"), DivisionLevel::Province).count(), 1);
        // Three cities without counties also appear as their own county.
        assert_eq!(t.by_code.len(), 31 + 342 + 2978 - 3);
        assert_eq!(t.get(code("441900")).unwrap().level, DivisionLevel::City);
    }

    #[test]
    fn guangxi_has_14_cities_and_111_county_level_divisions() {
        let t = table();
        let gx = code("450000");
        assert_eq!(t.get(gx).unwrap().name, "广西壮族自治区");
        assert_eq!(t.children(gx).count(), 14);
        assert_eq!(t.covered(gx, DivisionLevel::City).count(), 14);
        assert_eq!(t.covered(gx, DivisionLevel::County).count(), 111);
        let by_children: usize = t.children(gx).map(|c| t.children(c.code).count()).sum();
        assert_eq!(by_children, 111);
    }

    #[test]
    fn gongcheng_is_an_autonomous_county_of_guilin() {
        let t = table();
        let d = t.get(code("450332")).unwrap();
        assert_eq!(d.name, "恭城瑶族自治县");
        assert_eq!(d.level, DivisionLevel::County);
        assert_eq!(d.parent, Some(code("450300")));
        assert_eq!(t.get(code("450300")).unwrap().name, "桂林市");
        assert!(t.children(code("450300")).any(|c| c.code == code("450332")));
    }

    #[test]
    fn table_hierarchy_agrees_with_code_coverage() {
        let t = table();
        for d in t.by_code.values() {
            if let Some(p) = d.parent {
                assert!(p.covers(d.code), "{} under {}", d.code, p);
            }
        }
    }

    #[test]
    fn county_names_resolve_exactly_by_short_form_and_by_old_name() {
        let t = table();
        let (gx, laibin, hechi) = (code("450000"), code("451300"), code("451200"));
        assert_eq!(t.resolve("南丹县", hechi), Ok(code("451221")));
        assert_eq!(t.resolve("金秀瑶族自治县", laibin), Ok(code("451324")));
        assert_eq!(t.resolve("金秀县", laibin), Ok(code("451324")));
        assert_eq!(t.resolve("金秀县", gx), Ok(code("451324")));
        assert_eq!(t.resolve("恭城县", code("450300")), Ok(code("450332")));
        assert_eq!(t.resolve("龙胜县", gx), Ok(code("450328")));
        assert_eq!(t.resolve("罗城县", hechi), Ok(code("451225")));
        assert_eq!(t.resolve("环江县", hechi), Ok(code("451226")));
        assert_eq!(t.resolve("宜州市", hechi), Ok(code("451203")));
        assert_eq!(t.resolve("横县", gx), Ok(code("450181")));
        assert_eq!(t.resolve("河池市", gx), Ok(hechi));
    }

    #[test]
    fn resolution_stays_within_the_given_region() {
        let t = table();
        assert!(matches!(
            t.resolve("金秀县", code("451200")),
            Err(ResolveError::Unknown { .. })
        ));
        assert!(matches!(
            t.resolve("河池市", code("451200")),
            Err(ResolveError::Unknown { .. })
        ));
        // 城中区 exists in 柳州 and 西宁; a province scope tells them apart.
        assert_eq!(t.resolve("城中区", code("450000")), Ok(code("450202")));
    }

    #[test]
    fn every_rename_points_at_a_current_guangxi_county_and_shadows_no_current_name() {
        let t = table();
        for (old, new) in GUANGXI_RENAMES {
            let d = t.get(RegionCode::new(new).unwrap()).unwrap();
            assert_eq!(d.level, DivisionLevel::County, "{old}");
            assert!(code("450000").covers(d.code), "{old}");
            assert!(t.resolve(old, code("450000")).is_ok_and(|c| c == d.code), "{old}");
            assert!(!t.exact.contains_key(old), "{old} is still a current name");
        }
    }

    #[test]
    fn short_forms_drop_every_ethnic_qualifier() {
        assert_eq!(short_form("金秀瑶族自治县").as_deref(), Some("金秀县"));
        assert_eq!(short_form("龙胜各族自治县").as_deref(), Some("龙胜县"));
        assert_eq!(short_form("罗城仫佬族自治县").as_deref(), Some("罗城县"));
        assert_eq!(short_form("环江毛南族自治县").as_deref(), Some("环江县"));
        assert_eq!(short_form("长阳土家族自治县").as_deref(), Some("长阳县"));
        assert_eq!(short_form("双江拉祜族佤族布朗族傣族自治县").as_deref(), Some("双江县"));
        assert_eq!(short_form("鄂温克族自治旗").as_deref(), Some("鄂温克旗"));
        assert_eq!(short_form("东乡族自治县").as_deref(), Some("东乡县"));
        assert_eq!(short_form("南丹县"), None);
    }

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
        assert_eq!(
            serde_json::to_string(&"450332".parse::<RegionCode>().unwrap()).unwrap(),
            "\"450332\""
        );
    }
}
