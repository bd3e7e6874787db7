//! Every way traceforge can fail, each naming the file involved and what to do about it.

use std::path::PathBuf;

use crate::verify::VerificationFailure;

/// The result type of traceforge's fallible operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A traceforge failure. Variants that concern a cassette carry its path.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `TRACEFORGE_VCR_MODE` (or a `mode` option) holds a value that is not a mode.
    #[error(
        "invalid traceforge mode `{value}` (from {source_name}): expected one of off, record, replay, auto, strict"
    )]
    InvalidMode {
        /// The rejected value.
        value: String,
        /// Where it came from, e.g. `TRACEFORGE_VCR_MODE`.
        source_name: String,
    },

    /// A matching or redaction setting that cannot be used (bad JSON path, regex, name...).
    #[error("invalid traceforge configuration in {source_name}: {message}")]
    Config {
        /// Where the setting came from: `traceforge.toml` (with its path), an environment
        /// variable, or the test's configuration.
        source_name: String,
        /// What is wrong and how to write it.
        message: String,
    },

    /// An upstream base URL that cannot be parsed or is not http(s).
    #[error("invalid URL `{url}` for upstream `{name}` (from {source_name}): {reason}")]
    InvalidUpstream {
        /// The upstream's name, e.g. `openai`.
        name: String,
        /// The rejected URL.
        url: String,
        /// Where it came from.
        source_name: String,
        /// Why it was rejected.
        reason: String,
    },

    /// A test asked for the URL of an upstream that was never configured.
    #[error("unknown upstream `{name}`: configured upstreams are {known}; add it with `upstream({name} = \"https://…\")` or `Recorder::builder().upstream(\"{name}\", url)`")]
    UnknownUpstream {
        /// The requested name.
        name: String,
        /// The configured names, comma separated.
        known: String,
    },

    /// The cassette could not be read from disk.
    #[error("cannot read cassette {}: {source}", path.display())]
    CassetteRead {
        /// The cassette file.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },

    /// The cassette is larger than [`crate::cassette::storage::MAX_CASSETTE_BYTES`]; it was not parsed.
    #[error("cassette {} is over {limit} bytes, the most traceforge reads. It was left untouched: a cassette this large is probably not one (or holds a runaway recording); delete it and re-record (TRACEFORGE_VCR_MODE=record)", path.display())]
    CassetteTooLarge {
        /// The cassette file.
        path: PathBuf,
        /// The limit in bytes.
        limit: u64,
    },

    /// The cassette is not valid JSON or does not have the cassette shape.
    #[error("cassette {} is corrupt at line {line}, column {column}: {message}. It was left untouched: fix it by hand or delete it and re-record (TRACEFORGE_VCR_MODE=record)", path.display())]
    CassetteParse {
        /// The cassette file.
        path: PathBuf,
        /// 1-based line of the problem (0 when unknown).
        line: usize,
        /// 1-based column of the problem (0 when unknown).
        column: usize,
        /// What the parser said.
        message: String,
    },

    /// The cassette was written by a format this version does not read.
    #[error("cassette {} has format_version {found}, but this traceforge reads version {supported}: upgrade traceforge, or re-record the cassette (TRACEFORGE_VCR_MODE=record)", path.display())]
    UnsupportedVersion {
        /// The cassette file.
        path: PathBuf,
        /// The version found in the file (`None` when the field is missing).
        found: String,
        /// The version this build reads and writes.
        supported: u32,
    },

    /// The cassette parsed but breaks an integrity rule (e.g. the same key twice).
    #[error("cassette {} is invalid: {message}. It was left untouched", path.display())]
    CassetteInvalid {
        /// The cassette file.
        path: PathBuf,
        /// Which rule is broken, and where.
        message: String,
    },

    /// Writing the cassette failed; the previous version on disk is intact.
    #[error("cannot save cassette {} ({action}): {source}. The previous cassette on disk is unchanged", path.display())]
    CassetteWrite {
        /// The cassette file.
        path: PathBuf,
        /// The step that failed (create directory, lock, write temp file, rename...).
        action: &'static str,
        /// The underlying I/O error.
        source: std::io::Error,
    },

    /// A conditional edit found the cassette changed since the caller read it (re-recorded or
    /// edited meanwhile); nothing was changed.
    #[error("cassette {} changed since it was read (re-recorded or edited meanwhile), so it was left as it is: {action} only applies to the version it was planned for", path.display())]
    CassetteChanged {
        /// The cassette file.
        path: PathBuf,
        /// What was not done, e.g. `the edit`, `the deletion`.
        action: &'static str,
    },

    /// The secret scan found token-shaped strings; nothing was written.
    #[error("{}", crate::redact::describe_findings(path, "cassette", findings))]
    SecretDetected {
        /// The cassette that was not written.
        path: PathBuf,
        /// What was found where (the secrets themselves are never included in full).
        findings: Vec<crate::redact::SecretFinding>,
    },

    /// The recorder's server could not be started (e.g. the port is taken).
    #[error("cannot start the traceforge recorder on {address}: {source}")]
    Server {
        /// The address it tried to listen on.
        address: std::net::SocketAddr,
        /// The underlying I/O error.
        source: std::io::Error,
    },

    /// The recorder was asked to listen on an address other machines can reach.
    #[error("refusing to listen on {address}: the recorder answers with recorded responses and forwards to upstreams with the caller's credentials, so it listens on loopback (127.0.0.1 or ::1) unless remote access is allowed explicitly (`RecorderBuilder::allow_remote(true)`, `traceforge serve --allow-remote`)")]
    RemoteBind {
        /// The rejected address.
        address: std::net::SocketAddr,
    },

    /// A usage record could not be written or read (see [`crate::usage`]).
    #[error("cannot {action} for the usage record {}: {source}", path.display())]
    UsageRecord {
        /// The record file, or the usage directory.
        path: PathBuf,
        /// The step that failed.
        action: &'static str,
        /// The underlying I/O error.
        source: std::io::Error,
    },

    /// The recorder thread stopped before it could answer (it panicked or was shut down).
    #[error("the traceforge recorder for cassette {} stopped unexpectedly", path.display())]
    RecorderStopped {
        /// The cassette file.
        path: PathBuf,
    },

    /// A semantic assertion needs embeddings the cache does not hold, in a mode that never
    /// loads the model (`strict`, `replay`).
    #[error("{}", describe_not_cached(texts, model, cache, *mode, command))]
    EmbeddingNotCached {
        /// The texts without an embedding.
        texts: Vec<String>,
        /// The model whose embeddings are needed.
        model: String,
        /// The cache file that was searched.
        cache: PathBuf,
        /// The mode that forbids computing them.
        mode: crate::Mode,
        /// The command that fills the cache.
        command: String,
    },

    /// The embedding model or ONNX Runtime could not be loaded or run.
    #[error("traceforge semantic assertions: {message}")]
    EmbeddingModel {
        /// What failed, which files were tried, and what to set.
        message: String,
    },

    /// The embedding cache file cannot be used. It was left untouched.
    #[error("embedding cache {} cannot be used: {message}. It was left untouched", path.display())]
    EmbeddingCache {
        /// The cache file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },

    /// Writing the embedding cache failed; the previous version on disk is intact.
    #[error("cannot save embedding cache {} ({action}): {source}. The previous file on disk is unchanged", path.display())]
    EmbeddingCacheWrite {
        /// The cache file.
        path: PathBuf,
        /// The step that failed.
        action: &'static str,
        /// The underlying I/O error.
        source: std::io::Error,
    },

    /// A text to cache holds something secret-shaped; nothing was written.
    #[error("{}", crate::redact::describe_findings(path, "embedding cache", findings))]
    SecretInEmbeddingCache {
        /// The cache that was not written.
        path: PathBuf,
        /// What was found where (never the secret in full).
        findings: Vec<crate::redact::SecretFinding>,
    },

    /// The test's requests did not agree with its cassette (strict or replay mode), or upstream
    /// calls failed while recording.
    #[error("{0}")]
    Verification(Box<VerificationFailure>),
}

fn describe_not_cached(
    texts: &[String],
    model: &str,
    cache: &std::path::Path,
    mode: crate::Mode,
    command: &str,
) -> String {
    let mut message = format!(
        "{} text(s) have no embedding of model {model} in the embedding cache {}, and {mode} mode never loads the model:\n",
        texts.len(),
        cache.display()
    );
    for text in texts.iter().take(10) {
        message += &format!("  {}\n", crate::miss::quote_shortened(text, 120));
    }
    if texts.len() > 10 {
        message += &format!("  ... and {} more\n", texts.len() - 10);
    }
    message += &format!(
        "Fill the cache with the model provisioned (TRACEFORGE_EMBED_MODEL_DIR and ORT_DYLIB_PATH; see docs/semantic.md):\n  {command}\nthen commit {}",
        cache.display()
    );
    message
}
