//! Severity scales are configuration: bureaus use 一般/重大, 高/中/低, 红/橙/黄, and
//! the benchmark data uses low/medium/high/critical. A hazard's severity is a
//! level of the scale configured for the deployment; one that is not (graded
//! before the scale changed) is flagged `unknown_severity` for a supervisor.

use serde::{Deserialize, Serialize};

/// One level of a scale, from least to most severe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeverityLevel {
    pub code: String,
    pub label: String,
}

/// A named, ordered scale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeverityScale {
    pub id: String,
    pub levels: Vec<SeverityLevel>,
}

impl SeverityScale {
    fn of(id: &str, levels: &[(&str, &str)]) -> Self {
        Self {
            id: id.into(),
            levels: levels
                .iter()
                .map(|(c, l)| SeverityLevel {
                    code: (*c).into(),
                    label: (*l).into(),
                })
                .collect(),
        }
    }

    /// 一般/重大 (general/major), as hazard investigation rules use.
    pub fn general_major() -> Self {
        Self::of("general_major", &[("general", "一般"), ("major", "重大")])
    }

    /// 低/中/高.
    pub fn low_medium_high() -> Self {
        Self::of("low_medium_high", &[("low", "低"), ("medium", "中"), ("high", "高")])
    }

    /// 黄/橙/红, as warning levels use.
    pub fn yellow_orange_red() -> Self {
        Self::of(
            "yellow_orange_red",
            &[("yellow", "黄"), ("orange", "橙"), ("red", "红")],
        )
    }

    /// low/medium/high/critical, as the benchmark workload uses.
    pub fn low_to_critical() -> Self {
        Self::of(
            "low_to_critical",
            &[("low", "低"), ("medium", "中"), ("high", "高"), ("critical", "严重")],
        )
    }

    /// The built-in scales, by id.
    pub fn builtin(id: &str) -> Option<Self> {
        match id {
            "general_major" => Some(Self::general_major()),
            "low_medium_high" => Some(Self::low_medium_high()),
            "yellow_orange_red" => Some(Self::yellow_orange_red()),
            "low_to_critical" => Some(Self::low_to_critical()),
            _ => None,
        }
    }

    pub fn contains(&self, code: &str) -> bool {
        self.levels.iter().any(|l| l.code == code)
    }

    /// Position from least severe (0) up.
    pub fn rank(&self, code: &str) -> Option<usize> {
        self.levels.iter().position(|l| l.code == code)
    }
}

impl Default for SeverityScale {
    fn default() -> Self {
        Self::low_to_critical()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_know_their_levels_and_order() {
        let s = SeverityScale::low_to_critical();
        assert!(s.contains("critical") && !s.contains("major"));
        assert!(s.rank("critical") > s.rank("low"));
        assert!(SeverityScale::builtin("general_major").unwrap().contains("major"));
        assert!(SeverityScale::builtin("nope").is_none());
    }
}
