//! Per-recorder settings: upstreams, cassette location, matching and recording options, and the
//! one precedence rule that resolves them: environment, then attribute or builder, then defaults.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::provider::Provider;

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
