//! Semantic assertions: compare LLM output by meaning, with a local embedding model and a
//! committed embedding cache, so that CI is deterministic and offline (feature `semantic`).
//!
//! ```no_run
//! use traceforge::semantic::means;
//! # let answer = String::new();
//! traceforge::assert_semantic!(answer, "Paris is the capital of France");
//! traceforge::assert_semantic!(answer, "Paris is the capital of France", 0.8);
//! // Cosine similarity cannot see a changed number or a negation; guards can:
//! traceforge::assert_semantic!(answer, means("The order total is 42 euros").same_numbers().same_negation());
//! traceforge::assert_not_semantic!(answer, "I cannot help with that", "As an AI language model");
//! ```
//!
//! Every text is embedded once: its vector goes into `<cassette dir>/<model>.embeddings.json`
//! (committed beside the cassettes). In `strict` and `replay` the model is never loaded, and a
//! text that is not in the cache fails with the command that fills it; in `record` and `auto` the
//! model fills the cache; in `off` it computes without writing. See `docs/semantic.md`.

#[doc(hidden)]
pub mod assertions;
mod cache;
mod guard;
mod model;
mod snapshot;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use guard::Guard;
pub use snapshot::SemanticComparator;

use crate::error::{Error, Result};
use crate::miss::quote_shortened;
use crate::mode::Mode;

/// The default similarity threshold: the cosine at or above which two texts count as meaning the
/// same. Calibrated on a labelled set of paraphrases and non-paraphrases (`docs/semantic.md`).
pub const DEFAULT_THRESHOLD: f32 = 0.70;

/// The default model: sentence-transformers all-MiniLM-L6-v2, int8-quantised ONNX.
pub const DEFAULT_MODEL: &str = "all-MiniLM-L6-v2-int8";

/// Names the model whose embeddings are used and cached (default [`DEFAULT_MODEL`]).
pub const MODEL_ENV: &str = "TRACEFORGE_EMBED_MODEL";

/// The folder with the model: `model.onnx` and the tokenizer files (`tokenizer.json`,
/// `config.json`, `special_tokens_map.json`, `tokenizer_config.json`).
pub const MODEL_DIR_ENV: &str = "TRACEFORGE_EMBED_MODEL_DIR";

/// The ONNX Runtime shared library (>= 1.24), as ONNX Runtime's Rust bindings name it.
pub const ORT_LIBRARY_ENV: &str = "ORT_DYLIB_PATH";

/// The similarity metric, named in failure messages.
pub const METRIC: &str = "cosine";

/// Compares texts by meaning. [`Semantic::for_crate`] is what the assertion macros use; build
/// one yourself to choose the cache file, the model or the mode.
///
/// ```no_run
/// # fn demo() -> traceforge::Result<()> {
/// let semantic = traceforge::semantic::Semantic::for_crate(env!("CARGO_MANIFEST_DIR")).threshold(0.8);
/// let score = semantic.similarity("The cat sits on the mat", "A cat is sitting on a mat")?;
/// assert!(score > 0.8);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Semantic {
    cassette_dir: PathBuf,
    cache_file: Option<PathBuf>,
    model: model::ModelConfig,
    mode: Option<Mode>,
    threshold: f32,
    fill_command: Option<String>,
}

impl Semantic {
    /// Uses the cache beside the cassettes of the crate at `manifest_dir`
    /// (`TRACEFORGE_CASSETTE_DIR` if set, else `<crate>/cassettes`), the model named by
    /// `TRACEFORGE_EMBED_MODEL` (default [`DEFAULT_MODEL`]), and the mode of `TRACEFORGE_VCR_MODE`.
    pub fn for_crate(manifest_dir: &str) -> Semantic {
        Semantic::in_dir(crate::config::cassette_dir(manifest_dir))
    }

    /// Uses the cache file of the model in `cassette_dir`.
    pub fn in_dir(cassette_dir: impl AsRef<Path>) -> Semantic {
        Semantic {
            cassette_dir: cassette_dir.as_ref().to_owned(),
            cache_file: None,
            model: model::ModelConfig::from_env(),
            mode: None,
            threshold: DEFAULT_THRESHOLD,
            fill_command: None,
        }
    }

    /// The similarity at or above which texts count as meaning the same (default [`DEFAULT_THRESHOLD`]).
    pub fn threshold(mut self, threshold: f32) -> Semantic {
        self.threshold = threshold;
        self
    }

    /// The mode, instead of `TRACEFORGE_VCR_MODE` (or `strict` on CI, `auto` elsewhere).
    pub fn mode(mut self, mode: Mode) -> Semantic {
        self.mode = Some(mode);
        self
    }

    /// The embedding cache file, instead of `<cassette dir>/<model>.embeddings.json`.
    pub fn cache_file(mut self, path: impl Into<PathBuf>) -> Semantic {
        self.cache_file = Some(path.into());
        self
    }

    /// The model folder, instead of `TRACEFORGE_EMBED_MODEL_DIR`.
    pub fn model_dir(mut self, dir: impl Into<PathBuf>) -> Semantic {
        self.model.dir = Some(dir.into());
        self
    }

    /// Names the model, instead of `TRACEFORGE_EMBED_MODEL`. Each model has its own cache file;
    /// a model other than [`DEFAULT_MODEL`] must be named, so its vectors are never mixed up.
    pub fn model_id(mut self, id: &str) -> Semantic {
        self.model.id = id.to_owned();
        self
    }

    /// The ONNX Runtime library, instead of `ORT_DYLIB_PATH`.
    pub fn ort_library(mut self, path: impl Into<PathBuf>) -> Semantic {
        self.model.ort_library = Some(path.into());
        self
    }

    /// The command a cache miss in strict mode tells the user to run.
    pub fn fill_command(mut self, command: &str) -> Semantic {
        self.fill_command = Some(command.to_owned());
        self
    }

    /// The embedding cache file this uses.
    pub fn cache_path(&self) -> PathBuf {
        self.cache_file.clone().unwrap_or_else(|| cache::file_in(&self.cassette_dir, &self.model.id))
    }

    /// The model's name, as stored in the cache and shown in failures.
    pub fn model_name(&self) -> &str {
        &self.model.id
    }

    /// The threshold in use.
    pub fn current_threshold(&self) -> f32 {
        self.threshold
    }

    /// Loads ONNX Runtime and the model now, so the first assertion that misses the cache does
    /// not pay for it (and a missing model is reported before any test runs).
    pub fn load_model(&self) -> Result<()> {
        model::load(&self.model)
    }

    /// The mode in use: the one set here, else the mode of the `#[traceforge::cassette]` test
    /// whose body calls this (on the body's own task), else `TRACEFORGE_VCR_MODE`, else `strict`
    /// on CI and `auto` elsewhere.
    pub fn current_mode(&self) -> Result<Mode> {
        match self.mode.or_else(crate::mode::of_running_test) {
            Some(mode) => Ok(mode),
            None => Mode::resolve(None),
        }
    }

    /// The embeddings of `texts`, in order: from the cache, or (in modes that allow it) from the
    /// model, which then fills the cache.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Arc<[f32]>>> {
        let cache_file = self.cache_path();
        let cache = cache::open(&cache_file, &self.model.id)?;
        let mut found: Vec<Option<Arc<[f32]>>> = texts.iter().map(|text| cache.get(text)).collect();
        let mut missing: Vec<&str> = texts.iter().zip(&found).filter(|(_, v)| v.is_none()).map(|(t, _)| *t).collect();
        missing.sort_unstable();
        missing.dedup();
        if !missing.is_empty() {
            let mode = self.current_mode()?;
            if !mode.forwards_misses() {
                return Err(Error::EmbeddingNotCached {
                    texts: missing.iter().map(|t| (*t).to_owned()).collect(),
                    model: self.model.id.clone(),
                    cache: cache_file,
                    mode,
                    command: self.fill_command.clone().unwrap_or_else(|| {
                        "TRACEFORGE_VCR_MODE=auto cargo test   # with the model provisioned".to_owned()
                    }),
                });
            }
            let vectors = model::embed(&self.model, &missing)?;
            cache.insert(missing.iter().copied().zip(vectors), mode.writes())?;
            for (slot, text) in found.iter_mut().zip(texts) {
                if slot.is_none() {
                    *slot = cache.get(text);
                }
            }
        }
        found
            .into_iter()
            .zip(texts)
            .map(|(vector, text)| {
                vector.ok_or_else(|| Error::EmbeddingModel {
                    message: format!("the model returned no embedding for {}", quote_shortened(text, 80)),
                })
            })
            .collect()
    }

    /// The cosine similarity of two texts, from -1 to 1 (1 for identical texts, which need no
    /// embedding at all).
    pub fn similarity(&self, a: &str, b: &str) -> Result<f32> {
        if a == b {
            return Ok(1.0);
        }
        let vectors = self.embed(&[a, b])?;
        Ok(cosine(&vectors[0], &vectors[1]))
    }

    /// Compares `actual` with what it should mean: the score, the threshold (the expectation's
    /// own, else this one's) and what each guard found.
    pub fn compare(&self, actual: &str, expected: impl Into<Expectation>) -> Result<Comparison> {
        let expected = expected.into();
        let score = self.similarity(actual, &expected.text)?;
        let guard_failures =
            expected.guards.iter().filter_map(|guard| guard.check(actual, &expected.text).err()).collect();
        Ok(Comparison {
            actual: actual.to_owned(),
            expected: expected.text,
            score,
            threshold: expected.threshold.unwrap_or(self.threshold),
            model: self.model.id.clone(),
            guard_failures,
        })
    }

    /// Compares `actual` with each text it must not mean; a forbidden text fails when its score
    /// reaches the threshold.
    pub fn compare_forbidden(&self, actual: &str, forbidden: &[&str]) -> Result<Vec<Comparison>> {
        let mut texts = Vec::with_capacity(forbidden.len() + 1);
        texts.push(actual);
        texts.extend(forbidden.iter().copied().filter(|f| *f != actual));
        // One lookup (and at most one model call and one save) for all of them.
        self.embed(&texts)?;
        forbidden.iter().map(|text| self.compare(actual, *text)).collect()
    }
}

/// What an answer should mean: a text, and optionally its own threshold and guards for what
/// cosine similarity cannot see. A `&str` or `String` converts into one with no guards.
#[derive(Clone, Debug, PartialEq)]
pub struct Expectation {
    text: String,
    threshold: Option<f32>,
    guards: Vec<Guard>,
}

/// An [`Expectation`]: `assert_semantic!(answer, means("It costs 42 euros").same_numbers())`.
pub fn means(text: impl Into<String>) -> Expectation {
    Expectation { text: text.into(), threshold: None, guards: Vec::new() }
}

impl Expectation {
    /// This expectation's own threshold.
    pub fn threshold(mut self, threshold: f32) -> Expectation {
        self.threshold = Some(threshold);
        self
    }

    /// Adds a guard.
    pub fn guard(mut self, guard: Guard) -> Expectation {
        self.guards.push(guard);
        self
    }

    /// The answer holds exactly the numbers the expectation holds ([`Guard::SameNumbers`]).
    pub fn same_numbers(self) -> Expectation {
        self.guard(Guard::SameNumbers)
    }

    /// The answer is negated exactly when the expectation is ([`Guard::SameNegation`]).
    pub fn same_negation(self) -> Expectation {
        self.guard(Guard::SameNegation)
    }

    /// The answer contains `phrase` ([`Guard::Requires`]).
    pub fn requires(self, phrase: &str) -> Expectation {
        self.guard(Guard::Requires(phrase.to_owned()))
    }

    /// The answer does not contain `phrase` ([`Guard::Forbids`]).
    pub fn forbids(self, phrase: &str) -> Expectation {
        self.guard(Guard::Forbids(phrase.to_owned()))
    }

    /// The text.
    pub fn text(&self) -> &str {
        &self.text
    }
}

impl From<&str> for Expectation {
    fn from(text: &str) -> Expectation {
        means(text)
    }
}

impl From<String> for Expectation {
    fn from(text: String) -> Expectation {
        means(text)
    }
}

impl From<&String> for Expectation {
    fn from(text: &String) -> Expectation {
        means(text.as_str())
    }
}

/// The result of comparing an answer with an expectation.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    /// The answer.
    pub actual: String,
    /// The expected (or forbidden) text.
    pub expected: String,
    /// The cosine similarity.
    pub score: f32,
    /// The threshold it was held to.
    pub threshold: f32,
    /// The model that embedded both.
    pub model: String,
    /// What the guards found, one line each.
    pub guard_failures: Vec<String>,
}

impl Comparison {
    /// Whether the score reaches the threshold.
    pub fn is_similar(&self) -> bool {
        self.score >= self.threshold
    }

    /// Whether the answer means what was expected: similar, and every guard satisfied.
    pub fn passed(&self) -> bool {
        self.is_similar() && self.guard_failures.is_empty()
    }

    /// The failure message of `assert_semantic!`.
    pub fn describe_mismatch(&self) -> String {
        self.describe("semantic assertion failed: the answer does not mean what was expected")
    }

    pub(crate) fn describe(&self, headline: &str) -> String {
        let mut out = format!("{headline}\n");
        out += &format!(
            "  score:     {:.3} {} the threshold {:.3} ({METRIC} similarity, model {})\n",
            self.score,
            if self.is_similar() { ">=" } else { "<" },
            self.threshold,
            self.model
        );
        out += &format!(
            "  actual:    {}\n  expected:  {}\n",
            quote_shortened(&self.actual, 300),
            quote_shortened(&self.expected, 300)
        );
        for failure in &self.guard_failures {
            out += &format!("  guard:     {failure}\n");
        }
        if self.is_similar() && !self.guard_failures.is_empty() {
            out += "  (close in meaning, but a guard failed: cosine similarity cannot see numbers or negation)\n";
        }
        out
    }

    /// The failure message of `assert_not_semantic!` for this forbidden text.
    pub fn describe_forbidden_match(&self) -> String {
        format!(
            "semantic assertion failed: the answer means something it must not\n  score:     {:.3} >= the threshold {:.3} ({METRIC} similarity, model {})\n  actual:    {}\n  forbidden: {}\n",
            self.score,
            self.threshold,
            self.model,
            quote_shortened(&self.actual, 300),
            quote_shortened(&self.expected, 300)
        )
    }
}

/// The cosine similarity of two vectors (0 when either is all zeros).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut dot, mut norm_a, mut norm_b) = (0.0f32, 0.0f32, 0.0f32);
    for (x, y) in a.iter().zip(b) {
        dot += x * y;
        norm_a += x * x;
        norm_b += y * y;
    }
    if norm_a == 0.0 || norm_b == 0.0 {
        return 0.0;
    }
    dot / (norm_a.sqrt() * norm_b.sqrt())
}

/// The similarity of two texts with the defaults of the crate at `manifest_dir` (see
/// [`Semantic::for_crate`]).
pub fn similarity(manifest_dir: &str, a: &str, b: &str) -> Result<f32> {
    Semantic::for_crate(manifest_dir).similarity(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_of_known_vectors() {
        assert!((cosine(&[1.0, 0.0], &[1.0, 0.0]) - 1.0).abs() < 1e-6);
        assert!(cosine(&[1.0, 0.0], &[0.0, 1.0]).abs() < 1e-6);
        assert!((cosine(&[1.0, 1.0], &[-1.0, -1.0]) + 1.0).abs() < 1e-6);
        assert!((cosine(&[3.0, 4.0], &[6.0, 8.0]) - 1.0).abs() < 1e-6, "scale does not matter");
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
    }

    #[test]
    fn long_texts_are_shortened_in_the_middle() {
        let text = format!("{}{}", "a".repeat(500), "END");
        let quoted = quote_shortened(&text, 60);
        assert!(quoted.contains("aaaa"), "{quoted}");
        assert!(quoted.contains("END"), "{quoted}");
        assert!(quoted.contains("(503 characters)"), "{quoted}");
        assert!(quoted.chars().count() < 100, "{quoted}");
        assert_eq!(quote_shortened("short", 60), "\"short\"");
    }

    #[test]
    fn identical_texts_need_no_embedding() -> std::result::Result<(), Box<dyn std::error::Error>> {
        // Strict, an empty cache and no model: identical texts still compare.
        let dir = tempfile::tempdir()?;
        let semantic = Semantic::in_dir(dir.path()).mode(Mode::Strict);
        assert_eq!(semantic.similarity("same", "same")?, 1.0);
        assert!(!semantic.cache_path().exists());
        Ok(())
    }

    #[test]
    fn mismatch_message_names_texts_score_threshold_metric_and_model() {
        let comparison = Comparison {
            actual: "The capital is Lyon.".into(),
            expected: "Paris is the capital.".into(),
            score: 0.41,
            threshold: 0.75,
            model: DEFAULT_MODEL.into(),
            guard_failures: vec!["numbers differ".into()],
        };
        let message = comparison.describe_mismatch();
        for needle in [
            "\"The capital is Lyon.\"",
            "\"Paris is the capital.\"",
            "0.410",
            "0.750",
            "cosine",
            DEFAULT_MODEL,
            "numbers differ",
        ] {
            assert!(message.contains(needle), "missing {needle} in:\n{message}");
        }
    }
}
