//! A small JSON path dialect for choosing parts of a body: `$.user`, `$.metadata.trace`,
//! `$.messages[*].tool_call_id`, `$.items[0]`, `$["odd key"]`, `$.*`. Enough to ignore or
//! redact fields; not a query language.

use std::fmt;

use serde_json::Value;

/// One step of a path.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
    Any,
}

/// A parsed JSON path, rooted at a body (`$` is the body itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonPath {
    text: String,
    steps: Vec<Step>,
}

/// A path that does not parse, with the reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid JSON path `{path}`: {reason} (write paths like `$.user` or `$.messages[*].tool_call_id`)")]
pub struct JsonPathError {
    /// The rejected path.
    pub path: String,
    /// What is wrong with it.
    pub reason: String,
}

impl JsonPath {
    /// Parses `$`-rooted paths with `.key`, `["key"]`, `[N]`, `[*]` and `.*` steps.
    pub fn parse(text: &str) -> Result<JsonPath, JsonPathError> {
        let error = |reason: &str| JsonPathError { path: text.to_owned(), reason: reason.to_owned() };
        let rest = text.trim().strip_prefix('$').ok_or_else(|| error("a path starts with `$`"))?;
        let chars: Vec<char> = rest.chars().collect();
        let mut steps = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '.' => {
                    let start = i + 1;
                    let mut end = start;
                    while end < chars.len() && chars[end] != '.' && chars[end] != '[' {
                        end += 1;
                    }
                    let name: String = chars[start..end].iter().collect();
                    if name.is_empty() {
                        return Err(error("empty name after `.`"));
                    }
                    steps.push(if name == "*" { Step::Any } else { Step::Key(name) });
                    i = end;
                }
                '[' => {
                    let close = chars[i..].iter().position(|&c| c == ']').ok_or_else(|| error("`[` without `]`"))? + i;
                    let inner: String = chars[i + 1..close].iter().collect();
                    let inner = inner.trim();
                    if inner == "*" {
                        steps.push(Step::Any);
                    } else if let Ok(index) = inner.parse::<usize>() {
                        steps.push(Step::Index(index));
                    } else if let Some(quoted) = strip_quotes(inner) {
                        steps.push(Step::Key(quoted.to_owned()));
                    } else {
                        return Err(error("inside `[]` write a number, `*` or a quoted key"));
                    }
                    i = close + 1;
                }
                _ => return Err(error("expected `.` or `[` to start each step")),
            }
        }
        Ok(JsonPath { text: text.trim().to_owned(), steps })
    }

    /// Removes every node the path selects. Returns how many were removed.
    pub fn remove(&self, value: &mut Value) -> usize {
        match self.steps.split_last() {
            None => 0, // `$` itself is never removed: ignore the body with a different rule
            Some((last, parents)) => {
                let mut removed = 0;
                for_each_match(value, parents, &mut |parent| removed += remove_child(parent, last));
                removed
            }
        }
    }

    /// Calls `f` on every node the path selects.
    pub fn for_each_mut(&self, value: &mut Value, f: &mut dyn FnMut(&mut Value)) {
        for_each_match(value, &self.steps, f);
    }
}

fn strip_quotes(text: &str) -> Option<&str> {
    ['"', '\''].iter().find_map(|q| text.strip_prefix(*q).and_then(|t| t.strip_suffix(*q)))
}

fn for_each_match(value: &mut Value, steps: &[Step], f: &mut dyn FnMut(&mut Value)) {
    let Some((step, rest)) = steps.split_first() else {
        f(value);
        return;
    };
    match (step, value) {
        (Step::Key(key), Value::Object(map)) => {
            if let Some(child) = map.get_mut(key) {
                for_each_match(child, rest, f);
            }
        }
        (Step::Index(index), Value::Array(items)) => {
            if let Some(child) = items.get_mut(*index) {
                for_each_match(child, rest, f);
            }
        }
        (Step::Any, Value::Object(map)) => map.values_mut().for_each(|child| for_each_match(child, rest, f)),
        (Step::Any, Value::Array(items)) => items.iter_mut().for_each(|child| for_each_match(child, rest, f)),
        _ => {}
    }
}

fn remove_child(parent: &mut Value, step: &Step) -> usize {
    match (step, parent) {
        (Step::Key(key), Value::Object(map)) => usize::from(map.remove(key).is_some()),
        (Step::Any, Value::Object(map)) => {
            let n = map.len();
            map.clear();
            n
        }
        // Array elements become null rather than shifting their neighbours' positions.
        (Step::Index(index), Value::Array(items)) => items.get_mut(*index).map_or(0, |item| {
            *item = Value::Null;
            1
        }),
        (Step::Any, Value::Array(items)) => {
            items.iter_mut().for_each(|item| *item = Value::Null);
            items.len()
        }
        _ => 0,
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn path(text: &str) -> JsonPath {
        JsonPath::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn removes_keys_wildcards_and_indices() {
        let mut body = json!({"user": "u1", "messages": [{"tool_call_id": "a", "content": "x"}, {"tool_call_id": "b"}], "m": {"k": 1}});
        assert_eq!(path("$.messages[*].tool_call_id").remove(&mut body), 2);
        assert_eq!(path("$.user").remove(&mut body), 1);
        assert_eq!(path("$[\"m\"].*").remove(&mut body), 1);
        assert_eq!(body, json!({"messages": [{"content": "x"}, {}], "m": {}}));
        assert_eq!(path("$.absent.deeper").remove(&mut body), 0);
    }

    #[test]
    fn rejects_malformed_paths_with_a_reason() {
        for bad in ["user", "$..x", "$[x]", "$.a[", "$a"] {
            assert!(JsonPath::parse(bad).is_err(), "{bad}");
        }
        assert!(JsonPath::parse("$.a['b c'][0].*").is_ok());
    }
}
