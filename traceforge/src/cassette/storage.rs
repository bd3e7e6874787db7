//! Reading and writing cassette files. Reads never modify anything; writes hold a sidecar lock,
//! merge what another process saved meanwhile, and replace the file with an atomic rename of a
//! fully written, fsynced temp file, so a reader only ever sees the old or the new version.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize as _};
use serde_json::Value;

use super::{canonical, CassetteFile, Interaction, FORMAT_VERSION};
use crate::error::{Error, Result};

/// The largest cassette [`load`] reads: 100 MiB. A cassette is meant to be reviewed in a diff;
/// anything larger is refused before it is read, so a hostile or runaway file costs neither
/// the memory nor the time of parsing it.
pub const MAX_CASSETTE_BYTES: u64 = 100 * 1024 * 1024;

/// Reads a cassette. `Ok(None)` when the file does not exist; an error for anything else that
/// stops it being read, with the path and the parse position.
pub fn load(path: &Path) -> Result<Option<CassetteFile>> {
    match read_bytes(path)? {
        Some(bytes) => parse_owned(path, bytes).map(Some),
        None => Ok(None),
    }
}

/// [`parse`], keeping each large binary body as the part of `bytes` that holds it instead of
/// copying it: what loading for a run uses.
pub fn parse_owned(path: &Path, bytes: Vec<u8>) -> Result<CassetteFile> {
    parse_shared(path, &bytes::Bytes::from(bytes))
}

/// [`parse_owned`], for bytes the caller keeps too.
pub fn parse_shared(path: &Path, bytes: &bytes::Bytes) -> Result<CassetteFile> {
    super::binary::reading_from(bytes, || parse(path, bytes))
}

/// The bytes of a cassette file, without parsing them: `Ok(None)` when it does not exist, and
/// [`Error::CassetteTooLarge`] past [`MAX_CASSETTE_BYTES`] (nothing more than that is read).
pub fn read_bytes(path: &Path) -> Result<Option<Vec<u8>>> {
    let read_error = |source| Error::CassetteRead { path: path.to_owned(), source };
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(read_error(source)),
    };
    // Read at most one byte past the limit, whatever the metadata says (the file may be growing,
    // or be a device that never ends).
    // Room for the whole file up front (the metadata is only a hint): read once, never regrown.
    let expected = file.metadata().map_or(0, |m| m.len()).min(MAX_CASSETTE_BYTES);
    let mut bytes = Vec::with_capacity(usize::try_from(expected).unwrap_or(0) + 1);
    file.take(MAX_CASSETTE_BYTES + 1).read_to_end(&mut bytes).map_err(read_error)?;
    if bytes.len() as u64 > MAX_CASSETTE_BYTES {
        return Err(Error::CassetteTooLarge { path: path.to_owned(), limit: MAX_CASSETTE_BYTES });
    }
    Ok(Some(bytes))
}

/// sha256 of a cassette's bytes, lowercase hex: what a usage record remembers of the version
/// a run loaded (see [`crate::usage`]).
pub fn digest(bytes: &[u8]) -> String {
    super::canonical::sha256_hex(bytes)
}

/// Parses cassette bytes; `path` is only used in errors.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<CassetteFile> {
    let parse_error = |e: serde_json::Error| Error::CassetteParse {
        path: path.to_owned(),
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    };
    // Parse once; only when that fails, look at the version on its own, so a future format is
    // reported as such rather than as whatever shape error it causes.
    #[derive(Deserialize)]
    struct Header {
        format_version: Option<Value>,
    }
    let unsupported = |found: Option<&Value>| Error::UnsupportedVersion {
        path: path.to_owned(),
        found: found.map_or_else(|| "missing".to_owned(), |v| v.to_string()),
        supported: FORMAT_VERSION,
    };
    // Valid UTF-8 is checked once, up front, rather than string by string (the same parser and
    // errors; invalid bytes are left to `from_slice`, which says where they are).
    let parsed = match std::str::from_utf8(bytes) {
        Ok(text) => serde_json::from_str::<CassetteFile>(text),
        Err(_) => serde_json::from_slice::<CassetteFile>(bytes),
    };
    let file = match parsed {
        Ok(file) => file,
        Err(error) => {
            return Err(match serde_json::from_slice::<Header>(bytes) {
                Ok(Header { format_version: Some(Value::Number(n)) })
                    if n.as_u64() == Some(u64::from(FORMAT_VERSION)) =>
                {
                    parse_error(error)
                }
                Ok(Header { format_version }) => unsupported(format_version.as_ref()),
                // Broken JSON (bad syntax, cut short, nested too deep) says more than a shape error.
                Err(syntax) if !syntax.is_data() => parse_error(syntax),
                Err(_) => parse_error(error),
            });
        }
    };
    if file.format_version != FORMAT_VERSION {
        return Err(unsupported(Some(&Value::from(file.format_version))));
    }
    validate(path, &file)?;
    Ok(file)
}

/// Integrity rules beyond the JSON shape.
fn validate(path: &Path, file: &CassetteFile) -> Result<()> {
    let invalid = |message: String| Error::CassetteInvalid { path: path.to_owned(), message };
    // Hashed, not ordered: a 10,000-interaction cassette is checked in linear time.
    let mut seen = std::collections::HashMap::with_capacity(file.interactions.len());
    for (index, interaction) in file.interactions.iter().enumerate() {
        if interaction.key.len() != 64
            || !interaction.key.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(invalid(format!("interactions[{index}].key is not a lower-case sha256 hex digest")));
        }
        if let Some(first) = seen.insert(interaction.key.as_str(), index) {
            return Err(invalid(format!(
                "interactions[{first}] and interactions[{index}] have the same key {}",
                interaction.key
            )));
        }
        if interaction.responses.is_empty() {
            return Err(invalid(format!("interactions[{index}] has no responses")));
        }
    }
    if let Some(missing) = file.order.iter().find(|key| !seen.contains_key(key.as_str())) {
        return Err(invalid(format!("order names key {missing}, which no interaction has")));
    }
    Ok(())
}

/// Checks that each stored key is the key of its stored request under `matcher` (the rules
/// the cassette is used with): a mismatch is a hand edit, or rules changed since recording.
/// Kept out of [`load`] so loading stays fast; `traceforge check` and tests call it.
pub fn verify_keys(path: &Path, file: &CassetteFile, matcher: &crate::matching::Matcher) -> Result<()> {
    for (index, interaction) in file.interactions.iter().enumerate() {
        let expected = matcher.key(&interaction.request);
        if expected != interaction.key {
            return Err(Error::CassetteInvalid {
                path: path.to_owned(),
                message: format!(
                    "interactions[{index}].key is {} but its request hashes to {expected}: the request was edited by hand; re-record it",
                    interaction.key
                ),
            });
        }
    }
    Ok(())
}

/// The text of a cassette as written: pretty-printed, keys sorted at every level, a final newline.
pub fn to_pretty_json(file: &CassetteFile) -> serde_json::Result<(Value, String)> {
    let mut text = Vec::new();
    write_pretty(file, &mut text).map_err(serde_json::Error::io)?;
    let value = canonical::sorted(serde_json::to_value(file)?);
    Ok((value, String::from_utf8(text).unwrap_or_default()))
}

/// Writes the text of a cassette (see [`to_pretty_json`]) into `writer` as it serializes,
/// holding nothing but the cassette itself: the types write their fields in sorted order and
/// JSON values are sorted as they are written.
pub fn write_pretty(file: &CassetteFile, mut writer: impl io::Write) -> io::Result<()> {
    // An I/O error comes back as itself (a full disk stays ENOSPC).
    file.serialize(&mut serde_json::Serializer::pretty(&mut writer)).map_err(io::Error::from)?;
    writer.write_all(b"\n")
}

/// The sidecar lock file of a cassette: `.<name>.lock` beside it. It is never renamed over,
/// so every writer locks the same inode.
pub fn lock_path(path: &Path) -> PathBuf {
    sibling(path, &format!(".{}.lock", file_name(path)))
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "cassette.json".to_owned())
}

fn sibling(path: &Path, name: &str) -> PathBuf {
    path.parent().map_or_else(|| PathBuf::from(name), |dir| dir.join(name))
}

fn temp_prefix(path: &Path) -> String {
    format!(".{}.tmp-", file_name(path))
}

/// Options of a save.
#[derive(Clone, Debug, Default)]
pub struct SaveOptions {
    /// JSON paths the secret scan accepts (exact, or a prefix ending in `*`).
    pub allowed_secret_paths: Vec<String>,
}

/// Saves a cassette: under the lock, re-reads what is on disk now, lets `merge` combine it
/// with this run's result, scans for secrets, then atomically replaces the file.
///
/// A corrupt file on disk stops the save (it is reported, never overwritten).
pub fn save(
    path: &Path,
    options: &SaveOptions,
    merge: impl FnOnce(Option<CassetteFile>) -> CassetteFile,
) -> Result<CassetteFile> {
    let saved = write_locked(path, options, None, |on_disk| Some(merge(on_disk)))?;
    Ok(saved.unwrap_or_default())
}

/// Edits an existing cassette under the same protocol as [`save`] (lock, re-read, secret scan,
/// atomic rename): `edit` gets the file as it is on disk now. Returns the file as written, or
/// `Ok(None)` without writing anything when there is no such file.
pub fn update(
    path: &Path,
    options: &SaveOptions,
    edit: impl FnOnce(CassetteFile) -> CassetteFile,
) -> Result<Option<CassetteFile>> {
    update_locked(path, None, options, edit)
}

/// [`update`], only if the bytes on disk (read under the lock) still hash to `expected_sha256`
/// ([`digest`]): for an edit planned from an earlier read, which must not be applied to a
/// version recorded since. [`Error::CassetteChanged`] otherwise, with nothing written.
pub fn update_if_unchanged(
    path: &Path,
    expected_sha256: &str,
    options: &SaveOptions,
    edit: impl FnOnce(CassetteFile) -> CassetteFile,
) -> Result<Option<CassetteFile>> {
    update_locked(path, Some(expected_sha256), options, edit)
}

fn update_locked(
    path: &Path,
    expected_sha256: Option<&str>,
    options: &SaveOptions,
    edit: impl FnOnce(CassetteFile) -> CassetteFile,
) -> Result<Option<CassetteFile>> {
    if !path.exists() {
        return Ok(None);
    }
    write_locked(path, options, expected_sha256, |on_disk| on_disk.map(edit))
}

/// Deletes a cassette under its lock, so that no writer is mid-save. A missing cassette is not
/// an error. The sidecar lock file stays: a writer may be waiting on it, and a second lock
/// file would let two writers in at once.
pub fn remove(path: &Path) -> Result<()> {
    remove_locked(path, None)
}

/// [`remove`], only if the bytes on disk (read under the lock) still hash to
/// `expected_sha256`: [`Error::CassetteChanged`] otherwise, with the file left in place.
pub fn remove_if_unchanged(path: &Path, expected_sha256: &str) -> Result<()> {
    remove_locked(path, Some(expected_sha256))
}

fn remove_locked(path: &Path, expected_sha256: Option<&str>) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let lock = lock_for_write(path).map_err(|(action, source)| write_error(path, action)(source))?;
    if let Some(expected) = expected_sha256 {
        match read_bytes(path)? {
            None => return Ok(()),
            Some(bytes) if digest(&bytes) != expected => {
                return Err(Error::CassetteChanged { path: path.to_owned(), action: "the deletion" });
            }
            Some(_) => {}
        }
    }
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => return Err(write_error(path, "delete the cassette")(source)),
    }
    drop(lock);
    Ok(())
}

fn write_error<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::CassetteWrite { path: path.to_owned(), action, source }
}

/// The save protocol: `produce` turns the file on disk (under the lock) into what to write, or
/// `None` to write nothing. With `expected_sha256`, a file on disk whose bytes hash otherwise
/// is refused before `produce` sees it.
fn write_locked(
    path: &Path,
    options: &SaveOptions,
    expected_sha256: Option<&str>,
    produce: impl FnOnce(Option<CassetteFile>) -> Option<CassetteFile>,
) -> Result<Option<CassetteFile>> {
    let lock = lock_for_write(path).map_err(|(action, source)| write_error(path, action)(source))?;
    let on_disk = match read_bytes(path)? {
        Some(bytes) if expected_sha256.is_some_and(|expected| digest(&bytes) != expected) => {
            return Err(Error::CassetteChanged { path: path.to_owned(), action: "the edit" });
        }
        Some(bytes) => Some(parse(path, &bytes)?),
        None => None,
    };
    let Some(mut merged) = produce(on_disk) else { return Ok(None) };
    merged.format_version = FORMAT_VERSION;
    merged.interactions.sort_by(|a, b| a.key.cmp(&b.key));

    // Scanned and written as it serializes: no second copy of the cassette in memory.
    let findings = crate::secret_scan::scan_serialized(&merged, &options.allowed_secret_paths);
    if !findings.is_empty() {
        return Err(Error::SecretDetected { path: path.to_owned(), findings });
    }
    replace_file_with(path, |writer| write_pretty(&merged, writer))
        .map_err(|(action, source)| Error::CassetteWrite { path: path.to_owned(), action, source })?;
    drop(lock); // closing the file releases the lock
    Ok(Some(merged))
}

/// A failed file operation: the step that failed and the I/O error, for the caller to name
/// its file in the error it reports.
pub(crate) type StepError = (&'static str, io::Error);

/// Creates the parent directory, takes the sidecar lock of `path` and removes temp files that
/// crashed writers left. The lock is held until the returned file is dropped.
pub(crate) fn lock_for_write(path: &Path) -> std::result::Result<File, StepError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(|e| ("create the cassette directory", e))?;
    }
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_path(path))
        .map_err(|e| ("open the lock file", e))?;
    lock.lock().map_err(|e| ("take the lock", e))?;
    remove_stale_temp_files(path);
    Ok(lock)
}

/// Writes `bytes` to a uniquely named temp file beside `path`, fsyncs it, renames it over
/// `path` and fsyncs the directory. On failure the temp file is removed and `path` untouched.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    replace_file(path, bytes).map_err(|(action, source)| Error::CassetteWrite { path: path.to_owned(), action, source })
}

/// [`write_atomically`], for any file: the error says which step failed.
pub(crate) fn replace_file(path: &Path, bytes: &[u8]) -> std::result::Result<(), StepError> {
    replace_file_with(path, |writer| writer.write_all(bytes))
}

/// [`replace_file`], with the contents written by `write` (through a buffer).
pub(crate) fn replace_file_with(
    path: &Path,
    write: impl FnOnce(&mut io::BufWriter<&File>) -> io::Result<()>,
) -> std::result::Result<(), StepError> {
    let temp = sibling(path, &format!("{}{}-{:016x}", temp_prefix(path), std::process::id(), rand::random::<u64>()));
    let result = (|| {
        let file =
            OpenOptions::new().write(true).create_new(true).open(&temp).map_err(|e| ("create the temp file", e))?;
        let mut writer = io::BufWriter::with_capacity(64 * 1024, &file);
        write(&mut writer).and_then(|()| writer.flush()).map_err(|e| ("write the temp file", e))?;
        drop(writer);
        file.sync_all().map_err(|e| ("fsync the temp file", e))?;
        drop(file);
        fs::rename(&temp, path).map_err(|e| ("rename the temp file over the old file", e))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // Make the rename itself durable. Not every platform can open a directory.
            if let Ok(dir) = File::open(dir) {
                let _ = dir.sync_all();
            }
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

/// Temp files left by a writer that crashed. Called under the lock, when no writer of this
/// cassette can be mid-write, so every match is stale.
fn remove_stale_temp_files(path: &Path) {
    let prefix = temp_prefix(path);
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

/// Groups interactions by key, for merging.
pub(crate) fn by_key(interactions: Vec<Interaction>) -> BTreeMap<String, Interaction> {
    interactions.into_iter().map(|i| (i.key.clone(), i)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cassette::{Body, RecordedRequest, RecordedResponse};

    fn cassette(keys: &[char]) -> CassetteFile {
        CassetteFile {
            interactions: keys
                .iter()
                .map(|key| Interaction {
                    key: key.to_string().repeat(64),
                    request: RecordedRequest::new("POST", "openai", "/chat/completions", Body::Empty),
                    responses: vec![RecordedResponse { status: 200, headers: Default::default(), body: Body::Empty }],
                })
                .collect(),
            ..CassetteFile::default()
        }
    }

    fn digest_of(path: &Path) -> String {
        digest(&fs::read(path).unwrap_or_else(|e| panic!("{e}")))
    }

    #[test]
    fn conditional_edits_refuse_a_cassette_that_changed_since_it_was_read() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("chat.json");
        let options = SaveOptions::default();
        save(&path, &options, |_| cassette(&['a', 'b'])).unwrap_or_else(|e| panic!("{e}"));
        let planned = digest_of(&path);
        // Re-recorded meanwhile: the plan was made for the old bytes.
        save(&path, &options, |_| cassette(&['a', 'c'])).unwrap_or_else(|e| panic!("{e}"));
        let rerecorded = fs::read(&path).unwrap_or_else(|e| panic!("{e}"));

        let trimmed = update_if_unchanged(&path, &planned, &options, |mut file| {
            file.interactions.retain(|i| i.key.starts_with('a'));
            file
        });
        assert!(matches!(trimmed, Err(Error::CassetteChanged { action: "the edit", .. })), "{trimmed:?}");
        let removed = remove_if_unchanged(&path, &planned);
        assert!(matches!(removed, Err(Error::CassetteChanged { action: "the deletion", .. })), "{removed:?}");
        assert_eq!(fs::read(&path).unwrap_or_default(), rerecorded, "a refused edit changed the file");
        let message = removed.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("changed since it was read") && message.contains("chat.json"), "{message}");

        // The current digest goes through.
        let current = digest_of(&path);
        let written = update_if_unchanged(&path, &current, &options, |mut file| {
            file.interactions.retain(|i| i.key.starts_with('a'));
            file
        });
        assert_eq!(written.ok().flatten().map(|f| f.interactions.len()), Some(1));
        remove_if_unchanged(&path, &digest_of(&path)).unwrap_or_else(|e| panic!("{e}"));
        assert!(!path.exists());
        // Gone already: nothing to do, not an error.
        remove_if_unchanged(&path, &current).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(update_if_unchanged(&path, &current, &options, |f| f), Ok(None)));
    }
}
