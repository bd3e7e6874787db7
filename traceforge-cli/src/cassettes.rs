//! Finding cassettes under a directory and loading them with the library's own reader, which
//! checks the format, the version and the integrity rules.

use std::path::{Path, PathBuf};

use traceforge::cassette::{storage, CassetteFile};

use crate::failure::Failure;
use crate::style::Progress;

/// A cassette file, loaded or not.
pub(crate) struct Loaded {
    /// The file, as found under the directory given.
    pub(crate) path: PathBuf,
    /// Its path relative to that directory, for display.
    pub(crate) name: String,
    /// Its bytes, when they could be read.
    pub(crate) bytes: Option<Vec<u8>>,
    /// The parsed cassette, or why it does not load (with the library's message).
    pub(crate) file: Result<CassetteFile, traceforge::Error>,
}

impl Loaded {
    pub(crate) fn size(&self) -> u64 {
        self.bytes.as_ref().map_or(0, |b| b.len() as u64)
    }

    /// The file with symbolic links resolved, as usage records name it.
    pub(crate) fn canonical_path(&self) -> PathBuf {
        std::fs::canonicalize(&self.path).unwrap_or_else(|_| self.path.clone())
    }
}

/// Every `*.json` under `dir` (recursively, skipping hidden entries such as lock and temp
/// files, target directories (cargo's, or one holding usage records), and the semantic
/// assertions' `*.embeddings.json` caches, which are not cassettes), sorted; or `dir` itself
/// when it is a file. A plain folder named `target` (a test module's) is searched.
pub(crate) fn discover(dir: &Path) -> Result<Vec<(PathBuf, String)>, Failure> {
    let metadata = std::fs::metadata(dir).map_err(|error| {
        Failure::usage(format!(
            "cannot read {}: {error}. Pass the cassette directory (default `cassettes`, relative to where you run traceforge)",
            dir.display()
        ))
    })?;
    if metadata.is_file() {
        let name = dir.file_name().map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into_owned());
        return Ok(vec![(dir.to_owned(), name)]);
    }
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(current) = pending.pop() {
        let entries = std::fs::read_dir(&current).map_err(|e| Failure::io(&current, "read the directory", &e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Failure::io(&current, "read the directory", &e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let path = entry.path();
            // `file_type` does not follow symbolic links, so a link cannot make this loop forever.
            let file_type = entry.file_type().map_err(|e| Failure::io(&path, "read", &e))?;
            if file_type.is_dir() {
                if !traceforge::usage::is_target_dir(&path) {
                    pending.push(path);
                }
            } else if name.ends_with(".json")
                && !name.ends_with(traceforge::config::EMBEDDING_CACHE_SUFFIX)
                && path.is_file()
            {
                let relative = path.strip_prefix(dir).unwrap_or(&path).display().to_string();
                found.push((path, relative));
            }
        }
    }
    found.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(found)
}

/// Reads and parses one cassette.
pub(crate) fn load(path: PathBuf, name: String) -> Loaded {
    match storage::read_bytes(&path) {
        Ok(Some(bytes)) => {
            let file = storage::parse(&path, &bytes);
            Loaded { path, name, bytes: Some(bytes), file }
        }
        Ok(None) => {
            let error = std::io::Error::new(std::io::ErrorKind::NotFound, "the file disappeared while reading");
            Loaded {
                file: Err(traceforge::Error::CassetteRead { path: path.clone(), source: error }),
                path,
                name,
                bytes: None,
            }
        }
        Err(error) => Loaded { path, name, bytes: None, file: Err(error) },
    }
}

/// Discovers and loads every cassette under `dir`, with a progress line for many files.
pub(crate) fn load_all(dir: &Path, verb: &'static str) -> Result<Vec<Loaded>, Failure> {
    let found = discover(dir)?;
    let mut progress = Progress::new(verb, found.len());
    Ok(found
        .into_iter()
        .enumerate()
        .map(|(index, (path, name))| {
            progress.step(index, &name);
            load(path, name)
        })
        .collect())
}

/// The upstream names a cassette's requests go to, sorted and deduplicated.
pub(crate) fn upstreams(file: &CassetteFile) -> Vec<String> {
    let mut names: Vec<String> = file.interactions.iter().map(|i| i.request.upstream.clone()).collect();
    names.sort();
    names.dedup();
    names
}

/// How many responses a cassette holds in all.
pub(crate) fn response_count(file: &CassetteFile) -> usize {
    file.interactions.iter().map(|i| i.responses.len()).sum()
}
