//! Datakit's Graphite metric mapper (statsd_exporter style, `[inputs.graphite.metric_mapper]`):
//! glob and regex rules turning a dotted name into a measurement, a field name and labels.
//!
//! Pure: [`Mapper::new`] checks and compiles the rules, [`Mapper::map`] looks one name up.
//! Semantics follow Datakit 1.84's mapper:
//! - A glob `match` is dot-separated; each component is a literal or `*`, and `*` matches
//!   exactly one component (possibly empty). The name must have as many components.
//! - Glob rules are tried before regex rules whatever their order in the file; among glob
//!   rules the first matching one (file order) wins, then the first matching regex rule.
//! - A regex is unanchored (it may match part of the name); `name` and label values are
//!   expanded with `$1`/`${1}`/`$name` as Go's `Regexp.ExpandString` does.
//! - In glob templates `$n`/`${n}` is the n-th `*`. A reference is read as `$` plus the longest
//!   run of `[A-Za-z0-9_$]` (so `$1_x` is one unknown reference: write `${1}_x`); references
//!   that are not a number from 1 to the number of `*` become empty.
//! - The metric type is always `gauge`: a rule with `match_metric_type` `counter` or
//!   `observer` never matches.

use regex::Regex;

/// The measurement of unmapped names and of rules without `measurement_name`.
pub const DEFAULT_MEASUREMENT: &str = "graphite";

/// One `[[inputs.graphite.metric_mapper.mappings]]` table as written (before checking).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleConfig {
    /// `match`: the glob or regex.
    pub match_text: String,
    /// `match_type`: `glob` (default) or `regex`.
    pub match_type: Option<String>,
    /// `name`: the field name template (required).
    pub name: String,
    /// `measurement_name` (default [`DEFAULT_MEASUREMENT`]).
    pub measurement_name: Option<String>,
    /// `labels`: tag name to value template.
    pub labels: Vec<(String, String)>,
    /// `action_type`: `map` (default) or `drop`.
    pub action_type: Option<String>,
    /// `match_metric_type`: empty or `gauge` to match; `counter`/`observer` never match.
    pub match_metric_type: Option<String>,
}

/// A problem in one mapping rule: its index, the key inside the rule, and a fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleProblem {
    /// Index of the rule in `mappings`.
    pub index: usize,
    /// Key inside the rule (`match`, `name`, `labels.x`...).
    pub key: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Emit the point under the mapped measurement, name and labels.
    Map,
    /// Drop the line.
    Drop,
}

/// The result of a matching rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapped<'m> {
    /// Measurement name.
    pub measurement: &'m str,
    /// Field name, expanded but not yet sanitised.
    pub name: String,
    /// Labels (tags), expanded.
    pub labels: Vec<(String, String)>,
    /// Map or drop.
    pub action: Action,
}

/// A piece of a glob template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Lit(String),
    Capture(usize),
}

/// A glob template: literal text and `*` captures.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Template(Vec<Piece>);

impl Template {
    /// Compiles `text` for a glob with `captures` stars, with Datakit's reference rules.
    fn compile(text: &str, captures: usize) -> Template {
        let b = text.as_bytes();
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let mut i = 0;
        let mut lit_start = 0;
        while i < b.len() {
            if b[i] != b'$' {
                i += 1;
                continue;
            }
            let mut j = i + 1;
            if b.get(j) == Some(&b'{') {
                j += 1;
            }
            let name_start = j;
            while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_' || b[j] == b'$') {
                j += 1;
            }
            if j == name_start {
                // Not a reference: the `$` stays literal.
                i += 1;
                continue;
            }
            let reference = &text[name_start..j];
            if b.get(j) == Some(&b'}') {
                j += 1;
            }
            lit.push_str(&text[lit_start..i]);
            let index = reference
                .bytes()
                .all(|c| c.is_ascii_digit())
                .then(|| reference.parse::<usize>().ok())
                .flatten()
                .filter(|n| (1..=captures).contains(n));
            if let Some(n) = index {
                if !lit.is_empty() {
                    pieces.push(Piece::Lit(std::mem::take(&mut lit)));
                }
                pieces.push(Piece::Capture(n - 1));
            }
            i = j;
            lit_start = j;
        }
        lit.push_str(&text[lit_start..]);
        if !lit.is_empty() {
            pieces.push(Piece::Lit(lit));
        }
        Template(pieces)
    }

    fn render(&self, captures: &[&str]) -> String {
        let mut out = String::new();
        for p in &self.0 {
            match p {
                Piece::Lit(s) => out.push_str(s),
                Piece::Capture(i) => out.push_str(captures.get(*i).copied().unwrap_or("")),
            }
        }
        out
    }
}

#[derive(Debug)]
struct Target {
    measurement: String,
    action: Action,
}

#[derive(Debug)]
struct GlobRule {
    /// Components; `None` is `*`.
    parts: Vec<Option<String>>,
    name: Template,
    labels: Vec<(String, Template)>,
    target: Target,
}

impl GlobRule {
    /// The captures when `name` (split into `n` components) matches.
    fn captures<'n>(&self, name: &'n str, n: usize, out: &mut Vec<&'n str>) -> bool {
        if self.parts.len() != n {
            return false;
        }
        out.clear();
        for (part, comp) in self.parts.iter().zip(name.split('.')) {
            match part {
                None => out.push(comp),
                Some(lit) if lit == comp => {}
                Some(_) => return false,
            }
        }
        true
    }
}

#[derive(Debug)]
struct RegexRule {
    re: Regex,
    name: String,
    labels: Vec<(String, String)>,
    target: Target,
}

/// The compiled rules of one `metric_mapper`.
#[derive(Debug, Default)]
pub struct Mapper {
    globs: Vec<GlobRule>,
    regexes: Vec<RegexRule>,
}

impl Mapper {
    /// Checks and compiles the rules, reporting every problem of every rule.
    ///
    /// # Errors
    /// Every [`RuleProblem`] found.
    pub fn new(rules: &[RuleConfig]) -> Result<Mapper, Vec<RuleProblem>> {
        let mut mapper = Mapper::default();
        let mut problems = Vec::new();
        for (index, rule) in rules.iter().enumerate() {
            let mut problem = |key: &str, message: String| {
                problems.push(RuleProblem {
                    index,
                    key: key.to_string(),
                    message,
                })
            };
            for (k, _) in &rule.labels {
                if !is_label_name(k) {
                    problem(
                        &format!("labels.{k}"),
                        format!(
                            "label name {k:?} is not valid: use a letter or `_` then at least one letter, digit or `_` (Datakit requires two characters or more)"
                        ),
                    );
                }
            }
            if rule.name.is_empty() {
                problem(
                    "name",
                    "is required: the field name of matching metrics, e.g. name = \"requests_total\" (may use $1)".to_string(),
                );
            } else if !is_name_template(&rule.name) {
                problem(
                    "name",
                    format!(
                        "{:?} is not a valid name: use letters, digits, `_` and $1/${{1}} references, not starting with a digit",
                        rule.name
                    ),
                );
            }
            let regex = match rule.match_type.as_deref().unwrap_or("") {
                "" | "glob" => false,
                "regex" => true,
                other => {
                    problem(
                        "match_type",
                        format!(
                            "{other:?} is not a match type: write \"glob\" (default) or \"regex\""
                        ),
                    );
                    false
                }
            };
            let action = match rule.action_type.as_deref().unwrap_or("") {
                "" | "map" => Action::Map,
                "drop" => Action::Drop,
                other => {
                    problem(
                        "action_type",
                        format!("{other:?} is not an action: write \"map\" (default) or \"drop\""),
                    );
                    Action::Map
                }
            };
            let matches_gauge = match rule.match_metric_type.as_deref().unwrap_or("") {
                "" | "gauge" => true,
                "counter" | "observer" => false,
                other => {
                    problem(
                        "match_metric_type",
                        format!(
                            "{other:?} is not a metric type: leave it out (Graphite metrics are gauges) or write \"gauge\""
                        ),
                    );
                    true
                }
            };
            let target = Target {
                measurement: rule
                    .measurement_name
                    .clone()
                    .filter(|m| !m.is_empty())
                    .unwrap_or_else(|| DEFAULT_MEASUREMENT.to_string()),
                action,
            };
            if regex && rule.match_text.is_empty() {
                problem(
                    "match",
                    "is required: the regex a name must match (it may match part of the name)"
                        .to_string(),
                );
            } else if regex {
                match Regex::new(&rule.match_text) {
                    Ok(re) => {
                        if matches_gauge {
                            mapper.regexes.push(RegexRule {
                                re,
                                name: rule.name.clone(),
                                labels: rule.labels.clone(),
                                target,
                            });
                        }
                    }
                    Err(e) => problem(
                        "match",
                        format!("{:?} is not a valid regex: {e}", rule.match_text),
                    ),
                }
            } else if rule.match_text.is_empty() {
                problem(
                    "match",
                    "is required: the glob (e.g. \"app.*.requests\") or, with match_type = \"regex\", the regex a name must match".to_string(),
                );
            } else if !is_glob(&rule.match_text) {
                problem(
                    "match",
                    format!(
                        "{:?} is not a valid glob: write dot-separated components, each `*` or letters, digits, `_` and `-` (the first not starting with a digit or `-`), e.g. \"app.*.requests\"; for a regex add match_type = \"regex\"",
                        rule.match_text
                    ),
                );
            } else if matches_gauge {
                let parts: Vec<Option<String>> = rule
                    .match_text
                    .split('.')
                    .map(|c| (c != "*").then(|| c.to_string()))
                    .collect();
                let stars = parts.iter().filter(|p| p.is_none()).count();
                mapper.globs.push(GlobRule {
                    name: Template::compile(&rule.name, stars),
                    labels: rule
                        .labels
                        .iter()
                        .map(|(k, v)| (k.clone(), Template::compile(v, stars)))
                        .collect(),
                    parts,
                    target,
                });
            }
        }
        if problems.is_empty() {
            Ok(mapper)
        } else {
            Err(problems)
        }
    }

    /// Whether there are no (matchable) rules.
    pub fn is_empty(&self) -> bool {
        self.globs.is_empty() && self.regexes.is_empty()
    }

    /// Looks `name` (the dotted name without tags) up: the first matching glob rule, else the
    /// first matching regex rule, else `None`.
    pub fn map(&self, name: &str) -> Option<Mapped<'_>> {
        if !self.globs.is_empty() {
            let n = memchr::memchr_iter(b'.', name.as_bytes()).count() + 1;
            let mut caps = Vec::new();
            for rule in &self.globs {
                if rule.captures(name, n, &mut caps) {
                    return Some(Mapped {
                        measurement: &rule.target.measurement,
                        name: rule.name.render(&caps),
                        labels: rule
                            .labels
                            .iter()
                            .map(|(k, t)| (k.clone(), t.render(&caps)))
                            .collect(),
                        action: rule.target.action,
                    });
                }
            }
        }
        for rule in &self.regexes {
            if let Some(caps) = rule.re.captures(name) {
                let expand = |template: &str| {
                    let mut out = String::new();
                    caps.expand(template, &mut out);
                    out
                };
                return Some(Mapped {
                    measurement: &rule.target.measurement,
                    name: expand(&rule.name),
                    labels: rule
                        .labels
                        .iter()
                        .map(|(k, v)| (k.clone(), expand(v)))
                        .collect(),
                    action: rule.target.action,
                });
            }
        }
        None
    }
}

/// `^[a-zA-Z_][a-zA-Z0-9_]+$` (Datakit's label name rule: two characters or more).
fn is_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// `^([a-zA-Z_]|\$\{?\d+\}?)([a-zA-Z0-9_]|\$\{?\d+\}?)*$` (Datakit's metric name rule).
fn is_name_template(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_alphabetic() || c == b'_' || (i > 0 && c.is_ascii_digit()) {
            i += 1;
            continue;
        }
        if c != b'$' {
            return false;
        }
        i += 1;
        if b.get(i) == Some(&b'{') {
            i += 1;
        }
        let digits = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == digits {
            return false;
        }
        if b.get(i) == Some(&b'}') {
            i += 1;
        }
    }
    !b.is_empty()
}

/// `^(\*|[a-zA-Z_][a-zA-Z0-9_\-]*)(\.\*|\.[a-zA-Z0-9_][a-zA-Z0-9_\-]*)*$` (Datakit's glob rule).
fn is_glob(s: &str) -> bool {
    s.split('.').enumerate().all(|(i, comp)| {
        let b = comp.as_bytes();
        if comp == "*" {
            return true;
        }
        let Some((first, rest)) = b.split_first() else {
            return false;
        };
        let first_ok =
            first.is_ascii_alphabetic() || *first == b'_' || (i > 0 && first.is_ascii_digit());
        first_ok
            && rest
                .iter()
                .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'-')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(m: &str, name: &str, labels: &[(&str, &str)]) -> RuleConfig {
        RuleConfig {
            match_text: m.into(),
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..RuleConfig::default()
        }
    }

    fn regex(m: &str, name: &str, labels: &[(&str, &str)]) -> RuleConfig {
        RuleConfig {
            match_type: Some("regex".into()),
            ..glob(m, name, labels)
        }
    }

    fn sorted(mut labels: Vec<(String, String)>) -> Vec<(String, String)> {
        labels.sort();
        labels
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        sorted(
            p.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    /// The three rules of Datakit's sample config and doc (`graphite/cfg.go`, `graphite.md`).
    fn doc_rules() -> Vec<RuleConfig> {
        vec![
            RuleConfig {
                measurement_name: Some("dispatcher_test".into()),
                ..glob(
                    "test.dispatcher.*.*.*",
                    "dispatcher_events_total",
                    &[
                        ("action", "$2"),
                        ("job", "test_dispatcher"),
                        ("outcome", "$3"),
                        ("processor", "$1"),
                    ],
                )
            },
            RuleConfig {
                measurement_name: Some("signup_set".into()),
                ..glob(
                    "*.signup.*.*",
                    "signup_events_total",
                    &[
                        ("job", "${1}_server"),
                        ("outcome", "$3"),
                        ("provider", "$2"),
                    ],
                )
            },
            RuleConfig {
                measurement_name: Some("servers_networking".into()),
                ..regex(
                    r"servers\.(.*)\.networking\.subnetworks\.transmissions\.([a-z0-9-]+)\.(.*)",
                    "servers_networking_transmissions_${3}",
                    &[("hostname", "${1}"), ("device", "${2}")],
                )
            },
        ]
    }

    #[test]
    fn maps_the_doc_glob_example_of_the_dispatcher() {
        let m = Mapper::new(&doc_rules()).unwrap();
        let got = m.map("test.dispatcher.FooProcessor.send.success").unwrap();
        assert_eq!(got.measurement, "dispatcher_test");
        assert_eq!(got.name, "dispatcher_events_total");
        assert_eq!(got.action, Action::Map);
        assert_eq!(
            sorted(got.labels),
            pairs(&[
                ("processor", "FooProcessor"),
                ("action", "send"),
                ("outcome", "success"),
                ("job", "test_dispatcher")
            ])
        );
    }

    #[test]
    fn maps_the_doc_glob_example_of_the_signup_with_a_braced_reference() {
        let m = Mapper::new(&doc_rules()).unwrap();
        let got = m.map("foo_product.signup.facebook.failure").unwrap();
        assert_eq!(
            (got.measurement, got.name.as_str()),
            ("signup_set", "signup_events_total")
        );
        assert_eq!(
            sorted(got.labels),
            pairs(&[
                ("provider", "facebook"),
                ("outcome", "failure"),
                ("job", "foo_product_server")
            ])
        );
    }

    #[test]
    fn maps_the_doc_regex_example_with_a_greedy_last_group() {
        let m = Mapper::new(&doc_rules()).unwrap();
        let got = m
            .map("servers.rack-003-server-c4de.networking.subnetworks.transmissions.eth0.failure.mean_rate")
            .unwrap();
        assert_eq!(got.measurement, "servers_networking");
        // `.` is replaced later, when the name becomes a field name.
        assert_eq!(
            got.name,
            "servers_networking_transmissions_failure.mean_rate"
        );
        assert_eq!(
            sorted(got.labels),
            pairs(&[("device", "eth0"), ("hostname", "rack-003-server-c4de")])
        );
    }

    #[test]
    fn leaves_names_no_rule_matches_unmapped() {
        let m = Mapper::new(&doc_rules()).unwrap();
        assert_eq!(m.map("test.web-server.foo.bar"), None);
        // Component counts must agree: one more or one fewer does not match.
        assert_eq!(m.map("test.dispatcher.a.b"), None);
        assert_eq!(m.map("test.dispatcher.a.b.c.d"), None);
    }

    #[test]
    fn expands_the_doc_dynamic_name_example() {
        let m = Mapper::new(&[RuleConfig {
            measurement_name: Some("test_counter".into()),
            ..glob("test.*.*.counter", "${2}_total", &[("provider", "$1")])
        }])
        .unwrap();
        let got = m.map("test.a.b.counter").unwrap();
        assert_eq!(
            (got.measurement, got.name.as_str()),
            ("test_counter", "b_total")
        );
        assert_eq!(got.labels, pairs(&[("provider", "a")]));
    }

    #[test]
    fn the_first_matching_glob_wins_and_globs_beat_earlier_regexes() {
        let m = Mapper::new(&[
            regex("^app", "by_regex", &[]),
            glob("app.*.count", "specific", &[]),
            glob("app.*.*", "general", &[]),
            glob("app.web.count", "literal_but_later", &[]),
        ])
        .unwrap();
        assert_eq!(m.map("app.web.count").unwrap().name, "specific");
        assert_eq!(m.map("app.web.sum").unwrap().name, "general");
        assert_eq!(m.map("app.web").unwrap().name, "by_regex");
        assert_eq!(m.map("other"), None);
    }

    #[test]
    fn a_star_matches_one_component_even_an_empty_one() {
        let m = Mapper::new(&[glob("a.*.c", "x_$1", &[("mid", "$1")])]).unwrap();
        let got = m.map("a..c").unwrap();
        assert_eq!(got.labels, pairs(&[("mid", "")]));
        assert_eq!(m.map("a.b.b.c"), None);
    }

    #[test]
    fn glob_references_follow_datakit_rules() {
        // `$1_x` reads as reference "1_x", which is not a number: it becomes empty.
        // Out-of-range and zero references become empty; `$` without a name stays.
        let m = Mapper::new(&[glob(
            "*.*",
            "n",
            &[
                ("greedy", "$1_x"),
                ("braced", "${1}_x"),
                ("out_of_range", "a${3}b"),
                ("greedy_letters", "a$2b"),
                ("zero", "$0"),
                ("dollar", "cost$"),
                ("brace_close", "$2}!"),
                ("twice", "${2}-${1}-${2}"),
            ],
        )])
        .unwrap();
        let got = m.map("p.q").unwrap();
        assert_eq!(
            sorted(got.labels),
            pairs(&[
                ("greedy", ""),
                ("braced", "p_x"),
                ("out_of_range", "ab"),
                ("greedy_letters", "a"),
                ("zero", ""),
                ("dollar", "cost$"),
                ("brace_close", "q!"),
                ("twice", "q-p-q"),
            ])
        );
    }

    #[test]
    fn regex_references_follow_go_expand_rules() {
        let m = Mapper::new(&[regex(
            r"^(?P<app>[a-z]+)\.(\d+)\.(.*)$",
            "m_${2}",
            &[
                ("named", "$app"),
                ("whole", "$0"),
                ("longest_name", "$2x"),
                ("literal_dollar", "$$1"),
                ("missing", "${9}"),
            ],
        )])
        .unwrap();
        let got = m.map("web.42.rest").unwrap();
        assert_eq!(got.name, "m_42");
        assert_eq!(
            sorted(got.labels),
            pairs(&[
                ("named", "web"),
                ("whole", "web.42.rest"),
                ("longest_name", ""),
                ("literal_dollar", "$1"),
                ("missing", ""),
            ])
        );
    }

    #[test]
    fn a_regex_is_unanchored() {
        let m = Mapper::new(&[regex(r"cpu\.(\w+)", "cpu_$1", &[])]).unwrap();
        assert_eq!(m.map("host1.cpu.idle.avg").unwrap().name, "cpu_idle");
    }

    #[test]
    fn drop_rules_match_and_say_drop() {
        let m = Mapper::new(&[RuleConfig {
            action_type: Some("drop".into()),
            ..glob("noisy.*", "unused", &[])
        }])
        .unwrap();
        assert_eq!(m.map("noisy.thing").unwrap().action, Action::Drop);
    }

    #[test]
    fn rules_for_other_metric_types_never_match() {
        let m = Mapper::new(&[
            RuleConfig {
                match_metric_type: Some("counter".into()),
                ..glob("a.*", "counter_rule", &[])
            },
            RuleConfig {
                match_metric_type: Some("gauge".into()),
                ..glob("a.*", "gauge_rule", &[])
            },
        ])
        .unwrap();
        assert_eq!(m.map("a.b").unwrap().name, "gauge_rule");
    }

    #[test]
    fn a_rule_without_measurement_name_uses_graphite() {
        let m = Mapper::new(&[glob("a.*", "x", &[])]).unwrap();
        assert_eq!(m.map("a.b").unwrap().measurement, "graphite");
    }

    #[test]
    fn reports_every_problem_of_every_rule() {
        let problems = Mapper::new(&[
            RuleConfig {
                match_type: Some("fuzzy".into()),
                action_type: Some("keep".into()),
                match_metric_type: Some("timer".into()),
                ..glob(
                    "a.*",
                    "",
                    &[("x", "1"), ("ok_label", "2"), ("bad-label", "3")],
                )
            },
            glob("a.b*", "1starts_with_digit", &[]),
            glob("", "n", &[]),
            regex("(unclosed", "n", &[]),
            glob("a..b", "n$", &[]),
        ])
        .unwrap_err();
        let keys: Vec<(usize, &str)> = problems.iter().map(|p| (p.index, p.key.as_str())).collect();
        assert_eq!(
            keys,
            vec![
                (0, "labels.x"),
                (0, "labels.bad-label"),
                (0, "name"),
                (0, "match_type"),
                (0, "action_type"),
                (0, "match_metric_type"),
                (1, "name"),
                (1, "match"),
                (2, "match"),
                (3, "match"),
                (4, "name"),
                (4, "match"),
            ]
        );
    }

    #[test]
    fn checks_names_and_globs_as_datakit_does() {
        for ok in ["a", "_x9", "${1}_total", "x$1", "$1}", "${12"] {
            assert!(is_name_template(ok), "{ok}");
        }
        for bad in ["", "9a", "a-b", "a.b", "$x", "${}", "a$"] {
            assert!(!is_name_template(bad), "{bad}");
        }
        for ok in ["*", "a", "a.*.c", "*.9x.y-z", "_a.b_"] {
            assert!(is_glob(ok), "{ok}");
        }
        for bad in ["", "9a", "-a", "a.", ".a", "a..b", "a.b*", "a.-b", "a b"] {
            assert!(!is_glob(bad), "{bad}");
        }
    }
}
