//! Per-recorder settings: upstreams, cassette location, matching and recording options, and the
//! one precedence rule that resolves them: environment, then attribute or builder, then
//! `traceforge.toml`, then defaults (lists add up across sources).

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::jsonpath::JsonPath;
use crate::matching::{Exhausted, Matcher, Normaliser, Strategy};
use crate::provider::Provider;
use crate::redact::{InteractionHook, Scrubber};

/// Prefix of the variables that override an upstream's base URL, e.g. `TRACEFORGE_UPSTREAM_OPENAI`.
pub const UPSTREAM_ENV_PREFIX: &str = "TRACEFORGE_UPSTREAM_";
/// The variable that overrides the directory cassettes live in.
pub const CASSETTE_DIR_ENV: &str = "TRACEFORGE_CASSETTE_DIR";

/// The upstreams every recorder knows without configuration.
pub const DEFAULT_UPSTREAMS: [(&str, &str); 4] = [
    ("openai", "https://api.openai.com/v1"),
    ("anthropic", "https://api.anthropic.com"),
    ("gemini", "https://generativelanguage.googleapis.com"),
    ("ollama", "http://localhost:11434"),
];

/// Request headers that take part in the request key by default: they change what a provider
/// answers, unlike auth or tracing headers.
pub const DEFAULT_MATCH_HEADERS: [&str; 2] = ["anthropic-version", "openai-beta"];

/// One real API the recorder can forward to, reached under `/<name>/` on the recorder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    /// The name used in `Cassette::url(name)` and stored in the cassette.
    pub name: String,
    /// The base URL that request paths are appended to, without a trailing slash.
    pub base_url: String,
    /// The wire format the upstream speaks (error shapes, secrets, streaming).
    pub provider: Provider,
}

impl Upstream {
    /// Validates `base_url` and infers the provider from the name or host.
    pub fn new(name: &str, base_url: &str, source_name: &str) -> Result<Upstream> {
        let invalid = |reason: &str| Error::InvalidUpstream {
            name: name.to_owned(),
            url: base_url.to_owned(),
            source_name: source_name.to_owned(),
            reason: reason.to_owned(),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(invalid("upstream names use only letters, digits, `-` and `_`"));
        }
        let url: http::Uri = base_url.parse().map_err(|e: http::uri::InvalidUri| invalid(&e.to_string()))?;
        match url.scheme_str() {
            Some("http") | Some("https") => {}
            _ => return Err(invalid("the URL must start with http:// or https://")),
        }
        if url.host().is_none() {
            return Err(invalid("the URL has no host"));
        }
        if url.query().is_some() {
            return Err(invalid("a base URL cannot carry a query string"));
        }
        Ok(Upstream {
            name: name.to_ascii_lowercase(),
            base_url: base_url.trim_end_matches('/').to_owned(),
            provider: Provider::infer(name, base_url),
        })
    }
}

/// The upstream table after applying defaults, then configured entries, then the environment.
pub(crate) fn resolve_upstreams(configured: &[(String, String)]) -> Result<BTreeMap<String, Upstream>> {
    let mut upstreams = BTreeMap::new();
    for (name, url) in DEFAULT_UPSTREAMS {
        upstreams.insert(name.to_owned(), Upstream::new(name, url, "built-in defaults")?);
    }
    for (name, url) in configured {
        let upstream = Upstream::new(name, url, "the test's configuration")?;
        upstreams.insert(upstream.name.clone(), upstream);
    }
    for (key, value) in std::env::vars() {
        if let Some(name) = key.strip_prefix(UPSTREAM_ENV_PREFIX) {
            if value.trim().is_empty() {
                continue;
            }
            let upstream = Upstream::new(&name.to_ascii_lowercase(), value.trim(), &key)?;
            upstreams.insert(upstream.name.clone(), upstream);
        }
    }
    Ok(upstreams)
}

/// How the recorder treats upstream answers whose status is an error (4xx or 5xx).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RecordErrors {
    /// Pass them to the client but never store them (a retried 429 leaves only the success).
    #[default]
    Never,
    /// Store client errors (4xx except 408 and 429) on purpose, e.g. to test a 400 path.
    ClientErrors,
    /// Store every status.
    All,
}

impl RecordErrors {
    pub(crate) fn records(self, status: u16) -> bool {
        match self {
            _ if status < 400 => true,
            RecordErrors::Never => false,
            RecordErrors::ClientErrors => status < 500 && status != 408 && status != 429,
            RecordErrors::All => true,
        }
    }
}

/// Where a test's cassette lives by default: `<crate>/cassettes/<module path>/<test name>.json`,
/// with `TRACEFORGE_CASSETTE_DIR` replacing `<crate>/cassettes`.
pub fn default_cassette_path(manifest_dir: &str, module_path: &str, name: &str) -> PathBuf {
    let mut path = cassette_dir(manifest_dir);
    for segment in module_path.split("::").filter(|s| !s.is_empty()) {
        path.push(segment);
    }
    path.push(format!("{name}.json"));
    path
}

/// The cassette root: `TRACEFORGE_CASSETTE_DIR` if set (relative to the crate), else `<crate>/cassettes`.
pub fn cassette_dir(manifest_dir: &str) -> PathBuf {
    match std::env::var_os(CASSETTE_DIR_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(manifest_dir).join(dir),
        _ => PathBuf::from(manifest_dir).join("cassettes"),
    }
}

/// How the files of the semantic assertions' embedding cache end
/// (`<cassette dir>/<model>.embeddings.json`): they live beside the cassettes but are not
/// cassettes, and model names hold characters (such as `-`) that no test name can.
pub const EMBEDDING_CACHE_SUFFIX: &str = ".embeddings.json";

/// The variable that selects the matching strategy (`content` or `sequence`).
pub const STRATEGY_ENV: &str = "TRACEFORGE_MATCH_STRATEGY";
/// The variable that adds ignored JSON paths, comma separated.
pub const IGNORE_PATHS_ENV: &str = "TRACEFORGE_IGNORE_PATHS";
/// The configuration file looked up at the root of the crate that holds a test.
pub const CONFIG_FILE: &str = "traceforge.toml";

/// `traceforge.toml`: team-wide matching and redaction settings. See `docs/matching.md`.
#[derive(Clone, Debug, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `[matching]`.
    #[serde(default)]
    pub matching: FileMatching,
    /// `[redaction]`.
    #[serde(default)]
    pub redaction: FileRedaction,
}

/// The `[matching]` table.
#[derive(Clone, Debug, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileMatching {
    /// `content` or `sequence`.
    pub strategy: Option<String>,
    /// Body paths left out of the request key.
    #[serde(default)]
    pub ignore_paths: Vec<String>,
    /// Extra request headers that take part in the key.
    #[serde(default)]
    pub match_headers: Vec<String>,
    /// `content_blocks`, `dated_models`.
    #[serde(default)]
    pub normalisers: Vec<String>,
    /// `error`, `repeat_last` or `forward`.
    pub exhausted: Option<String>,
    /// How many fields may differ in `sequence`.
    pub sequence_tolerance: Option<usize>,
}

/// The `[redaction]` table.
#[derive(Clone, Debug, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRedaction {
    /// Extra secret headers.
    #[serde(default)]
    pub headers: Vec<String>,
    /// Body paths whose values are replaced by `<REDACTED>`.
    #[serde(default)]
    pub json_paths: Vec<String>,
    /// `{ regex = "...", placeholder = "..." }` rewrites of body text.
    #[serde(default)]
    pub patterns: Vec<FilePattern>,
    /// `{ env = "OPENAI_ORG_ID", placeholder = "<OPENAI_ORG>" }`: kept out on record, restored on replay.
    #[serde(default)]
    pub env_placeholders: Vec<FileEnvPlaceholder>,
    /// Redact e-mail addresses, phone numbers and card numbers.
    #[serde(default)]
    pub pii: bool,
    /// Cassette JSON paths where the secret scan accepts token-shaped values.
    #[serde(default)]
    pub allow_secret_paths: Vec<String>,
}

/// A regex rewrite.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePattern {
    /// The regex (Rust `regex` syntax).
    pub regex: String,
    /// What each match becomes.
    pub placeholder: String,
}

/// A secret read from the environment.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEnvPlaceholder {
    /// The environment variable holding the secret.
    pub env: String,
    /// What stands in its place in the cassette.
    pub placeholder: String,
}

impl FileConfig {
    /// Reads a configuration file; `Ok(None)` when there is none.
    pub fn load(path: &std::path::Path) -> Result<Option<FileConfig>> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::Config { source_name: path.display().to_string(), message: e.to_string() }),
        };
        toml::from_str(&text)
            .map(Some)
            .map_err(|e| Error::Config { source_name: path.display().to_string(), message: e.to_string() })
    }
}

/// What a test or harness chose for matching and redaction, before `traceforge.toml` and the
/// environment are applied by [`resolve_rules`].
#[derive(Clone, Default)]
pub(crate) struct Choices {
    pub(crate) config_file: Option<PathBuf>,
    pub(crate) strategy: Option<Strategy>,
    pub(crate) ignore_paths: Vec<String>,
    pub(crate) normalisers: Vec<Normaliser>,
    pub(crate) exhausted: Option<Exhausted>,
    pub(crate) sequence_tolerance: Option<usize>,
    pub(crate) match_headers: Vec<String>,
    pub(crate) redact_headers: Vec<String>,
    pub(crate) redact_json_paths: Vec<String>,
    pub(crate) patterns: Vec<(String, String)>,
    pub(crate) env_placeholders: Vec<(String, String)>,
    pub(crate) pii: bool,
    pub(crate) allow_secret_paths: Vec<String>,
    pub(crate) hook: Option<InteractionHook>,
}

impl std::fmt::Debug for Choices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Choices")
            .field("config_file", &self.config_file)
            .field("strategy", &self.strategy)
            .field("ignore_paths", &self.ignore_paths)
            .field("normalisers", &self.normalisers)
            .field("redact_json_paths", &self.redact_json_paths)
            .field("hook", &self.hook.is_some())
            .finish_non_exhaustive()
    }
}

/// The matching and redaction rules in force.
#[derive(Clone, Debug)]
pub(crate) struct Rules {
    pub(crate) matcher: Matcher,
    pub(crate) scrubber: Scrubber,
    pub(crate) match_headers: Vec<String>,
    pub(crate) allowed_secret_paths: Vec<String>,
}

/// Applies the one precedence rule. A single value (the strategy, the exhausted policy, the
/// sequence tolerance) comes from the environment, else the attribute or builder, else
/// `traceforge.toml`, else the default. Lists (ignored paths, headers, redactions) add up
/// across all sources, so a test can add to team-wide rules but never silently drop one.
pub(crate) fn resolve_rules(choices: &Choices) -> Result<Rules> {
    let file_name = choices.config_file.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
    let file = match &choices.config_file {
        Some(path) => FileConfig::load(path)?.unwrap_or_default(),
        None => FileConfig::default(),
    };
    let invalid = |source_name: &str, message: String| Error::Config { source_name: source_name.to_owned(), message };
    let from_file = |value: &Option<String>, parse: &dyn Fn(&str) -> std::result::Result<(), String>| -> Result<()> {
        match value {
            Some(text) => parse(text).map_err(|m| invalid(&file_name, m)),
            None => Ok(()),
        }
    };
    from_file(&file.matching.strategy, &|t| t.parse::<Strategy>().map(drop))?;
    from_file(&file.matching.exhausted, &|t| t.parse::<Exhausted>().map(drop))?;

    let env_strategy = match std::env::var(STRATEGY_ENV) {
        Ok(text) if !text.trim().is_empty() => Some(text.parse::<Strategy>().map_err(|m| invalid(STRATEGY_ENV, m))?),
        _ => None,
    };
    let strategy = env_strategy
        .or(choices.strategy)
        .or(file.matching.strategy.as_deref().and_then(|t| t.parse().ok()))
        .unwrap_or_default();
    let exhausted = choices.exhausted.or(file.matching.exhausted.as_deref().and_then(|t| t.parse().ok()));

    let mut ignore_paths = Vec::new();
    let env_paths = std::env::var(IGNORE_PATHS_ENV).unwrap_or_default();
    let sources = [
        (file_name.as_str(), file.matching.ignore_paths.clone()),
        ("the test's configuration", choices.ignore_paths.clone()),
        (IGNORE_PATHS_ENV, env_paths.split(',').map(str::trim).filter(|p| !p.is_empty()).map(String::from).collect()),
    ];
    for (source, paths) in sources {
        for path in paths {
            ignore_paths.push(JsonPath::parse(&path).map_err(|e| invalid(source, e.to_string()))?);
        }
    }
    let mut normalisers = choices.normalisers.clone();
    for name in &file.matching.normalisers {
        let normaliser = name.parse::<Normaliser>().map_err(|m| invalid(&file_name, m))?;
        if !normalisers.contains(&normaliser) {
            normalisers.push(normaliser);
        }
    }
    let defaults = Matcher::default();
    let matcher = Matcher {
        ignore_paths,
        strategy,
        normalisers,
        exhausted,
        sequence_tolerance: choices
            .sequence_tolerance
            .or(file.matching.sequence_tolerance)
            .unwrap_or(defaults.sequence_tolerance),
    };

    let mut scrubber = Scrubber::default();
    for header in file.redaction.headers.iter().chain(&choices.redact_headers) {
        scrubber.add_header(header);
    }
    let json_paths =
        [(file_name.as_str(), &file.redaction.json_paths), ("the test's configuration", &choices.redact_json_paths)];
    for (source, paths) in json_paths {
        for path in paths {
            scrubber.add_json_path(JsonPath::parse(path).map_err(|e| invalid(source, e.to_string()))?);
        }
    }
    let file_patterns =
        file.redaction.patterns.iter().map(|p| (file_name.as_str(), p.regex.as_str(), p.placeholder.as_str()));
    let chosen_patterns = choices.patterns.iter().map(|(r, p)| ("the test's configuration", r.as_str(), p.as_str()));
    for (source, regex, placeholder) in file_patterns.chain(chosen_patterns) {
        scrubber
            .add_pattern(regex, placeholder)
            .map_err(|e| invalid(source, format!("the redaction regex `{regex}` does not compile: {e}")))?;
    }
    let file_placeholders = file.redaction.env_placeholders.iter().map(|p| (p.env.as_str(), p.placeholder.as_str()));
    for (env, placeholder) in
        file_placeholders.chain(choices.env_placeholders.iter().map(|(e, p)| (e.as_str(), p.as_str())))
    {
        scrubber.add_env_placeholder(env, placeholder);
    }
    if choices.pii || file.redaction.pii {
        scrubber.redact_pii();
    }
    if let Some(hook) = &choices.hook {
        scrubber.set_hook(hook.clone());
    }

    let mut match_headers: Vec<String> = DEFAULT_MATCH_HEADERS.iter().map(|s| s.to_string()).collect();
    for header in file.matching.match_headers.iter().chain(&choices.match_headers) {
        let header = header.to_ascii_lowercase();
        if !match_headers.contains(&header) {
            match_headers.push(header);
        }
    }
    let allowed_secret_paths =
        file.redaction.allow_secret_paths.iter().chain(&choices.allow_secret_paths).cloned().collect();
    Ok(Rules { matcher, scrubber, match_headers, allowed_secret_paths })
}
