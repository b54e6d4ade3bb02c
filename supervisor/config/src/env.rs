//! Environment lookup and `${VAR}` / `$VAR` substitution in `conf.d` files.

use std::collections::HashMap;

/// Where environment variables come from: the process in production, a map in tests.
pub trait Env {
    /// The value of `key`, if set.
    fn var(&self, key: &str) -> Option<String>;

    /// Every variable (for finding groups by prefix); empty where it cannot list them.
    fn vars(&self) -> Vec<(String, String)> {
        Vec::new()
    }
}

/// The process environment.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, key: &str) -> Option<String> {
        std::env::var_os(key).map(|v| v.to_string_lossy().into_owned())
    }

    fn vars(&self) -> Vec<(String, String)> {
        std::env::vars_os()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.to_string_lossy().into_owned(),
                )
            })
            .collect()
    }
}

/// A fixed set of variables.
#[derive(Clone, Debug, Default)]
pub struct MapEnv(pub HashMap<String, String>);

impl Env for MapEnv {
    fn var(&self, key: &str) -> Option<String> {
        self.0.get(key).cloned()
    }

    fn vars(&self) -> Vec<(String, String)> {
        self.0.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Replaces every `${VAR}` and `$VAR` whose variable is set with its value, escaping `"` and `\`
/// (so the value stays inside a TOML basic string); references to unset variables stay as they
/// are. Variable names are ASCII word characters, as in Datakit (Go's `\w`).
pub fn substitute(text: &str, env: &dyn Env) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0; // bytes of `text` already in `out`
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'$' {
            i += 1;
            continue;
        }
        // `${NAME}` or `$NAME`: (name start, name end, reference end)
        let reference = if bytes.get(i + 1) == Some(&b'{') {
            let start = i + 2;
            let end = start + bytes[start..].iter().take_while(|b| is_word(**b)).count();
            (end > start && bytes.get(end) == Some(&b'}')).then_some((start, end, end + 1))
        } else {
            let start = i + 1;
            let end = start + bytes[start..].iter().take_while(|b| is_word(**b)).count();
            (end > start).then_some((start, end, end))
        };
        let Some((start, end, after)) = reference else {
            i += 1;
            continue;
        };
        if let Some(value) = env.var(&text[start..end]) {
            out.push_str(&text[copied..i]);
            out.push_str(&value.replace('\\', "\\\\").replace('"', "\\\""));
            copied = after;
        }
        i = after;
    }
    out.push_str(&text[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> MapEnv {
        MapEnv(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn substitutes_set_variables_and_keeps_unset_ones() {
        let e = env(&[("HOST", "db1"), ("PORT", "5432")]);
        let out = substitute(r#"a = "${HOST}:$PORT" b = "$NOPE ${NOPE2}""#, &e);
        assert_eq!(out, r#"a = "db1:5432" b = "$NOPE ${NOPE2}""#);
    }

    #[test]
    fn escapes_quotes_and_backslashes_in_values() {
        let e = env(&[("PW", r#"a"b\c"#)]);
        assert_eq!(substitute(r#"p = "$PW""#, &e), r#"p = "a\"b\\c""#);
    }
}
