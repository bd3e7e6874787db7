//! Keeping secrets off disk: scrubbing known secret headers, query parameters and JSON fields
//! before matching and storage, and a last scan of the whole cassette for token-shaped strings
//! before anything is written.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::OnceLock;

use std::sync::Arc;

use regex::{Regex, RegexSet};
use serde_json::Value;

use crate::cassette::{Body, Interaction, RecordedRequest, RecordedResponse};
use crate::jsonpath::JsonPath;

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

/// A hook that sees (and may rewrite) each interaction before it is stored. It also runs on
/// each incoming request, with no responses, so matching sees the same form.
pub type InteractionHook = Arc<dyn Fn(&mut Interaction) + Send + Sync>;

/// A text rewrite: every match of `regex` becomes `placeholder`.
#[derive(Clone, Debug)]
struct Rule {
    regex: Regex,
    placeholder: String,
    /// Only replace digit runs that pass the Luhn check (card numbers).
    luhn: bool,
}

/// The scrubbing rules in force for a recorder: the built-in secret lists plus whatever the
/// user adds. They apply before matching and before writing.
#[derive(Clone)]
pub struct Scrubber {
    headers: Vec<String>,
    query_params: Vec<String>,
    json_fields: Vec<String>,
    json_paths: Vec<JsonPath>,
    rules: Vec<Rule>,
    /// (secret value read from the environment, placeholder); restored at replay.
    placeholders: Vec<(String, String)>,
    hook: Option<InteractionHook>,
}

impl std::fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scrubber")
            .field("headers", &self.headers)
            .field("query_params", &self.query_params)
            .field("json_fields", &self.json_fields)
            .field("json_paths", &self.json_paths)
            .field("rules", &self.rules.iter().map(|r| r.placeholder.as_str()).collect::<Vec<_>>())
            .field("placeholders", &self.placeholders.iter().map(|(_, p)| p.as_str()).collect::<Vec<_>>())
            .field("hook", &self.hook.is_some())
            .finish()
    }
}

impl Default for Scrubber {
    fn default() -> Scrubber {
        Scrubber {
            headers: SECRET_HEADERS.iter().map(|s| s.to_string()).collect(),
            query_params: SECRET_QUERY_PARAMS.iter().map(|s| s.to_string()).collect(),
            json_fields: SECRET_JSON_FIELDS.iter().map(|s| s.to_string()).collect(),
            json_paths: Vec::new(),
            rules: Vec::new(),
            placeholders: Vec::new(),
            hook: None,
        }
    }
}

/// The placeholders of [`Scrubber::redact_pii`].
pub const PII_PLACEHOLDERS: [&str; 3] = ["<EMAIL>", "<PHONE>", "<CARD_NUMBER>"];

impl Scrubber {
    /// Also treat this header as secret.
    pub fn add_header(&mut self, name: &str) {
        self.headers.push(name.to_ascii_lowercase());
    }

    /// Replaces the value at this JSON path of every request and response body with [`REDACTED`].
    pub fn add_json_path(&mut self, path: JsonPath) {
        self.json_paths.push(path);
    }

    /// Replaces every match of `regex` in bodies (and query values) with `placeholder`.
    pub fn add_pattern(&mut self, regex: &str, placeholder: &str) -> Result<(), regex::Error> {
        self.rules.push(Rule { regex: Regex::new(regex)?, placeholder: placeholder.to_owned(), luhn: false });
        Ok(())
    }

    /// Replaces the value of environment variable `env` wherever it appears with `placeholder`
    /// when recording, and the placeholder with the variable's value (if set) when replaying.
    pub fn add_env_placeholder(&mut self, env: &str, placeholder: &str) {
        if let Ok(value) = std::env::var(env) {
            if !value.is_empty() {
                self.placeholders.push((value, placeholder.to_owned()));
                return;
            }
        }
        // Unset: nothing to scrub, but replay still knows the placeholder exists.
        self.placeholders.push((String::new(), placeholder.to_owned()));
    }

    /// Opt-in PII redaction: e-mail addresses, phone numbers and card numbers (Luhn-checked).
    pub fn redact_pii(&mut self) {
        let rules = [
            (r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}", PII_PLACEHOLDERS[0], false),
            (r"(?:\+\d{1,3}[\s.\-]?)?(?:\(\d{3}\)|\b\d{3})[\s.\-]\d{3}[\s.\-]\d{4}\b", PII_PLACEHOLDERS[1], false),
            (r"\b\d(?:[ \-]?\d){12,18}\b", PII_PLACEHOLDERS[2], true),
        ];
        for (regex, placeholder, luhn) in rules {
            if let Ok(regex) = Regex::new(regex) {
                self.rules.push(Rule { regex, placeholder: placeholder.to_owned(), luhn });
            }
        }
    }

    /// Runs `hook` on every interaction before it is stored (and on incoming requests).
    pub fn set_hook(&mut self, hook: InteractionHook) {
        self.hook = Some(hook);
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
            Value::String(text) => {
                if let Some(rewritten) = self.rewrite(text) {
                    *text = rewritten;
                }
            }
            _ => {}
        }
    }

    fn scrub_json_body(&self, value: &mut Value) {
        for path in &self.json_paths {
            path.for_each_mut(value, &mut |node| *node = Value::String(REDACTED.to_owned()));
        }
        self.scrub_json(value);
    }

    /// Applies the text rules and environment placeholders; `None` when nothing changed.
    fn rewrite(&self, text: &str) -> Option<String> {
        if self.rules.is_empty() && self.placeholders.iter().all(|(value, _)| value.is_empty()) {
            return None;
        }
        let mut out = text.to_owned();
        for (value, placeholder) in &self.placeholders {
            if !value.is_empty() && out.contains(value.as_str()) {
                out = out.replace(value.as_str(), placeholder);
            }
        }
        for rule in &self.rules {
            if !rule.regex.is_match(&out) {
                continue;
            }
            out = rule
                .regex
                .replace_all(&out, |caps: &regex::Captures<'_>| {
                    let found = &caps[0];
                    if rule.luhn && !luhn_valid(found) {
                        found.to_owned()
                    } else {
                        rule.placeholder.clone()
                    }
                })
                .into_owned();
        }
        (out != text).then_some(out)
    }

    /// Scrubs a body in place: secret fields, user JSON paths, text rules, placeholders.
    pub fn scrub_body(&self, body: &mut Body) {
        match body {
            Body::Json { json } => self.scrub_json_body(json),
            Body::Text { text } => {
                if let Some(rewritten) = self.rewrite(text) {
                    *text = rewritten;
                }
            }
            Body::Sse { events, .. } => {
                for event in events {
                    if let Some(data) = &mut event.data {
                        self.scrub_json_body(data);
                    }
                    if let Some(text) = &mut event.text {
                        if let Some(rewritten) = self.rewrite(text) {
                            *text = rewritten;
                        }
                    }
                }
            }
            Body::Ndjson { lines, .. } => lines.iter_mut().for_each(|line| self.scrub_json_body(line)),
            Body::Multipart { parts } => {
                for part in parts {
                    let secret_field = part.name.as_deref().is_some_and(|n| self.json_fields.iter().any(|f| f == n));
                    if let Some(text) = &mut part.text {
                        if secret_field {
                            *text = REDACTED.to_owned();
                        } else if let Some(rewritten) = self.rewrite(text) {
                            *text = rewritten;
                        }
                    }
                }
            }
            Body::Empty | Body::Binary { .. } | Body::Digest { .. } => {}
        }
    }

    /// Scrubs a canonical request: body and query values, then the user's hook (with no
    /// responses), so the stored form and the matched form agree.
    pub fn scrub_request(&self, request: &mut RecordedRequest) {
        self.scrub_body(&mut request.body);
        for values in request.query.values_mut() {
            for value in values.iter_mut() {
                if let Some(rewritten) = self.rewrite(value) {
                    *value = rewritten;
                }
            }
        }
        if let Some(hook) = &self.hook {
            let mut interaction = Interaction { key: String::new(), request: request.clone(), responses: Vec::new() };
            hook(&mut interaction);
            *request = interaction.request;
        }
    }

    /// Scrubs a response before it is stored.
    pub fn scrub_response(&self, response: &mut RecordedResponse) {
        response.headers.retain(|name, _| !self.is_secret_header(name));
        self.scrub_body(&mut response.body);
    }

    /// Runs the user's hook on a complete interaction about to be stored.
    pub fn apply_hook(&self, interaction: &mut Interaction) {
        if let Some(hook) = &self.hook {
            hook(interaction);
        }
    }

    /// Puts secrets back where placeholders stand, for a response about to be replayed.
    /// Returns `None` when there is nothing to restore.
    pub fn restore(&self, body: &Body) -> Option<Body> {
        let live: Vec<(&str, &str)> = self
            .placeholders
            .iter()
            .filter(|(value, _)| !value.is_empty())
            .map(|(v, p)| (p.as_str(), v.as_str()))
            .collect();
        if live.is_empty() {
            return None;
        }
        let mut body = body.clone();
        for_each_string(&mut body, &mut |text| {
            for (placeholder, value) in &live {
                if text.contains(placeholder) {
                    *text = text.replace(placeholder, value);
                }
            }
        });
        Some(body)
    }
}

/// Calls `f` on every string a body holds (JSON strings at any depth, text, event payloads).
fn for_each_string(body: &mut Body, f: &mut dyn FnMut(&mut String)) {
    fn walk(value: &mut Value, f: &mut dyn FnMut(&mut String)) {
        match value {
            Value::String(text) => f(text),
            Value::Array(items) => items.iter_mut().for_each(|item| walk(item, f)),
            Value::Object(map) => map.values_mut().for_each(|item| walk(item, f)),
            _ => {}
        }
    }
    match body {
        Body::Json { json } => walk(json, f),
        Body::Text { text } => f(text),
        Body::Sse { events, .. } => {
            for event in events {
                if let Some(data) = &mut event.data {
                    walk(data, f);
                }
                if let Some(text) = &mut event.text {
                    f(text);
                }
            }
        }
        Body::Ndjson { lines, .. } => lines.iter_mut().for_each(|line| walk(line, f)),
        Body::Multipart { parts } => parts.iter_mut().filter_map(|part| part.text.as_mut()).for_each(f),
        Body::Empty | Body::Binary { .. } | Body::Digest { .. } => {}
    }
}

fn luhn_valid(candidate: &str) -> bool {
    let digits: Vec<u32> = candidate.chars().filter_map(|c| c.to_digit(10)).collect();
    if digits.len() < 13 {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                if d * 2 > 9 {
                    d * 2 - 9
                } else {
                    d * 2
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
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

pub(crate) struct Scanner {
    any: RegexSet,
    each: Vec<(&'static str, Regex)>,
}

pub(crate) fn scanner() -> Option<&'static Scanner> {
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

pub(crate) fn check(text: &str, path: &str, scanner: &Scanner, allowed: &[String], findings: &mut Vec<SecretFinding>) {
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
pub(crate) fn describe_findings(path: &Path, what: &str, findings: &[SecretFinding]) -> String {
    let mut message = format!(
        "refusing to write {what} {}: it contains {} secret-shaped value(s):\n",
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
