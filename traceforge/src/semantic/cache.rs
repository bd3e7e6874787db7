//! The embedding cache: one committed file per model beside the cassettes, so strict runs never
//! load the model. Entries are keyed by sha256 of the model name and the text; vectors are packed
//! (base64 of little-endian f32), one entry a line, keys sorted, so a diff shows exactly which
//! texts were added. Writes hold the cassette storage's sidecar lock, merge what another process
//! saved meanwhile and replace the file atomically.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use crate::cassette::storage;
use crate::error::{Error, Result};

/// The `kind` field that tells an embedding cache from a cassette.
pub(crate) const KIND: &str = "traceforge-embedding-cache";
/// The version of the cache format this build reads and writes.
pub(crate) const FORMAT_VERSION: u32 = 1;

/// `<cassette dir>/<model>.embeddings.json` ([`crate::config::EMBEDDING_CACHE_SUFFIX`]).
pub(crate) fn file_in(cassette_dir: &Path, model: &str) -> PathBuf {
    let safe: String =
        model.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
    cassette_dir.join(format!("{safe}{}", crate::config::EMBEDDING_CACHE_SUFFIX))
}

/// The key of a text's embedding under a model.
pub(crate) fn key(model: &str, text: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(model.as_bytes());
    hasher.update([0u8]);
    hasher.update(text.as_bytes());
    hex::encode(hasher.finalize())
}

/// An open cache: everything on disk when it was opened, plus what this process added.
pub(crate) struct Cache {
    path: PathBuf,
    model: String,
    entries: RwLock<HashMap<String, Arc<[f32]>>>,
}

/// Each cache file is read once per process.
fn open_caches() -> &'static Mutex<HashMap<PathBuf, Arc<Cache>>> {
    static OPEN: OnceLock<Mutex<HashMap<PathBuf, Arc<Cache>>>> = OnceLock::new();
    OPEN.get_or_init(Default::default)
}

/// The cache at `path` for `model`, read on first use.
pub(crate) fn open(path: &Path, model: &str) -> Result<Arc<Cache>> {
    let mut open = open_caches().lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(cache) = open.get(path) {
        if cache.model != model {
            return Err(Error::EmbeddingCache {
                path: path.to_owned(),
                message: format!(
                    "it is in use for model {} in this process, and cannot also hold model {model}",
                    cache.model
                ),
            });
        }
        return Ok(Arc::clone(cache));
    }
    let entries = read(path, model)?.map(|file| file.vectors).unwrap_or_default();
    let cache = Arc::new(Cache { path: path.to_owned(), model: model.to_owned(), entries: RwLock::new(entries) });
    open.insert(path.to_owned(), Arc::clone(&cache));
    Ok(cache)
}

impl Cache {
    /// The cached embedding of `text`, if any.
    pub(crate) fn get(&self, text: &str) -> Option<Arc<[f32]>> {
        self.entries.read().unwrap_or_else(|poisoned| poisoned.into_inner()).get(text).cloned()
    }

    /// Adds embeddings; with `persist`, also to the file (under its lock, merged with what is on
    /// disk now). Nothing is written when the file on disk is corrupt or a text holds a secret.
    pub(crate) fn insert<'a>(&self, new: impl IntoIterator<Item = (&'a str, Vec<f32>)>, persist: bool) -> Result<()> {
        let new: Vec<(String, Arc<[f32]>)> = new.into_iter().map(|(t, v)| (t.to_owned(), Arc::from(v))).collect();
        let mut merged = HashMap::new();
        if persist {
            let write_error = |(action, source): storage::StepError| Error::EmbeddingCacheWrite {
                path: self.path.clone(),
                action,
                source,
            };
            let lock = storage::lock_for_write(&self.path).map_err(write_error)?;
            merged = read(&self.path, &self.model)?.map(|file| file.vectors).unwrap_or_default();
            for (text, vector) in &new {
                merged.entry(text.clone()).or_insert_with(|| Arc::clone(vector));
            }
            let findings = crate::redact::scan(&texts_as_json(&self.model, &merged), &[]);
            if !findings.is_empty() {
                return Err(Error::SecretInEmbeddingCache { path: self.path.clone(), findings });
            }
            storage::replace_file(&self.path, render(&self.model, &merged)?.as_bytes()).map_err(write_error)?;
            drop(lock);
        }
        // What is on disk wins: another process may have saved a text first, and this run must
        // score with the vector that later strict runs will read.
        let mut entries = self.entries.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        entries.extend(merged);
        for (text, vector) in new {
            entries.entry(text).or_insert(vector);
        }
        Ok(())
    }
}

/// A cache file as read: its vectors by text.
struct CacheFile {
    vectors: HashMap<String, Arc<[f32]>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    kind: String,
    format_version: u32,
    model: String,
    dimensions: usize,
    entries: BTreeMap<String, RawEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    text: String,
    vector: String,
}

/// Reads and checks a cache file; `Ok(None)` when there is none.
fn read(path: &Path, model: &str) -> Result<Option<CacheFile>> {
    let invalid = |message: String| Error::EmbeddingCache { path: path.to_owned(), message };
    // The cassette reader's size-capped read: the same limit, the same refusal to read past it.
    let bytes = match storage::read_bytes(path) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Ok(None),
        Err(Error::CassetteRead { source, .. }) => return Err(invalid(format!("cannot read it: {source}"))),
        Err(Error::CassetteTooLarge { limit, .. }) => {
            return Err(invalid(format!("it is over {limit} bytes, the most traceforge reads")))
        }
        Err(other) => return Err(other),
    };
    let raw: RawFile = serde_json::from_slice(&bytes)
        .map_err(|e| invalid(format!("it is corrupt at line {}, column {}: {e}", e.line(), e.column())))?;
    if raw.kind != KIND {
        return Err(invalid(format!("its kind is `{}`, not `{KIND}`", raw.kind)));
    }
    if raw.format_version != FORMAT_VERSION {
        return Err(invalid(format!(
            "it has format_version {}, but this traceforge reads version {FORMAT_VERSION}: upgrade traceforge, or delete it and fill it again",
            raw.format_version
        )));
    }
    if raw.model != model {
        return Err(invalid(format!("it holds embeddings of model {}, not of {model}", raw.model)));
    }
    let mut vectors = HashMap::with_capacity(raw.entries.len());
    for (key_found, entry) in raw.entries {
        let expected = key(model, &entry.text);
        if key_found != expected {
            return Err(invalid(format!(
                "entry {key_found} is not the key of its text (expected {expected}): the text was edited by hand; delete the entry and fill the cache again"
            )));
        }
        let vector = decode(&entry.vector)
            .filter(|v| v.len() == raw.dimensions)
            .ok_or_else(|| invalid(format!("entry {key_found} does not hold {} packed f32 values", raw.dimensions)))?;
        vectors.insert(entry.text, Arc::from(vector));
    }
    Ok(Some(CacheFile { vectors }))
}

fn encode(vector: &[f32]) -> String {
    let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn decode(packed: &str) -> Option<Vec<f32>> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(packed).ok()?;
    if bytes.len() % 4 != 0 {
        return None;
    }
    Some(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

/// The file's text: fixed field order (alphabetical), one entry a line, sorted by key.
fn render(model: &str, vectors: &HashMap<String, Arc<[f32]>>) -> Result<String> {
    let dimensions = vectors.values().next().map_or(0, |v| v.len());
    if let Some(odd) = vectors.values().find(|v| v.len() != dimensions) {
        return Err(Error::EmbeddingModel {
            message: format!("the model returned vectors of {} and {dimensions} dimensions", odd.len()),
        });
    }
    let json = |text: &str| serde_json::to_string(text).unwrap_or_else(|_| "\"\"".to_owned());
    let mut lines: Vec<(String, String)> = vectors
        .iter()
        .map(|(text, vector)| {
            (key(model, text), format!("{{\"text\": {}, \"vector\": \"{}\"}}", json(text), encode(vector)))
        })
        .collect();
    lines.sort_unstable();
    let mut out = format!("{{\n  \"dimensions\": {dimensions},\n  \"entries\": {{");
    for (i, (key, entry)) in lines.iter().enumerate() {
        out += if i == 0 { "\n" } else { ",\n" };
        out += &format!("    \"{key}\": {entry}");
    }
    out += if lines.is_empty() { "},\n" } else { "\n  },\n" };
    out += &format!(
        "  \"format_version\": {FORMAT_VERSION},\n  \"kind\": \"{KIND}\",\n  \"model\": {}\n}}\n",
        json(model)
    );
    Ok(out)
}

/// The texts of a cache as JSON, for the secret scan (findings name `$.entries.<key>.text`).
fn texts_as_json(model: &str, vectors: &HashMap<String, Arc<[f32]>>) -> serde_json::Value {
    let entries: serde_json::Map<String, serde_json::Value> =
        vectors.keys().map(|text| (key(model, text), serde_json::json!({ "text": text }))).collect();
    serde_json::json!({ "entries": entries })
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    fn vector(seed: u32) -> Vec<f32> {
        (0..8).map(|i| ((seed * 31 + i) % 17) as f32 / 17.0 - 0.5).collect()
    }

    fn fresh(path: &Path) -> Cache {
        Cache { path: path.to_owned(), model: "test-model".into(), entries: RwLock::default() }
    }

    #[test]
    fn round_trips_exactly_and_renders_stably() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("m.embeddings.json");
        let cache = fresh(&path);
        cache.insert([("b text", vector(2)), ("a \"quoted\"\ntext", vector(1))], true)?;
        let first = std::fs::read_to_string(&path)?;
        let read_back = read(&path, "test-model")?.ok_or("no file")?;
        assert_eq!(read_back.vectors.len(), 2);
        assert_eq!(&*read_back.vectors["b text"], vector(2).as_slice(), "vectors are stored bit for bit");
        // Same content, inserted in another order into another file: the same bytes.
        let other = dir.path().join("other.embeddings.json");
        fresh(&other).insert([("a \"quoted\"\ntext", vector(1)), ("b text", vector(2))], true)?;
        assert_eq!(first, std::fs::read_to_string(&other)?);
        // One line per entry, and no float printed as text.
        assert_eq!(first.lines().filter(|l| l.contains("\"vector\"")).count(), 2, "{first}");
        assert!(first.contains("\"kind\": \"traceforge-embedding-cache\""), "{first}");
        let value: serde_json::Value = serde_json::from_str(&first)?;
        assert_eq!(value["dimensions"], 8);
        Ok(())
    }

    #[test]
    fn writers_merge_instead_of_losing_entries() -> TestResult {
        // Separate Cache values stand for separate processes: each only knows what it added.
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("m.embeddings.json");
        std::thread::scope(|scope| {
            for writer in 0..8u32 {
                let path = &path;
                scope.spawn(move || {
                    let cache = fresh(path);
                    for n in 0..10u32 {
                        let text = format!("writer {writer} text {n}");
                        if let Err(error) = cache.insert([(text.as_str(), vector(writer * 100 + n))], true) {
                            panic!("{error}");
                        }
                    }
                });
            }
        });
        let file = read(&path, "test-model")?.ok_or("no file")?;
        assert_eq!(file.vectors.len(), 80, "every writer's entries survive");
        Ok(())
    }

    #[test]
    fn a_corrupt_cache_is_reported_and_never_overwritten() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("m.embeddings.json");
        std::fs::write(&path, b"{\"kind\": \"traceforge-embedding-cache\", \"entr")?;
        let error = fresh(&path).insert([("text", vector(1))], true).err().ok_or("a corrupt file was accepted")?;
        let message = error.to_string();
        assert!(message.contains(&path.display().to_string()) && message.contains("line 1"), "{message}");
        assert_eq!(std::fs::read(&path)?, b"{\"kind\": \"traceforge-embedding-cache\", \"entr");
        Ok(())
    }

    #[test]
    fn a_hand_edited_text_or_another_model_is_refused() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("m.embeddings.json");
        fresh(&path).insert([("original", vector(1))], true)?;
        let text = std::fs::read_to_string(&path)?;
        let message = read(&path, "other-model").err().ok_or("accepted another model")?.to_string();
        assert!(message.contains("holds embeddings of model test-model, not of other-model"), "{message}");
        std::fs::write(&path, text.replace("\"original\"", "\"edited\""))?;
        let message = read(&path, "test-model").err().ok_or("accepted an edited text")?.to_string();
        assert!(message.contains("edited by hand"), "{message}");
        Ok(())
    }

    #[test]
    fn a_secret_in_a_text_is_never_written() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("m.embeddings.json");
        let secret = "my key is sk-proj-abcdefghijklmnopqrstuvwxyz0123456789";
        let error = fresh(&path).insert([(secret, vector(1))], true).err().ok_or("a secret was written")?;
        let message = error.to_string();
        assert!(message.contains("OpenAI API key") && message.contains("$.entries."), "{message}");
        assert!(!message.contains("abcdefghijklmnopqrstuvwxyz0123456789"), "the secret is printed: {message}");
        assert!(!path.exists());
        Ok(())
    }

    #[test]
    fn memory_only_inserts_write_nothing() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("m.embeddings.json");
        let cache = fresh(&path);
        cache.insert([("text", vector(1))], false)?;
        assert!(cache.get("text").is_some());
        assert!(!path.exists());
        Ok(())
    }

    #[test]
    fn cache_file_names_are_per_model_and_safe() {
        assert_eq!(
            file_in(Path::new("c"), "all-MiniLM-L6-v2-int8"),
            Path::new("c/all-MiniLM-L6-v2-int8.embeddings.json")
        );
        assert_eq!(file_in(Path::new("c"), "org/model v2"), Path::new("c/org_model_v2.embeddings.json"));
    }
}
