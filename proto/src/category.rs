//! Datakit's data categories, their short aliases and their upload paths.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A data category.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Category {
    /// `metric` (M).
    Metric,
    /// Legacy `metrics`, uploaded to `/v1/write/metrics`.
    MetricDeprecated,
    /// `network` (N).
    Network,
    /// `keyevent` (E).
    KeyEvent,
    /// `object` (O).
    Object,
    /// `object_change` (OCH), deprecated.
    ObjectChange,
    /// `custom_object` (CO).
    CustomObject,
    /// `logging` (L).
    Logging,
    /// `tracing` (T).
    Tracing,
    /// `rum` (R).
    Rum,
    /// `security` (S).
    Security,
    /// `profiling` (P).
    Profiling,
    /// `dialtesting` (DT).
    DialTesting,
    /// `dynamic_dw`.
    DynamicDw,
}

impl Category {
    /// Every category, in a stable order.
    pub const ALL: [Category; 14] = [
        Category::Metric,
        Category::MetricDeprecated,
        Category::Network,
        Category::KeyEvent,
        Category::Object,
        Category::ObjectChange,
        Category::CustomObject,
        Category::Logging,
        Category::Tracing,
        Category::Rum,
        Category::Security,
        Category::Profiling,
        Category::DialTesting,
        Category::DynamicDw,
    ];

    /// The categories `POST /v1/write/:category` accepts.
    pub const WRITABLE: [Category; 9] = [
        Category::Metric,
        Category::Logging,
        Category::Object,
        Category::Network,
        Category::Tracing,
        Category::KeyEvent,
        Category::CustomObject,
        Category::Security,
        Category::Rum,
    ];

    /// The category's name, as used in URLs and directory names.
    pub fn name(self) -> &'static str {
        match self {
            Category::Metric => "metric",
            Category::MetricDeprecated => "metrics",
            Category::Network => "network",
            Category::KeyEvent => "keyevent",
            Category::Object => "object",
            Category::ObjectChange => "object_change",
            Category::CustomObject => "custom_object",
            Category::Logging => "logging",
            Category::Tracing => "tracing",
            Category::Rum => "rum",
            Category::Security => "security",
            Category::Profiling => "profiling",
            Category::DialTesting => "dialtesting",
            Category::DynamicDw => "dynamic_dw",
        }
    }

    /// The short alias (`M`, `L`, `O`...).
    pub fn alias(self) -> &'static str {
        match self {
            Category::Metric => "M",
            Category::MetricDeprecated => "M",
            Category::Network => "N",
            Category::KeyEvent => "E",
            Category::Object => "O",
            Category::ObjectChange => "OCH",
            Category::CustomObject => "CO",
            Category::Logging => "L",
            Category::Tracing => "T",
            Category::Rum => "R",
            Category::Security => "S",
            Category::Profiling => "P",
            Category::DialTesting => "DT",
            Category::DynamicDw => "DYNAMIC_DW",
        }
    }

    /// The Dataway upload path (`/v1/write/<name>`).
    pub fn url_path(self) -> String {
        format!("/v1/write/{}", self.name())
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is neither a category nor an alias.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid category {0:?}: use one of metric, logging, object, network, tracing, keyevent, custom_object, security, rum, profiling"
)]
pub struct InvalidCategory(pub String);

impl FromStr for Category {
    type Err = InvalidCategory;

    /// Accepts a category name (`metric`) or alias (`M`); the path form `/v1/write/metric` too.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.strip_prefix("/v1/write/").unwrap_or(s);
        Category::ALL
            .iter()
            .copied()
            .find(|c| c.name() == s || (c.alias() == s && *c != Category::MetricDeprecated))
            .ok_or_else(|| InvalidCategory(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_aliases_and_paths() {
        assert_eq!("metric".parse::<Category>(), Ok(Category::Metric));
        assert_eq!("M".parse::<Category>(), Ok(Category::Metric));
        assert_eq!("L".parse::<Category>(), Ok(Category::Logging));
        assert_eq!("/v1/write/object".parse::<Category>(), Ok(Category::Object));
        assert_eq!(
            "metrics".parse::<Category>(),
            Ok(Category::MetricDeprecated)
        );
        assert!("nope".parse::<Category>().is_err());
    }

    #[test]
    fn every_category_round_trips_through_its_name() {
        for c in Category::ALL {
            assert_eq!(c.name().parse::<Category>(), Ok(c));
            assert_eq!(c.url_path(), format!("/v1/write/{}", c.name()));
        }
    }
}
