//! Keeping secrets off disk: scrubbing known secret headers, query parameters and JSON fields
//! before matching and storage, and a last scan of the whole cassette for token-shaped strings
//! before anything is written.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::OnceLock;

use regex::{Regex, RegexSet};
use serde_json::Value;

/// What replaces a scrubbed JSON value.
pub const REDACTED: &str = "<REDACTED>";

/// Headers that carry credentials or account identity; never stored, never matched on.
pub const SECRET_HEADERS: [&str; 9] = [
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "api-key",
    "x-goog-api-key",
    "cookie",
    "set-cookie",
    "openai-organization",
    "openai-project",
];

/// Query parameters that carry credentials (Gemini's `key`, OAuth tokens).
pub const SECRET_QUERY_PARAMS: [&str; 3] = ["key", "api_key", "access_token"];

/// JSON field names whose values are replaced by [`REDACTED`], at any depth. Exact names only:
/// `max_tokens` and `total_tokens` are not secrets.
pub const SECRET_JSON_FIELDS: [&str; 6] =
    ["api_key", "apiKey", "access_token", "refresh_token", "client_secret", "password"];

/// The scrubbing rules in force for a recorder.
#[derive(Clone, Debug)]
pub struct Scrubber {
    headers: Vec<String>,
    query_params: Vec<String>,
    json_fields: Vec<String>,
}

impl Default for Scrubber {
    fn default() -> Scrubber {
        Scrubber {
            headers: SECRET_HEADERS.iter().map(|s| s.to_string()).collect(),
            query_params: SECRET_QUERY_PARAMS.iter().map(|s| s.to_string()).collect(),
            json_fields: SECRET_JSON_FIELDS.iter().map(|s| s.to_string()).collect(),
        }
    }
}

impl Scrubber {
    /// Also treat this header as secret.
    pub fn add_header(&mut self, name: &str) {
        self.headers.push(name.to_ascii_lowercase());
    }

    /// Whether a header must never be stored or matched on.
    pub fn is_secret_header(&self, name: &str) -> bool {
        self.headers.iter().any(|h| h.eq_ignore_ascii_case(name))
    }

    /// Whether a query parameter must never be stored or matched on.
    pub fn is_secret_query_param(&self, name: &str) -> bool {
        self.query_params.iter().any(|p| p.eq_ignore_ascii_case(name))
    }

    /// Replaces the values of secret fields, at any depth, with [`REDACTED`].
    pub fn scrub_json(&self, value: &mut Value) {
        match value {
            Value::Object(map) => {
                for (key, item) in map.iter_mut() {
                    if self.json_fields.iter().any(|f| f == key) {
                        *item = Value::String(REDACTED.to_owned());
                    } else {
                        self.scrub_json(item);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|item| self.scrub_json(item)),
            _ => {}
        }
    }
}

/// A token-shaped string found by the pre-write scan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretFinding {
    /// Where it is, as a JSON path into the cassette, e.g. `$.interactions[0].responses[0].body.json.key`.
    pub json_path: String,
    /// Which shape matched, e.g. `OpenAI API key`.
    pub kind: &'static str,
    /// A masked excerpt: the first few characters and the length, never the secret itself.
    pub masked: String,
}

const PATTERNS: [(&str, &str); 8] = [
    ("Anthropic API key", r"\bsk-ant-[A-Za-z0-9_\-]{20,}"),
    ("OpenAI API key", r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}"),
    ("Google API key", r"\bAIza[0-9A-Za-z_\-]{35}"),
    ("GitHub token", r"\bgh[pousr]_[A-Za-z0-9]{36,}"),
    ("AWS access key id", r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    ("bearer token", r"(?i)\bbearer\s+[A-Za-z0-9._~+/\-]{16,}=*"),
    ("JSON Web Token", r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"),
    ("PEM private key", r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
];

struct Scanner {
    any: RegexSet,
    each: Vec<(&'static str, Regex)>,
}

fn scanner() -> Option<&'static Scanner> {
    static SCANNER: OnceLock<Option<Scanner>> = OnceLock::new();
    SCANNER
        .get_or_init(|| {
            let any = RegexSet::new(PATTERNS.iter().map(|(_, p)| *p)).ok()?;
            let each = PATTERNS
                .iter()
                .map(|(kind, p)| Regex::new(p).map(|re| (*kind, re)))
                .collect::<Result<Vec<_>, _>>()
                .ok()?;
            Some(Scanner { any, each })
        })
        .as_ref()
}

/// Scans every string (and object key) in `value` for token shapes. `allowed` lists JSON paths
/// (exact, or a prefix ending in `*`) whose findings are accepted.
pub fn scan(value: &Value, allowed: &[String]) -> Vec<SecretFinding> {
    let mut findings = Vec::new();
    // The patterns are constants covered by tests; if they ever failed to compile, refusing
    // every write would be the safe failure, so report that as a finding.
    let Some(scanner) = scanner() else {
        findings.push(SecretFinding { json_path: "$".into(), kind: "scanner unavailable", masked: String::new() });
        return findings;
    };
    let mut path = String::from("$");
    walk(value, &mut path, scanner, allowed, &mut findings);
    findings
}

fn walk(value: &Value, path: &mut String, scanner: &Scanner, allowed: &[String], findings: &mut Vec<SecretFinding>) {
    match value {
        Value::String(text) => check(text, path, scanner, allowed, findings),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                let _ = write!(path, "[{i}]");
                walk(item, path, scanner, allowed, findings);
                path.truncate(len);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                let len = path.len();
                push_key(path, key);
                check(key, path, scanner, allowed, findings);
                walk(item, path, scanner, allowed, findings);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// Appends `.key`, or `["key"]` when the key is not a plain identifier.
pub(crate) fn push_key(path: &mut String, key: &str) {
    if !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        path.push('.');
        path.push_str(key);
    } else {
        let _ = write!(path, "[{}]", Value::String(key.to_owned()));
    }
}

fn check(text: &str, path: &str, scanner: &Scanner, allowed: &[String], findings: &mut Vec<SecretFinding>) {
    if !scanner.any.is_match(text) || is_allowed(path, allowed) {
        return;
    }
    for index in scanner.any.matches(text).iter() {
        let (kind, re) = &scanner.each[index];
        if let Some(found) = re.find(text) {
            findings.push(SecretFinding { json_path: path.to_owned(), kind, masked: mask(found.as_str()) });
            break;
        }
    }
}

fn is_allowed(path: &str, allowed: &[String]) -> bool {
    allowed.iter().any(|a| match a.strip_suffix('*') {
        Some(prefix) => path.starts_with(prefix),
        None => a == path,
    })
}

/// `sk-p…(51 chars)`: enough to recognise, never enough to use.
pub fn mask(secret: &str) -> String {
    let shown: String = secret.chars().take(4).collect();
    format!("{shown}…({} chars)", secret.chars().count())
}

/// The message of [`crate::Error::SecretDetected`].
pub(crate) fn describe_findings(path: &Path, findings: &[SecretFinding]) -> String {
    let mut message = format!(
        "refusing to write cassette {}: it contains {} secret-shaped value(s):\n",
        path.display(),
        findings.len()
    );
    for finding in findings.iter().take(20) {
        let _ = writeln!(message, "  {} at {} ({})", finding.kind, finding.json_path, finding.masked);
    }
    message.push_str(
        "Scrub them with a redaction rule, or, if a value is not a secret, allow its path with `allow_secret_path(\"$.…\")`. Nothing was written.",
    );
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scrubs_exact_field_names_only() {
        let mut body =
            json!({"api_key": "k", "nested": [{"password": "p"}], "max_tokens": 5, "usage": {"total_tokens": 9}});
        Scrubber::default().scrub_json(&mut body);
        assert_eq!(body["api_key"], REDACTED);
        assert_eq!(body["nested"][0]["password"], REDACTED);
        assert_eq!(body["max_tokens"], 5);
        assert_eq!(body["usage"]["total_tokens"], 9);
    }

    #[test]
    fn finds_every_token_shape_and_masks_it() {
        let samples = [
            "sk-proj-abcdefghijklmnopqrstuvwxyz012345",
            "sk-ant-api03-abcdefghijklmnopqrstuvwxyz",
            "AIzaSyA1234567890abcdefghijklmnopqrstuv",
            "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
            "AKIAABCDEFGHIJKLMNOP",
            "Bearer abcdefghijklmnopqrstuvwxyz",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NSJ9.c2lnbmF0dXJlc2ln",
            "-----BEGIN RSA PRIVATE KEY-----",
        ];
        for sample in samples {
            let findings = scan(&json!({"a": [{"b": format!("x {sample} y")}]}), &[]);
            assert_eq!(findings.len(), 1, "{sample}");
            assert_eq!(findings[0].json_path, "$.a[0].b");
            assert!(!findings[0].masked.contains(&sample[5..]), "{}", findings[0].masked);
        }
    }

    #[test]
    fn ordinary_text_and_allowed_paths_pass() {
        let value = json!({"content": "ask-me about tokens: max_tokens=5, task-list", "ok": "sk-proj-abcdefghijklmnopqrstuvwxyz012345"});
        assert!(scan(&value, &["$.ok".to_owned()]).is_empty());
        assert!(scan(&json!({"desk-lamp": "risk-averse"}), &[]).is_empty());
    }
}
