//! How a request is matched to a recording: the request key (canonical JSON of the request as
//! matched, after ignored paths and opt-in normalisers), and the two strategies, `content` and
//! `sequence`.

use std::str::FromStr;
use std::sync::OnceLock;

use regex::Regex;
use serde_json::Value;

use crate::cassette::canonical::request_key;
use crate::cassette::{Body, RecordedRequest};
use crate::jsonpath::JsonPath;

/// How a request finds its recording.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Strategy {
    /// By request key: the canonical request's hash. Identical requests replay in call order.
    #[default]
    Content,
    /// By position: the nth request gets the nth recorded interaction, after a check that the
    /// two are close enough (same endpoint, same `model`, at most `sequence_tolerance` differing
    /// fields).
    /// For agents whose histories carry volatile ids.
    Sequence,
}

/// What happens when a test calls a request more often than it was recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exhausted {
    /// A miss. Always the behaviour in `strict`, and the default in `replay`.
    Error,
    /// Replay the last recorded response again (not in `strict`).
    RepeatLast,
    /// Forward and record another response (the default in `auto`; in `replay`, a miss).
    Forward,
}

/// Opt-in rewrites that make equivalent requests match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Normaliser {
    /// A message `content` of one text block, `[{"type":"text","text":"hi"}]`, matches `"hi"`.
    ContentBlocks,
    /// A dated model name, `gpt-4o-2024-08-06` or `claude-3-5-sonnet-20241022`, matches the
    /// undated one.
    DatedModels,
}

macro_rules! parse_named {
    ($type:ty, $what:literal, $($name:literal => $value:expr),+ $(,)?) => {
        impl FromStr for $type {
            type Err = String;
            fn from_str(text: &str) -> Result<Self, String> {
                match text.trim().to_ascii_lowercase().as_str() {
                    $($name => Ok($value),)+
                    other => Err(format!(concat!("unknown ", $what, " `{}`: expected one of {}"), other, [$($name),+].join(", "))),
                }
            }
        }
    };
}

parse_named!(Strategy, "matching strategy", "content" => Strategy::Content, "sequence" => Strategy::Sequence);
parse_named!(Exhausted, "exhausted policy", "error" => Exhausted::Error, "repeat_last" => Exhausted::RepeatLast, "forward" => Exhausted::Forward);
parse_named!(Normaliser, "normaliser", "content_blocks" => Normaliser::ContentBlocks, "dated_models" => Normaliser::DatedModels);

/// The rules that shape a request key, as recorded in a cassette (`key_rules`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRules {
    /// Ignored body paths, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore_paths: Vec<String>,
    /// Normalisers in force, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub normalisers: Vec<String>,
}

impl KeyRules {
    /// No ignored path, no normaliser: keys are the plain hash of the stored request.
    pub fn is_default(&self) -> bool {
        self.ignore_paths.is_empty() && self.normalisers.is_empty()
    }
}

impl Strategy {
    /// The name used in `traceforge.toml`, `TRACEFORGE_MATCH_STRATEGY` and the attribute.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Content => "content",
            Strategy::Sequence => "sequence",
        }
    }
}

impl Normaliser {
    /// The name used in `traceforge.toml` and in cassettes.
    pub fn as_str(self) -> &'static str {
        match self {
            Normaliser::ContentBlocks => "content_blocks",
            Normaliser::DatedModels => "dated_models",
        }
    }
}

/// The matching rules of a recorder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Matcher {
    /// Body paths left out of the key (and out of miss diffs).
    pub ignore_paths: Vec<JsonPath>,
    /// The strategy.
    pub strategy: Strategy,
    /// Opt-in normalisers.
    pub normalisers: Vec<Normaliser>,
    /// Calls beyond the recording; `None` means the mode's default.
    pub exhausted: Option<Exhausted>,
    /// In `sequence`, how many fields may differ before a request no longer counts as the
    /// recorded one.
    pub sequence_tolerance: usize,
}

impl Default for Matcher {
    fn default() -> Matcher {
        Matcher {
            ignore_paths: Vec::new(),
            strategy: Strategy::Content,
            normalisers: Vec::new(),
            exhausted: None,
            sequence_tolerance: 10,
        }
    }
}

impl Matcher {
    /// Whether keys are the plain hash of the stored request (no path ignored, no normaliser),
    /// so stored keys can be trusted without recomputing them.
    pub fn is_identity(&self) -> bool {
        self.ignore_paths.is_empty() && self.normalisers.is_empty()
    }

    /// The rules that shape keys, in the cassette's canonical form.
    pub fn key_rules(&self) -> KeyRules {
        let mut ignore_paths: Vec<String> = self.ignore_paths.iter().map(|p| p.to_string()).collect();
        ignore_paths.sort();
        ignore_paths.dedup();
        let mut normalisers: Vec<String> = self.normalisers.iter().map(|n| n.as_str().to_owned()).collect();
        normalisers.sort();
        normalisers.dedup();
        KeyRules { ignore_paths, normalisers }
    }

    /// The matcher that computes keys under `rules`, as a cassette records them in `key_rules`:
    /// for checking stored keys (`storage::verify_keys`) without the test's configuration.
    pub fn from_key_rules(rules: &KeyRules) -> Result<Matcher, String> {
        let ignore_paths = rules
            .ignore_paths
            .iter()
            .map(|path| JsonPath::parse(path).map_err(|e| format!("key_rules.ignore_paths: {e}")))
            .collect::<Result<_, _>>()?;
        let normalisers = rules
            .normalisers
            .iter()
            .map(|name| name.parse::<Normaliser>().map_err(|e| format!("key_rules.normalisers: {e}")))
            .collect::<Result<_, _>>()?;
        Ok(Matcher { ignore_paths, normalisers, ..Matcher::default() })
    }

    /// The request as matching sees it.
    pub fn view(&self, request: &RecordedRequest) -> RecordedRequest {
        let mut view = request.clone();
        if let Body::Json { json } = &mut view.body {
            self.normalise(json);
            for path in &self.ignore_paths {
                path.remove(json);
            }
        }
        view
    }

    /// The key of a request under these rules.
    pub fn key(&self, request: &RecordedRequest) -> String {
        if self.is_identity() {
            request_key(request)
        } else {
            request_key(&self.view(request))
        }
    }

    fn normalise(&self, body: &mut Value) {
        for normaliser in &self.normalisers {
            match normaliser {
                Normaliser::ContentBlocks => {
                    if let Some(messages) = body.get_mut("messages").and_then(Value::as_array_mut) {
                        for message in messages {
                            let single_text = match message.get("content") {
                                Some(Value::Array(blocks)) if blocks.len() == 1 => blocks[0]
                                    .as_object()
                                    .filter(|b| b.len() == 2 && b.get("type").and_then(Value::as_str) == Some("text"))
                                    .and_then(|b| b.get("text").cloned()),
                                _ => None,
                            };
                            if let (Some(text), Some(object)) = (single_text, message.as_object_mut()) {
                                object.insert("content".to_owned(), text);
                            }
                        }
                    }
                }
                Normaliser::DatedModels => {
                    if let Some(Value::String(model)) = body.get_mut("model") {
                        if let Some(found) = dated_suffix().and_then(|re| re.find(model)) {
                            model.truncate(found.start());
                        }
                    }
                }
            }
        }
    }
}

fn dated_suffix() -> Option<&'static Regex> {
    static RE: OnceLock<Option<Regex>> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"-(?:\d{4}-\d{2}-\d{2}|\d{8})$").ok()).as_ref()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(body: Value) -> RecordedRequest {
        RecordedRequest::new("POST", "openai", "/chat/completions", Body::Json { json: body.into() })
    }

    #[test]
    fn ignored_paths_leave_the_key_alone() {
        let matcher = Matcher {
            ignore_paths: vec![JsonPath::parse("$.user").unwrap_or_else(|e| panic!("{e}"))],
            ..Matcher::default()
        };
        let a = request(json!({"model": "m", "user": "alice"}));
        let b = request(json!({"model": "m", "user": "bob"}));
        assert_eq!(matcher.key(&a), matcher.key(&b));
        assert_ne!(Matcher::default().key(&a), Matcher::default().key(&b));
    }

    #[test]
    fn normalisers_are_opt_in() {
        let blocks = request(
            json!({"model": "gpt-4o-2024-08-06", "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}),
        );
        let plain = request(json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}));
        let normalising =
            Matcher { normalisers: vec![Normaliser::ContentBlocks, Normaliser::DatedModels], ..Matcher::default() };
        assert_eq!(normalising.key(&blocks), normalising.key(&plain));
        assert_ne!(Matcher::default().key(&blocks), Matcher::default().key(&plain));
        let claude = request(json!({"model": "claude-3-5-sonnet-20241022"}));
        assert_eq!(normalising.key(&claude), normalising.key(&request(json!({"model": "claude-3-5-sonnet"}))));
    }

    #[test]
    fn a_matcher_rebuilt_from_key_rules_makes_the_same_keys() {
        let matcher = Matcher {
            ignore_paths: vec![JsonPath::parse("$.user").unwrap_or_else(|e| panic!("{e}"))],
            normalisers: vec![Normaliser::DatedModels],
            ..Matcher::default()
        };
        let rebuilt = Matcher::from_key_rules(&matcher.key_rules()).unwrap_or_else(|e| panic!("{e}"));
        let request = request(json!({"model": "gpt-4o-2024-08-06", "user": "alice"}));
        assert_eq!(rebuilt.key(&request), matcher.key(&request));
        let unknown = KeyRules { normalisers: vec!["fuzzy".into()], ..KeyRules::default() };
        assert!(Matcher::from_key_rules(&unknown).is_err_and(|e| e.contains("key_rules.normalisers")));
    }

    #[test]
    fn names_parse_with_helpful_errors() {
        assert_eq!("Sequence".parse::<Strategy>(), Ok(Strategy::Sequence));
        assert_eq!("repeat_last".parse::<Exhausted>(), Ok(Exhausted::RepeatLast));
        let error = "fuzzy".parse::<Strategy>().err().unwrap_or_default();
        assert!(error.contains("content, sequence"), "{error}");
        for strategy in [Strategy::Content, Strategy::Sequence] {
            assert_eq!(strategy.as_str().parse::<Strategy>(), Ok(strategy));
        }
    }
}
