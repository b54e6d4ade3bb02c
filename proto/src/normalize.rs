//! Datakit's point checks and normalisation: limits, key rules, per-category rules.
//!
//! The rules are those of cliutils' `point/check.go` with the options Datakit's write API
//! uses per category (`DefaultMetricOptions`, `DefaultLoggingOptions`,
//! `DefaultObjectOptions`), in the same order:
//!
//! 1. measurement: empty ⇒ `__default`; longer than the limit ⇒ truncated;
//! 2. counts: fields beyond `max_fields`, then tags beyond `max_tags`, are cut from the tail;
//! 3. each tag: key truncated, trailing `\` stripped and `\n` → space, `.` → `_` (logging,
//!    object); a key that then collides with another key is dropped; empty and disabled
//!    keys are dropped; value: trailing `\` stripped, `\n` → space, truncated;
//! 4. each field: key truncated, `.` → `_` (logging, object), trailing `\`/`\n` fixed, with
//!    the same collision rule; ±Inf ⇒ the max uint64 / min int64 as a float; NaN dropped;
//!    string and bytes dropped for metrics, else truncated;
//! 5. keys that still occur more than once (tag vs field included) are all dropped;
//! 6. all tag keys and values together are kept within `max_tags_total`;
//! 7. required keys (logging `status`, object `name`) are added as string fields.
//!
//! Normalising is idempotent: a normalised point passes again unchanged and without warnings.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::{Category, Point, Value};

/// Datakit's warn types (cliutils `point/err.go`).
pub mod kind {
    /// Empty or too long measurement.
    pub const INVALID_MEASUREMENT: &str = "invalid_measurement";
    /// Too many tags.
    pub const EXCEED_MAX_TAGS: &str = "exceed_max_tags";
    /// Too many fields.
    pub const EXCEED_MAX_FIELDS: &str = "exceed_max_fields";
    /// Tag key too long.
    pub const EXCEED_MAX_TAG_KEY_LEN: &str = "exceed_max_tag_key_len";
    /// Tag value too long.
    pub const EXCEED_MAX_TAG_VALUE_LEN: &str = "exceed_max_tag_value_len";
    /// Field key too long.
    pub const EXCEED_MAX_FIELD_KEY_LEN: &str = "exceed_max_field_key_len";
    /// String or bytes field too long.
    pub const EXCEED_MAX_FIELD_VALUE_LEN: &str = "exceed_max_field_value_len";
    /// All tags together too large.
    pub const EXCEED_MAX_TAG_KEY_VALUE_COMPOSE: &str = "exceed_max_tag_key_value_compose";
    /// +Inf float replaced.
    pub const CONVERT_INF_TO_MAX_VALUE: &str = "convert_inf_to_max_value";
    /// -Inf float replaced.
    pub const CONVERT_INF_TO_MIN_VALUE: &str = "convert_inf_to_min_value";
    /// A key was rewritten, or dropped because its rewritten form already exists.
    pub const INVALID_TAG_KEY: &str = "invalid_tag_key";
    /// A field value of a type the category does not take (or NaN).
    pub const INVALID_FIELD_VALUE_TYPE: &str = "invalid_field_value_type";
    /// A required key was added with its default.
    pub const ADD_REQUIRED_KV: &str = "add_required_kv";
    /// An empty or disabled key was dropped.
    pub const TAG_DISABLED: &str = "tag_disabled";
    /// A key occurring more than once was dropped.
    pub const KEY_NAME_CONFLICT: &str = "key_name_conflict";
    /// A `.` in a field key was replaced.
    pub const DOT_IN_KEY: &str = "dot_in_key";
    /// A newline or trailing backslash was fixed (Datakit's spelling).
    pub const FOUND_NEW_LINE_OR_TAIL_ESCAPE: &str = "found_new_line_or_tail_espace";
    /// A field without a value.
    pub const NIL_FIELD: &str = "nil_field";
    /// No field is left: the point is dropped.
    pub const NO_FIELD: &str = "no_field";
}

/// The measurement given to points without one.
pub const DEFAULT_MEASUREMENT: &str = "__default";

/// One fix applied to a point, with Datakit's warn type (`exceed_max_tags`, `dot_in_key`...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warn {
    /// Datakit's warn type.
    pub kind: &'static str,
    /// Human-readable detail.
    pub message: String,
}

/// Datakit's point limits.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Max measurement name length in bytes.
    pub max_measurement_len: usize,
    /// Max tags per point.
    pub max_tags: usize,
    /// Max fields per point.
    pub max_fields: usize,
    /// Max tag or field key length in bytes.
    pub max_key_len: usize,
    /// Max tag value length in bytes.
    pub max_tag_value_len: usize,
    /// Max total size of all tag keys and values in bytes.
    pub max_tags_total: usize,
    /// Max string or bytes field length.
    pub max_field_value_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_measurement_len: 1024,
            max_tags: 256,
            max_fields: 1024,
            max_key_len: 256,
            max_tag_value_len: 1024,
            max_tags_total: 64 * 1024,
            max_field_value_len: 32 * 1024 * 1024,
        }
    }
}

/// The per-category options of Datakit's write API.
struct Rules {
    /// `.` allowed in keys (else replaced with `_`).
    dot_in_key: bool,
    /// String and bytes fields allowed.
    str_fields: bool,
    /// Keys dropped wherever they occur.
    disabled: &'static [&'static str],
    /// Keys added as string fields when missing.
    required: &'static [(&'static str, &'static str)],
}

fn rules(category: Category) -> Rules {
    match category {
        Category::Metric | Category::MetricDeprecated => Rules {
            dot_in_key: true,
            str_fields: false,
            disabled: &[],
            required: &[],
        },
        Category::Logging => Rules {
            dot_in_key: false,
            str_fields: true,
            disabled: &["source", "date"],
            required: &[("status", "info")],
        },
        Category::Object => Rules {
            dot_in_key: false,
            str_fields: true,
            disabled: &["class", "date"],
            required: &[("name", "default")],
        },
        _ => Rules {
            dot_in_key: true,
            str_fields: true,
            disabled: &[],
            required: &[],
        },
    }
}

struct Checker<'a> {
    limits: &'a Limits,
    rules: Rules,
    warns: Vec<Warn>,
}

/// Attaches global tags (`host`, `ip`...) to a point, only for keys the point does not have
///. When the point's own tags and the global ones together exceed `max_tags`, the
/// point's own tail tags are dropped (warn `exceed_max_tags`) so that the global tags always
/// survive the cap; returns that warning.
pub fn attach_global_tags(
    point: &mut Point,
    globals: &[(String, String)],
    limits: &Limits,
) -> Option<Warn> {
    let max = limits.max_tags;
    let mut warn = None;
    // Counting the missing keys is needed only near the cap.
    let near_cap = max > 0 && point.tags.len() + globals.len() > max;
    let missing = if near_cap {
        globals
            .iter()
            .filter(|(k, _)| point.get_tag(k).is_none())
            .count()
    } else {
        0
    };
    if near_cap && globals.len() <= max && point.tags.len() + missing > max {
        let is_global = |key: &str| globals.iter().any(|(k, _)| k == key);
        // Every global key ends up on the point; the point's other tags share what is left.
        let room = max - globals.len();
        let before = point.tags.len();
        let mut others = 0;
        point.tags.retain(|(k, _)| {
            if is_global(k) {
                return true;
            }
            others += 1;
            others <= room
        });
        warn = Some(Warn {
            kind: kind::EXCEED_MAX_TAGS,
            message: format!(
                "{} tags and {missing} global tags exceed the limit of {max}; {} of the point's own tags dropped, global tags kept",
                before,
                before - point.tags.len()
            ),
        });
    }
    for (key, value) in globals {
        point.add_tag_if_absent(key, value);
    }
    warn
}

impl Checker<'_> {
    fn warn(&mut self, kind: &'static str, message: String) {
        self.warns.push(Warn { kind, message });
    }
}

/// Normalises a point in place for its category and returns the fixes made.
/// Returns `Err` with the warnings when the point must be dropped (e.g. no fields left).
///
/// # Errors
/// The warnings that made the point unusable.
pub fn normalize(
    point: &mut Point,
    category: Category,
    limits: &Limits,
) -> Result<Vec<Warn>, Vec<Warn>> {
    let mut c = Checker {
        limits,
        rules: rules(category),
        warns: Vec::new(),
    };
    c.measurement(point);
    c.counts(point);
    c.keys_and_values(point);
    c.tags_total(point);
    c.required(point);
    if point.fields.is_empty() {
        c.warn(
            kind::NO_FIELD,
            format!("point {:?} has no field left and is dropped", point.name),
        );
        return Err(c.warns);
    }
    Ok(c.warns)
}

impl Checker<'_> {
    fn measurement(&mut self, p: &mut Point) {
        if p.name.is_empty() {
            self.warn(
                kind::INVALID_MEASUREMENT,
                format!("empty measurement, set to {DEFAULT_MEASUREMENT}"),
            );
            p.name = DEFAULT_MEASUREMENT.to_string();
        }
        let max = self.limits.max_measurement_len;
        if max > 0 && p.name.len() > max {
            self.warn(
                kind::INVALID_MEASUREMENT,
                format!(
                    "measurement of {} bytes exceeds the limit of {max}, truncated",
                    p.name.len()
                ),
            );
            truncate_str(&mut p.name, max);
        }
    }

    fn counts(&mut self, p: &mut Point) {
        let max = self.limits.max_fields;
        if max > 0 && p.fields.len() > max {
            self.warn(
                kind::EXCEED_MAX_FIELDS,
                format!(
                    "{} fields exceed the limit of {max}, extra fields dropped",
                    p.fields.len()
                ),
            );
            p.fields.truncate(max);
        }
        let max = self.limits.max_tags;
        if max > 0 && p.tags.len() > max {
            self.warn(
                kind::EXCEED_MAX_TAGS,
                format!(
                    "{} tags exceed the limit of {max}, extra tags dropped",
                    p.tags.len()
                ),
            );
            p.tags.truncate(max);
        }
    }

    fn keys_and_values(&mut self, p: &mut Point) {
        // Drop marks, allocated only once something is dropped.
        let mut drop_tag: Vec<bool> = Vec::new();
        let mut drop_field: Vec<bool> = Vec::new();
        for i in 0..p.tags.len() {
            if !self.tag(p, i, &drop_tag, &drop_field) {
                set_drop(&mut drop_tag, i, p.tags.len());
            }
        }
        for i in 0..p.fields.len() {
            if !self.field(p, i, &drop_tag, &drop_field) {
                set_drop(&mut drop_field, i, p.fields.len());
            }
        }
        self.conflicts(p, &mut drop_tag, &mut drop_field);
        retain_by(&mut p.tags, &drop_tag);
        retain_by(&mut p.fields, &drop_field);
    }

    /// Renames tag `i` to `new`, unless another live key already has that name.
    fn rename(
        &mut self,
        p: &mut Point,
        slot: Slot,
        new: String,
        drop_tag: &[bool],
        drop_field: &[bool],
    ) -> bool {
        if key_exists(p, &new, slot, drop_tag, drop_field) {
            let what = if matches!(slot, Slot::Tag(_)) {
                "tag"
            } else {
                "field"
            };
            self.warn(
                kind::INVALID_TAG_KEY,
                format!(
                    "{what} key {new:?} already exists after fixing {:?}; dropped",
                    slot.key(p)
                ),
            );
            return false;
        }
        match slot {
            Slot::Tag(i) => p.tags[i].0 = new,
            Slot::Field(i) => p.fields[i].0 = new,
        }
        true
    }

    /// Checks tag `i`; false when it must be dropped.
    fn tag(&mut self, p: &mut Point, i: usize, drop_tag: &[bool], drop_field: &[bool]) -> bool {
        if !self.key_is_clean(&p.tags[i].0) && !self.fix_tag_key(p, i, drop_tag, drop_field) {
            return false;
        }
        if self.disabled(&p.tags[i].0) {
            return false;
        }
        let (key, value) = &mut p.tags[i];
        if value_is_clean(value, self.limits.max_tag_value_len) {
            return true;
        }
        if let Cow::Owned(new) = adjust(value) {
            let msg = format!("tag {key:?}: value {value:?} had a newline or trailing \\");
            *value = new;
            self.warn(kind::FOUND_NEW_LINE_OR_TAIL_ESCAPE, msg);
        }
        let max = self.limits.max_tag_value_len;
        if max > 0 && value.len() > max {
            let msg = format!(
                "tag {key:?}: value of {} bytes exceeds the limit of {max}, truncated",
                value.len()
            );
            truncate_str(value, max);
            // Truncation can expose a trailing backslash; keep the result stable.
            if let Cow::Owned(new) = adjust(value) {
                *value = new;
            }
            self.warn(kind::EXCEED_MAX_TAG_VALUE_LEN, msg);
        }
        true
    }

    /// Whether a key needs none of the key fixes: not too long, no trailing backslash, no
    /// newline, and no `.` where dots are replaced.
    #[inline]
    fn key_is_clean(&self, key: &str) -> bool {
        let max = self.limits.max_key_len;
        let dots = self.rules.dot_in_key;
        let b = key.as_bytes();
        (max == 0 || b.len() <= max)
            && b.last() != Some(&b'\\')
            && !b.iter().any(|&c| c == b'\n' || (c == b'.' && !dots))
    }

    /// Applies the key fixes to tag `i` (length, trailing `\`, newline, dot); false when it
    /// must be dropped.
    fn fix_tag_key(
        &mut self,
        p: &mut Point,
        i: usize,
        drop_tag: &[bool],
        drop_field: &[bool],
    ) -> bool {
        let slot = Slot::Tag(i);
        let max = self.limits.max_key_len;
        if max > 0 && p.tags[i].0.len() > max {
            self.warn(
                kind::EXCEED_MAX_TAG_KEY_LEN,
                format!(
                    "tag key of {} bytes exceeds the limit of {max}, truncated",
                    p.tags[i].0.len()
                ),
            );
            let mut new = p.tags[i].0.clone();
            truncate_str(&mut new, max);
            if !self.rename(p, slot, new, drop_tag, drop_field) {
                return false;
            }
        }
        if let Cow::Owned(new) = adjust(&p.tags[i].0) {
            self.warn(
                kind::INVALID_TAG_KEY,
                format!(
                    "tag key {:?}: trailing \\ removed, newlines replaced",
                    p.tags[i].0
                ),
            );
            if !self.rename(p, slot, new, drop_tag, drop_field) {
                return false;
            }
        }
        if !self.rules.dot_in_key && p.tags[i].0.contains('.') {
            self.warn(
                kind::INVALID_TAG_KEY,
                format!("tag key {:?}: '.' replaced with '_'", p.tags[i].0),
            );
            let new = p.tags[i].0.replace('.', "_");
            if !self.rename(p, slot, new, drop_tag, drop_field) {
                return false;
            }
        }
        true
    }

    /// Checks field `i`; false when it must be dropped.
    fn field(&mut self, p: &mut Point, i: usize, drop_tag: &[bool], drop_field: &[bool]) -> bool {
        if !self.key_is_clean(&p.fields[i].0) && !self.fix_field_key(p, i, drop_tag, drop_field) {
            return false;
        }
        if self.disabled(&p.fields[i].0) {
            return false;
        }
        self.field_value(p, i)
    }

    /// Applies the key fixes to field `i` (length, dot, trailing `\`, newline); false when
    /// it must be dropped.
    fn fix_field_key(
        &mut self,
        p: &mut Point,
        i: usize,
        drop_tag: &[bool],
        drop_field: &[bool],
    ) -> bool {
        let slot = Slot::Field(i);
        let max = self.limits.max_key_len;
        if max > 0 && p.fields[i].0.len() > max {
            self.warn(
                kind::EXCEED_MAX_FIELD_KEY_LEN,
                format!(
                    "field key of {} bytes exceeds the limit of {max}, truncated",
                    p.fields[i].0.len()
                ),
            );
            let mut new = p.fields[i].0.clone();
            truncate_str(&mut new, max);
            if !self.rename(p, slot, new, drop_tag, drop_field) {
                return false;
            }
        }
        if !self.rules.dot_in_key && p.fields[i].0.contains('.') {
            self.warn(
                kind::DOT_IN_KEY,
                format!("field key {:?}: '.' replaced with '_'", p.fields[i].0),
            );
            let new = p.fields[i].0.replace('.', "_");
            if !self.rename(p, slot, new, drop_tag, drop_field) {
                return false;
            }
        }
        if let Cow::Owned(new) = adjust(&p.fields[i].0) {
            self.warn(
                kind::FOUND_NEW_LINE_OR_TAIL_ESCAPE,
                format!(
                    "field key {:?}: trailing \\ removed, newlines replaced",
                    p.fields[i].0
                ),
            );
            if !self.rename(p, slot, new, drop_tag, drop_field) {
                return false;
            }
        }
        true
    }

    /// Checks the value of field `i`; false when it must be dropped.
    fn field_value(&mut self, p: &mut Point, i: usize) -> bool {
        let (key, value) = &mut p.fields[i];
        match value {
            Value::F(f) if f.is_nan() => {
                self.warn(
                    kind::INVALID_FIELD_VALUE_TYPE,
                    format!("field {key:?} is NaN; dropped"),
                );
                return false;
            }
            Value::F(f) if *f == f64::INFINITY => {
                self.warn(
                    kind::CONVERT_INF_TO_MAX_VALUE,
                    format!("field {key:?}: +Inf converted to the max uint64"),
                );
                *f = u64::MAX as f64;
            }
            Value::F(f) if *f == f64::NEG_INFINITY => {
                self.warn(
                    kind::CONVERT_INF_TO_MIN_VALUE,
                    format!("field {key:?}: -Inf converted to the min int64"),
                );
                *f = i64::MIN as f64;
            }
            Value::S(_) | Value::D(_) if !self.rules.str_fields => {
                self.warn(
                    kind::INVALID_FIELD_VALUE_TYPE,
                    format!(
                        "field {key:?}: {} values are not allowed in this category; dropped",
                        value.type_name()
                    ),
                );
                return false;
            }
            Value::S(s)
                if self.limits.max_field_value_len > 0
                    && s.len() > self.limits.max_field_value_len =>
            {
                let max = self.limits.max_field_value_len;
                self.warn(
                    kind::EXCEED_MAX_FIELD_VALUE_LEN,
                    format!(
                        "field {key:?}: value of {} bytes exceeds the limit of {max}, truncated",
                        s.len()
                    ),
                );
                truncate_str(s, max);
            }
            Value::D(d)
                if self.limits.max_field_value_len > 0
                    && d.len() > self.limits.max_field_value_len =>
            {
                let max = self.limits.max_field_value_len;
                self.warn(
                    kind::EXCEED_MAX_FIELD_VALUE_LEN,
                    format!(
                        "field {key:?}: value of {} bytes exceeds the limit of {max}, truncated",
                        d.len()
                    ),
                );
                d.truncate(max);
            }
            _ => {}
        }
        true
    }

    /// Drops empty and disabled keys; true when dropped.
    fn disabled(&mut self, key: &str) -> bool {
        if key.is_empty() {
            self.warn(kind::TAG_DISABLED, "empty key dropped".to_string());
            return true;
        }
        if self.rules.disabled.contains(&key) {
            self.warn(
                kind::TAG_DISABLED,
                format!("key {key:?} is not allowed in this category; dropped"),
            );
            return true;
        }
        false
    }

    /// Drops every occurrence of a key that occurs more than once among live tags and fields.
    fn conflicts(&mut self, p: &Point, drop_tag: &mut Vec<bool>, drop_field: &mut Vec<bool>) {
        let live = |drop: &[bool], i: usize| !is_dropped(drop, i);
        let total = p.tags.len() + p.fields.len();
        if total < 2 {
            return;
        }
        if total <= 24 && drop_tag.is_empty() && drop_field.is_empty() {
            // Most common case: nothing dropped, few keys; compare them pairwise in place.
            let mut keys = [""; 24];
            let named = p
                .tags
                .iter()
                .map(|(k, _)| k)
                .chain(p.fields.iter().map(|(k, _)| k));
            for (slot, k) in keys.iter_mut().zip(named) {
                *slot = k.as_str();
            }
            let keys = &keys[..total];
            if !keys
                .iter()
                .enumerate()
                .any(|(i, k)| keys[i + 1..].contains(k))
            {
                return;
            }
        } else if total <= 24 {
            // Common case: look for a duplicate without allocating.
            let live_keys = || {
                p.tags
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| live(drop_tag, *i))
                    .map(|(_, (k, _))| k.as_str())
                    .chain(
                        p.fields
                            .iter()
                            .enumerate()
                            .filter(|(i, _)| live(drop_field, *i))
                            .map(|(_, (k, _))| k.as_str()),
                    )
            };
            let any_dup = live_keys()
                .enumerate()
                .any(|(i, k)| live_keys().skip(i + 1).any(|o| o == k));
            if !any_dup {
                return;
            }
        }
        let keys: Vec<(&str, bool, usize)> = p
            .tags
            .iter()
            .enumerate()
            .filter(|(i, _)| live(drop_tag, *i))
            .map(|(i, (k, _))| (k.as_str(), true, i))
            .chain(
                p.fields
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| live(drop_field, *i))
                    .map(|(i, (k, _))| (k.as_str(), false, i)),
            )
            .collect();
        let dup: Vec<bool> = if keys.len() <= 24 {
            keys.iter()
                .enumerate()
                .map(|(i, (k, _, _))| {
                    keys.iter()
                        .enumerate()
                        .any(|(j, (o, _, _))| i != j && k == o)
                })
                .collect()
        } else {
            let mut counts: HashMap<&str, u32> = HashMap::with_capacity(keys.len());
            for (k, _, _) in &keys {
                *counts.entry(k).or_default() += 1;
            }
            keys.iter().map(|(k, _, _)| counts[k] > 1).collect()
        };
        for ((k, is_tag, i), dup) in keys.iter().zip(dup) {
            if !dup {
                continue;
            }
            let what = if *is_tag { "tag" } else { "field" };
            self.warn(
                kind::KEY_NAME_CONFLICT,
                format!("{what} key {k:?} occurs more than once; dropped"),
            );
            if *is_tag {
                set_drop(drop_tag, *i, p.tags.len());
            } else {
                set_drop(drop_field, *i, p.fields.len());
            }
        }
    }

    fn tags_total(&mut self, p: &mut Point) {
        let max = self.limits.max_tags_total;
        if max == 0 {
            return;
        }
        let mut total: usize = p.tags.iter().map(|(k, v)| k.len() + v.len()).sum();
        if total <= max {
            return;
        }
        let before = p.tags.len();
        while total > max {
            match p.tags.pop() {
                Some((k, v)) => total -= k.len() + v.len(),
                None => break,
            }
        }
        self.warn(
            kind::EXCEED_MAX_TAG_KEY_VALUE_COMPOSE,
            format!(
                "tag keys and values exceed {max} bytes together; {} tags dropped from the tail",
                before - p.tags.len()
            ),
        );
    }

    fn required(&mut self, p: &mut Point) {
        for &(key, default) in self.rules.required {
            if p.get_tag(key).is_some() || p.get_field(key).is_some() {
                continue;
            }
            let max = self.limits.max_fields;
            if max > 0
                && p.fields.len() >= max
                && let Some((dropped, _)) = p.fields.pop()
            {
                self.warn(
                    kind::EXCEED_MAX_FIELDS,
                    format!("field {dropped:?} dropped to make room for required key {key:?}"),
                );
            }
            let mut value = default.to_string();
            if self.limits.max_field_value_len > 0 {
                truncate_str(&mut value, self.limits.max_field_value_len);
            }
            p.fields.push((key.to_string(), Value::S(value)));
            self.warn(
                kind::ADD_REQUIRED_KV,
                format!("required key {key:?} added with value {default:?}"),
            );
        }
    }
}

/// A tag or field position.
#[derive(Clone, Copy)]
enum Slot {
    Tag(usize),
    Field(usize),
}

impl Slot {
    fn key(self, p: &Point) -> &str {
        match self {
            Slot::Tag(i) => &p.tags[i].0,
            Slot::Field(i) => &p.fields[i].0,
        }
    }
}

/// Whether a live tag or field other than `slot` has key `key`.
fn key_exists(p: &Point, key: &str, slot: Slot, drop_tag: &[bool], drop_field: &[bool]) -> bool {
    let tag_hit = p.tags.iter().enumerate().any(|(i, (k, _))| {
        k == key && !is_dropped(drop_tag, i) && !matches!(slot, Slot::Tag(j) if j == i)
    });
    tag_hit
        || p.fields.iter().enumerate().any(|(i, (k, _))| {
            k == key && !is_dropped(drop_field, i) && !matches!(slot, Slot::Field(j) if j == i)
        })
}

/// Whether entry `i` is marked dropped (an empty mark list marks nothing).
#[inline]
fn is_dropped(drop: &[bool], i: usize) -> bool {
    drop.get(i).copied().unwrap_or(false)
}

fn set_drop(drop: &mut Vec<bool>, i: usize, len: usize) {
    if drop.is_empty() {
        drop.resize(len, false);
    }
    drop[i] = true;
}

fn retain_by<T>(v: &mut Vec<T>, drop: &[bool]) {
    if !drop.iter().any(|&d| d) {
        return;
    }
    let mut i = 0;
    v.retain(|_| {
        i += 1;
        !drop[i - 1]
    });
}

/// Strips trailing backslashes and replaces newlines with spaces (cliutils `adjustKV`).
fn adjust(s: &str) -> Cow<'_, str> {
    if value_is_clean(s, 0) {
        return Cow::Borrowed(s);
    }
    let trimmed = s.trim_end_matches('\\');
    if trimmed.contains('\n') {
        Cow::Owned(trimmed.replace('\n', " "))
    } else if trimmed.len() != s.len() {
        Cow::Owned(trimmed.to_string())
    } else {
        Cow::Borrowed(s)
    }
}

/// Whether `adjust` leaves `s` as it is and it fits `max` bytes (0: no limit).
#[inline]
fn value_is_clean(s: &str, max: usize) -> bool {
    let b = s.as_bytes();
    (max == 0 || b.len() <= max) && b.last() != Some(&b'\\') && !b.contains(&b'\n')
}

/// Truncates to at most `max` bytes on a character boundary.
fn truncate_str(s: &mut String, max: usize) {
    if s.len() <= max {
        return;
    }
    let mut i = max;
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    s.truncate(i);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(w: &[Warn]) -> Vec<&'static str> {
        w.iter().map(|w| w.kind).collect()
    }

    fn norm(p: &mut Point, c: Category) -> Vec<Warn> {
        normalize(p, c, &Limits::default()).expect("kept")
    }

    /// Normalising again must change nothing and warn nothing.
    fn assert_stable(p: &Point, c: Category, limits: &Limits) {
        let mut again = p.clone();
        let w = normalize(&mut again, c, limits).expect("still kept");
        assert_eq!(w, vec![], "second pass warned");
        assert_eq!(&again, p, "second pass changed the point");
    }

    #[test]
    fn a_clean_point_passes_untouched() {
        let mut p = Point::new("cpu", 1)
            .tag("host", "h")
            .field("usage", Value::F(1.0));
        let before = p.clone();
        assert_eq!(norm(&mut p, Category::Metric), vec![]);
        assert_eq!(p, before);
    }

    #[test]
    fn empty_measurement_becomes_default() {
        let mut p = Point::new("", 1).field("f", Value::I(1));
        assert_eq!(
            kinds(&norm(&mut p, Category::Metric)),
            vec![kind::INVALID_MEASUREMENT]
        );
        assert_eq!(p.name, "__default");
    }

    #[test]
    fn long_measurement_is_truncated_on_a_char_boundary() {
        let limits = Limits {
            max_measurement_len: 4,
            ..Limits::default()
        };
        let mut p = Point::new("abcé", 1).field("f", Value::I(1));
        let w = normalize(&mut p, Category::Metric, &limits).expect("kept");
        assert_eq!(kinds(&w), vec![kind::INVALID_MEASUREMENT]);
        assert_eq!(p.name, "abc");
        assert_stable(&p, Category::Metric, &limits);
    }

    #[test]
    fn tags_and_fields_beyond_the_limits_are_cut_from_the_tail() {
        let limits = Limits {
            max_tags: 2,
            max_fields: 2,
            ..Limits::default()
        };
        let mut p = Point::new("m", 1)
            .tag("a", "1")
            .tag("b", "2")
            .tag("c", "3")
            .field("x", Value::I(1))
            .field("y", Value::I(2))
            .field("z", Value::I(3));
        let w = normalize(&mut p, Category::Metric, &limits).expect("kept");
        assert_eq!(
            kinds(&w),
            vec![kind::EXCEED_MAX_FIELDS, kind::EXCEED_MAX_TAGS]
        );
        assert_eq!(p.tags.len(), 2);
        assert_eq!(
            p.fields.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
            vec!["x", "y"]
        );
        assert_stable(&p, Category::Metric, &limits);
    }

    #[test]
    fn global_tags_win_over_the_points_own_tail_tags_at_the_tag_cap() {
        let limits = Limits::default();
        let mut p = Point::new("m", 1).field("f", Value::I(1));
        for i in 0..256 {
            p = p.tag(format!("t{i:03}"), "v");
        }
        let globals = vec![
            ("host".to_string(), "web-1".to_string()),
            ("ip".to_string(), "10.0.0.1".to_string()),
            ("t000".to_string(), "global".to_string()),
        ];
        let w = attach_global_tags(&mut p, &globals, &limits).expect("a warning");
        assert_eq!(w.kind, kind::EXCEED_MAX_TAGS);
        let w = normalize(&mut p, Category::Metric, &limits).expect("kept");
        assert!(!kinds(&w).contains(&kind::EXCEED_MAX_TAGS), "{w:?}");
        assert_eq!(p.tags.len(), 256);
        assert_eq!(p.get_tag("host"), Some("web-1"));
        assert_eq!(p.get_tag("ip"), Some("10.0.0.1"));
        // The point's own value of a global key wins, as without the cap.
        assert_eq!(p.get_tag("t000"), Some("v"));
        // What went is the point's own tail: t254 and t255 made room for host and ip.
        assert_eq!(p.get_tag("t253"), Some("v"));
        assert_eq!(p.get_tag("t254"), None);
        assert_eq!(p.get_tag("t255"), None);
    }

    #[test]
    fn global_tags_below_the_cap_are_only_added_where_absent() {
        let mut p = Point::new("m", 1)
            .tag("host", "mine")
            .field("f", Value::I(1));
        let globals = vec![
            ("host".to_string(), "web-1".to_string()),
            ("ip".to_string(), "10.0.0.1".to_string()),
        ];
        assert_eq!(
            attach_global_tags(&mut p, &globals, &Limits::default()),
            None
        );
        assert_eq!(
            p.tags,
            vec![
                ("host".to_string(), "mine".to_string()),
                ("ip".to_string(), "10.0.0.1".to_string())
            ]
        );
    }

    #[test]
    fn long_keys_are_truncated_and_dropped_on_collision() {
        let limits = Limits {
            max_key_len: 3,
            ..Limits::default()
        };
        let mut p = Point::new("m", 1)
            .tag("abcdef", "1")
            .field("xyzzy", Value::I(1))
            .field("abc1", Value::I(2))
            .field("abc", Value::I(3));
        let w = normalize(&mut p, Category::Metric, &limits).expect("kept");
        assert_eq!(
            kinds(&w),
            vec![
                kind::EXCEED_MAX_TAG_KEY_LEN,
                kind::INVALID_TAG_KEY, // "abc" exists as a field
                kind::EXCEED_MAX_FIELD_KEY_LEN,
                kind::EXCEED_MAX_FIELD_KEY_LEN,
                kind::INVALID_TAG_KEY, // "abc" exists
            ]
        );
        assert!(p.tags.is_empty());
        assert_eq!(
            p.fields,
            vec![
                ("xyz".to_string(), Value::I(1)),
                ("abc".to_string(), Value::I(3))
            ]
        );
        assert_stable(&p, Category::Metric, &limits);
    }

    #[test]
    fn tag_values_are_fixed_and_truncated() {
        let limits = Limits {
            max_tag_value_len: 5,
            ..Limits::default()
        };
        let mut p = Point::new("m", 1)
            .tag("nl", "a\nb\\\\")
            .tag("long", "abcd\\efgh")
            .field("f", Value::I(1));
        let w = normalize(&mut p, Category::Metric, &limits).expect("kept");
        assert_eq!(
            kinds(&w),
            vec![
                kind::FOUND_NEW_LINE_OR_TAIL_ESCAPE,
                kind::EXCEED_MAX_TAG_VALUE_LEN
            ]
        );
        assert_eq!(p.get_tag("nl"), Some("a b"));
        assert_eq!(
            p.get_tag("long"),
            Some("abcd"),
            "truncation then trailing \\ removed"
        );
        assert_stable(&p, Category::Metric, &limits);
    }

    #[test]
    fn keys_with_newlines_or_trailing_backslash_are_fixed() {
        let mut p = Point::new("m", 1)
            .tag("t\\", "v")
            .field("f\nx", Value::I(1))
            .field("g\\\\", Value::I(2));
        let w = norm(&mut p, Category::Metric);
        assert_eq!(
            kinds(&w),
            vec![
                kind::INVALID_TAG_KEY,
                kind::FOUND_NEW_LINE_OR_TAIL_ESCAPE,
                kind::FOUND_NEW_LINE_OR_TAIL_ESCAPE
            ]
        );
        assert_eq!(p.tags, vec![("t".to_string(), "v".to_string())]);
        assert_eq!(
            p.fields,
            vec![
                ("f x".to_string(), Value::I(1)),
                ("g".to_string(), Value::I(2))
            ]
        );
        assert_stable(&p, Category::Metric, &Limits::default());
    }

    #[test]
    fn empty_keys_are_dropped() {
        let mut p = Point::new("m", 1)
            .tag("", "v")
            .field("", Value::I(1))
            .field("f", Value::I(1));
        let w = norm(&mut p, Category::Metric);
        assert_eq!(kinds(&w), vec![kind::TAG_DISABLED, kind::TAG_DISABLED]);
        assert!(p.tags.is_empty());
        assert_eq!(p.fields.len(), 1);
    }

    #[test]
    fn duplicate_keys_including_tag_versus_field_are_all_dropped() {
        let mut p = Point::new("m", 1)
            .tag("host", "h")
            .field("host", Value::I(1))
            .field("ok", Value::I(1));
        p.fields.push(("dup".into(), Value::I(1)));
        p.fields.push(("dup".into(), Value::I(2)));
        let w = norm(&mut p, Category::Metric);
        assert_eq!(kinds(&w), vec![kind::KEY_NAME_CONFLICT; 4]);
        assert!(p.tags.is_empty());
        assert_eq!(p.fields, vec![("ok".to_string(), Value::I(1))]);
        assert_stable(&p, Category::Metric, &Limits::default());
    }

    #[test]
    fn many_duplicates_use_the_hashed_path() {
        let mut p = Point::new("m", 1);
        for i in 0..40 {
            p.fields.push((format!("k{}", i % 20), Value::I(i)));
        }
        p.fields.push(("unique".into(), Value::I(1)));
        let w = norm(&mut p, Category::Metric);
        assert_eq!(w.len(), 40);
        assert!(w.iter().all(|w| w.kind == kind::KEY_NAME_CONFLICT));
        assert_eq!(p.fields, vec![("unique".to_string(), Value::I(1))]);
    }

    #[test]
    fn infinities_become_extreme_floats_and_nan_is_dropped() {
        let mut p = Point::new("m", 1)
            .field("p", Value::F(f64::INFINITY))
            .field("n", Value::F(f64::NEG_INFINITY))
            .field("nan", Value::F(f64::NAN));
        let w = norm(&mut p, Category::Metric);
        assert_eq!(
            kinds(&w),
            vec![
                kind::CONVERT_INF_TO_MAX_VALUE,
                kind::CONVERT_INF_TO_MIN_VALUE,
                kind::INVALID_FIELD_VALUE_TYPE
            ]
        );
        assert_eq!(
            p.get_field("p"),
            Some(&Value::F(18_446_744_073_709_551_615.0))
        );
        assert_eq!(
            p.get_field("n"),
            Some(&Value::F(-9_223_372_036_854_775_808.0))
        );
        assert_eq!(p.get_field("nan"), None);
        assert_stable(&p, Category::Metric, &Limits::default());
    }

    #[test]
    fn metric_drops_string_and_bytes_fields_and_keeps_dots() {
        let mut p = Point::new("m", 1)
            .tag("a.b", "v")
            .field("s", Value::S("x".into()))
            .field("d", Value::D(vec![1]))
            .field("x.y", Value::I(1));
        let w = norm(&mut p, Category::Metric);
        assert_eq!(kinds(&w), vec![kind::INVALID_FIELD_VALUE_TYPE; 2]);
        assert_eq!(p.get_tag("a.b"), Some("v"));
        assert_eq!(p.fields, vec![("x.y".to_string(), Value::I(1))]);
    }

    #[test]
    fn metric_with_only_string_fields_is_dropped() {
        let mut p = Point::new("m", 1).field("s", Value::S("x".into()));
        let w = normalize(&mut p, Category::Metric, &Limits::default()).expect_err("dropped");
        assert_eq!(
            kinds(&w),
            vec![kind::INVALID_FIELD_VALUE_TYPE, kind::NO_FIELD]
        );
    }

    #[test]
    fn long_string_and_bytes_fields_are_truncated() {
        let limits = Limits {
            max_field_value_len: 3,
            ..Limits::default()
        };
        let mut p = Point::new("m", 1)
            .field("s", Value::S("aé€".into()))
            .field("d", Value::D(vec![1, 2, 3, 4]));
        let w = normalize(&mut p, Category::Logging, &limits).expect("kept");
        assert_eq!(
            kinds(&w),
            vec![
                kind::EXCEED_MAX_FIELD_VALUE_LEN,
                kind::EXCEED_MAX_FIELD_VALUE_LEN,
                kind::ADD_REQUIRED_KV
            ]
        );
        assert_eq!(p.get_field("s"), Some(&Value::S("aé".into())));
        assert_eq!(p.get_field("d"), Some(&Value::D(vec![1, 2, 3])));
        assert_stable(&p, Category::Logging, &limits);
    }

    #[test]
    fn logging_replaces_dots_drops_source_and_date_and_adds_status() {
        let mut p = Point::new("nginx", 1)
            .tag("a.b", "v")
            .tag("source", "s")
            .field("date", Value::I(1))
            .field("x.y", Value::S("m".into()))
            .field("message", Value::S("hello".into()));
        let w = norm(&mut p, Category::Logging);
        assert_eq!(
            kinds(&w),
            vec![
                kind::INVALID_TAG_KEY,
                kind::TAG_DISABLED,
                kind::TAG_DISABLED,
                kind::DOT_IN_KEY,
                kind::ADD_REQUIRED_KV
            ]
        );
        assert_eq!(p.tags, vec![("a_b".to_string(), "v".to_string())]);
        assert_eq!(
            p.fields,
            vec![
                ("x_y".to_string(), Value::S("m".into())),
                ("message".to_string(), Value::S("hello".into())),
                ("status".to_string(), Value::S("info".into())),
            ]
        );
        assert_stable(&p, Category::Logging, &Limits::default());
    }

    #[test]
    fn logging_keeps_an_existing_status_tag() {
        let mut p = Point::new("l", 1)
            .tag("status", "error")
            .field("message", Value::S("x".into()));
        assert_eq!(norm(&mut p, Category::Logging), vec![]);
        assert_eq!(p.get_field("status"), None);
    }

    #[test]
    fn dot_rename_colliding_with_an_existing_key_drops_the_renamed_one() {
        let mut p = Point::new("l", 1)
            .tag("a.b", "1")
            .tag("a_b", "2")
            .field("status", Value::S("ok".into()));
        let w = norm(&mut p, Category::Logging);
        assert_eq!(
            kinds(&w),
            vec![kind::INVALID_TAG_KEY, kind::INVALID_TAG_KEY]
        );
        assert_eq!(p.tags, vec![("a_b".to_string(), "2".to_string())]);
    }

    #[test]
    fn object_replaces_dots_drops_class_and_date_and_adds_name() {
        let mut p = Point::new("host", 1)
            .tag("class", "c")
            .tag("os.type", "linux")
            .field("date", Value::I(1))
            .field("cpu", Value::I(4));
        let w = norm(&mut p, Category::Object);
        assert_eq!(
            kinds(&w),
            vec![
                kind::TAG_DISABLED,
                kind::INVALID_TAG_KEY,
                kind::TAG_DISABLED,
                kind::ADD_REQUIRED_KV
            ]
        );
        assert_eq!(p.tags, vec![("os_type".to_string(), "linux".to_string())]);
        assert_eq!(p.get_field("name"), Some(&Value::S("default".into())));
        assert_stable(&p, Category::Object, &Limits::default());
    }

    #[test]
    fn custom_object_and_others_get_only_the_common_rules() {
        let mut p = Point::new("m", 1)
            .tag("a.b", "v")
            .field("class", Value::S("x".into()));
        assert_eq!(norm(&mut p, Category::CustomObject), vec![]);
        assert_eq!(norm(&mut p, Category::Tracing), vec![]);
    }

    #[test]
    fn tags_together_are_kept_within_the_total_limit() {
        let limits = Limits {
            max_tags_total: 10,
            ..Limits::default()
        };
        let mut p = Point::new("m", 1)
            .tag("a", "1234")
            .tag("b", "1234")
            .tag("c", "1")
            .field("f", Value::I(1));
        let w = normalize(&mut p, Category::Metric, &limits).expect("kept");
        assert_eq!(kinds(&w), vec![kind::EXCEED_MAX_TAG_KEY_VALUE_COMPOSE]);
        assert_eq!(p.tags.len(), 2);
        assert_stable(&p, Category::Metric, &limits);
    }

    #[test]
    fn required_key_at_the_field_limit_stays_stable() {
        let limits = Limits {
            max_fields: 2,
            ..Limits::default()
        };
        let mut p = Point::new("l", 1)
            .field("a", Value::I(1))
            .field("b", Value::I(2));
        let w = normalize(&mut p, Category::Logging, &limits).expect("kept");
        assert_eq!(
            kinds(&w),
            vec![kind::EXCEED_MAX_FIELDS, kind::ADD_REQUIRED_KV]
        );
        assert_eq!(p.fields.len(), 2);
        assert_stable(&p, Category::Logging, &limits);
    }

    #[test]
    fn a_point_without_fields_is_dropped() {
        let mut p = Point::new("m", 1).tag("t", "v");
        let w = normalize(&mut p, Category::Metric, &Limits::default()).expect_err("dropped");
        assert_eq!(kinds(&w), vec![kind::NO_FIELD]);
    }
}
