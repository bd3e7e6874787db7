//! The usage record: which recorded interactions a `strict` or `replay` run played, so that
//! `traceforge check` can report cassettes no test uses and interactions no test asks for, and
//! `traceforge prune` can remove them.
//!
//! [`Recorder::finish`](crate::Recorder::finish) writes one small JSON file per cassette under
//! the target directory, `<target>/traceforge/usage/<sha256 of the cassette path>.json`,
//! rewritten in place under an exclusive lock on the record itself (readers take a shared one).
//! In place rather than through a temp file and a rename: creating and renaming a file costs
//! about 200 µs on a journaling file system, on every strict test; rewriting one costs about 10. It is never written beside the cassettes (a strict run writes nothing there),
//! and a failure to write it never fails a test: it is reported once per process on stderr.
//!
//! The target directory is, in order: [`RecorderBuilder::target_dir`](crate::RecorderBuilder::target_dir);
//! the target directory above the running executable (a test binary lives in
//! `<target>/<profile>/deps/`, and cargo marks the target directory with `.rustc_info.json`);
//! `CARGO_TARGET_DIR`; and `target/` at the root of the workspace around the working directory
//! (the nearest directory with a `Cargo.lock`; outside a Cargo project, the git repository).
//! A target directory the writer has to create is marked with `CACHEDIR.TAG`, as cargo marks
//! its own, so that tools walking the cassettes skip it.

use std::fs::{File, OpenOptions};
use std::io::{self, Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

use crate::cassette::storage;
use crate::error::{Error, Result};

/// The version of the usage record format this build writes and reads.
pub const USAGE_FORMAT_VERSION: u32 = 1;

/// The variable cargo reads for its target directory; honoured here too.
pub const TARGET_DIR_ENV: &str = "CARGO_TARGET_DIR";

/// What one `strict` or `replay` run did with one cassette.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageRecord {
    /// Always [`USAGE_FORMAT_VERSION`] when written by this build.
    pub format_version: u32,
    /// The cassette, absolute, with symbolic links resolved.
    pub cassette: PathBuf,
    /// sha256 of the cassette's bytes as the run loaded them: a record whose digest is not the
    /// file's describes an older version of it.
    pub cassette_sha256: String,
    /// `strict` or `replay`.
    pub mode: String,
    /// The test, when known (`module::name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<String>,
    /// Whether `test` is the name libtest lists the test under (`<binary> --list`): the run
    /// finished on a thread of that name, as libtest names each test's thread. Only then can
    /// a later listing of the rebuilt binary prove the test gone.
    #[serde(default, skip_serializing_if = "is_false")]
    pub libtest_name: bool,
    /// Whether the test body passed. A body that failed may have stopped before making all of
    /// its calls, so its unused interactions say nothing.
    pub test_passed: bool,
    /// Requests that found no recording.
    pub misses: usize,
    /// Every interaction of the cassette, in file order, with how much of it the run played.
    pub interactions: Vec<InteractionUsage>,
    /// The executable that made the run (a test binary, or `traceforge serve`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executable: Option<PathBuf>,
    /// The executable's modification time, in milliseconds since the Unix epoch: a record
    /// from an older build of a test binary that has run again since is a test that is gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executable_modified_ms: Option<u64>,
}

/// How much of one recorded interaction a run played.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InteractionUsage {
    /// The interaction's key.
    pub key: String,
    /// `POST openai /chat/completions`.
    pub summary: String,
    /// How many responses the cassette holds for it.
    pub recorded: usize,
    /// How many of them the run played.
    pub used: usize,
}

impl InteractionUsage {
    /// Whether some of its responses were not played.
    pub fn is_unused(&self) -> bool {
        self.used < self.recorded
    }
}

impl UsageRecord {
    /// The interactions with responses the run did not play.
    pub fn unused(&self) -> impl Iterator<Item = &InteractionUsage> {
        self.interactions.iter().filter(|i| i.is_unused())
    }

    /// Writes the record to its file in `target_dir` (rewritten in place under the record's own
    /// lock); returns the path.
    pub fn write(&self, target_dir: &Path) -> Result<PathBuf> {
        let path = record_path(target_dir, &self.cassette);
        let failed = |action: &'static str| {
            let path = path.clone();
            move |source: io::Error| Error::UsageRecord { path, action, source }
        };
        // Each directory is made once per process: every strict test's finish writes a record.
        static MADE: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
        let dir = usage_dir(target_dir);
        let mut made = MADE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if !made.contains(&dir) {
            if !target_dir.exists() {
                std::fs::create_dir_all(target_dir).map_err(failed("create the target directory"))?;
                // Best effort: the mark only helps tools skip the directory.
                let _ = std::fs::write(target_dir.join("CACHEDIR.TAG"), CACHEDIR_TAG);
            }
            std::fs::create_dir_all(&dir).map_err(failed("create the usage directory"))?;
            made.push(dir);
        }
        drop(made);
        // Compact: a record is read by tools, not reviewed.
        let mut text = serde_json::to_vec(self).map_err(|e| failed("serialize")(io::Error::other(e)))?;
        text.push(b'\n');
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(failed("open the record"))?;
        file.lock().map_err(failed("lock the record"))?;
        file.seek(SeekFrom::Start(0)).map_err(failed("write the record"))?;
        file.write_all(&text).map_err(failed("write the record"))?;
        file.set_len(text.len() as u64).map_err(failed("write the record"))?;
        Ok(path) // closing the file releases the lock
    }
}

/// Reads one record file under a shared lock, so that a writer is never caught mid-write.
fn read_locked(path: &Path) -> io::Result<Vec<u8>> {
    let mut file = File::open(path)?;
    file.lock_shared()?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// The standard cache-directory tag (<https://bford.info/cachedir/>), as cargo writes it.
const CACHEDIR_TAG: &str = "Signature: 8a477f597d28d172789f06886806bc55\n# This file is a cache directory tag created by traceforge.\n# For information about cache directory tags see https://bford.info/cachedir/\n";

/// `<target>/traceforge/usage`: where the records live.
pub fn usage_dir(target_dir: &Path) -> PathBuf {
    target_dir.join("traceforge").join("usage")
}

/// The record file of a cassette: named by the sha256 of its path, so that two cassettes with
/// the same file name in different folders never share one.
pub fn record_path(target_dir: &Path, cassette: &Path) -> PathBuf {
    let name = storage::digest(cassette.to_string_lossy().as_bytes());
    usage_dir(target_dir).join(format!("{name}.json"))
}

/// Every record in `target_dir`, each with its file and either the record or why it could not
/// be read. No usage directory means no records, not an error.
pub fn read_all(target_dir: &Path) -> Result<Vec<(PathBuf, std::result::Result<UsageRecord, String>)>> {
    let dir = usage_dir(target_dir);
    let failed = |source| Error::UsageRecord { path: dir.clone(), action: "read the usage directory", source };
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(failed(source)),
    };
    let mut records = Vec::new();
    for entry in entries {
        let path = entry.map_err(failed)?.path();
        if path.extension().is_none_or(|ext| ext != "json") {
            continue; // temp files of a writer
        }
        let record = read_locked(&path)
            .map_err(|e| e.to_string())
            .and_then(|bytes| serde_json::from_slice::<UsageRecord>(&bytes).map_err(|e| e.to_string()))
            .and_then(|record| match record.format_version {
                USAGE_FORMAT_VERSION => Ok(record),
                other => Err(format!("format_version {other}, but this traceforge reads {USAGE_FORMAT_VERSION}")),
            });
        records.push((path, record));
    }
    records.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(records)
}

/// The target directory of the running process, where its records go (see the module docs).
pub fn target_dir() -> PathBuf {
    // Found once per process: every strict test's finish asks.
    static FOUND: OnceLock<PathBuf> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            // The executable first: a test binary knows exactly where it was built, whereas a
            // relative `CARGO_TARGET_DIR` was meant for cargo's working directory, not the test's.
            let built = std::env::current_exe()
                .ok()
                .and_then(|exe| exe.ancestors().skip(1).take(4).find(|dir| is_target_dir(dir)).map(Path::to_path_buf));
            built
                .or_else(env_target_dir)
                .unwrap_or_else(|| workspace_target(&std::env::current_dir().unwrap_or_default()))
        })
        .clone()
}

/// The target directory that holds the records of the cassettes under `path`: `CARGO_TARGET_DIR`
/// if set, else `target/` at the root of the workspace around `path`. For tools that read
/// records, whose own executable says nothing about where tests ran.
pub fn target_dir_for(path: &Path) -> PathBuf {
    env_target_dir().unwrap_or_else(|| workspace_target(path))
}

/// Whether `dir` is a target directory: cargo always writes `.rustc_info.json` there, and
/// `CACHEDIR.TAG` when it created the directory itself (as [`UsageRecord::write`] does).
pub fn is_target_dir(dir: &Path) -> bool {
    dir.join(".rustc_info.json").is_file() || dir.join("CACHEDIR.TAG").is_file()
}

fn env_target_dir() -> Option<PathBuf> {
    let dir = std::env::var_os(TARGET_DIR_ENV).filter(|d| !d.is_empty())?;
    let dir = PathBuf::from(dir);
    Some(if dir.is_absolute() { dir } else { std::env::current_dir().unwrap_or_default().join(dir) })
}

/// `<workspace>/target`, the workspace being the nearest directory above `start` with a
/// `Cargo.lock`, else the topmost one with a `Cargo.toml`, else the git repository around
/// `start` (so that every cassette directory of a project outside Cargo, and `serve`'s
/// cassettes in it, share one), else `start` itself.
fn workspace_target(start: &Path) -> PathBuf {
    let start = std::path::absolute(start).unwrap_or_else(|_| start.to_path_buf());
    let root = start
        .ancestors()
        .find(|dir| dir.join("Cargo.lock").is_file())
        .or_else(|| start.ancestors().filter(|dir| dir.join("Cargo.toml").is_file()).last())
        .or_else(|| start.ancestors().find(|dir| dir.join(".git").exists()))
        .unwrap_or(&start);
    root.join("target")
}

/// The running executable and its modification time, for [`UsageRecord::executable`].
pub fn executable_identity() -> (Option<PathBuf>, Option<u64>) {
    // Read once per process: the running executable does not change under it.
    static IDENTITY: OnceLock<(Option<PathBuf>, Option<u64>)> = OnceLock::new();
    IDENTITY
        .get_or_init(|| {
            let Ok(exe) = std::env::current_exe() else { return (None, None) };
            let modified = modified_ms(&exe);
            (Some(exe), modified)
        })
        .clone()
}

/// A file's modification time in milliseconds since the Unix epoch, as
/// [`UsageRecord::executable_modified_ms`] holds it; `None` when it cannot be read.
pub fn modified_ms(path: &Path) -> Option<u64> {
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok()?;
    Some(modified.duration_since(UNIX_EPOCH).ok()?.as_millis() as u64)
}

/// Whether the current thread bears the name `test`: libtest runs each test on a thread named
/// after it, so this tells a test's libtest name from a free-form [`crate::RecorderBuilder::test_name`].
pub fn on_test_thread(test: Option<&str>) -> bool {
    test.is_some_and(|test| std::thread::current().name() == Some(test))
}

/// Writes `record`, reporting a failure on stderr once per process and otherwise ignoring it:
/// the record is a by-product of a test and must never fail one.
pub(crate) fn write_or_warn(record: &UsageRecord, target_dir: &Path) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if let Err(error) = record.write(target_dir) {
        if !WARNED.swap(true, Ordering::Relaxed) {
            eprintln!(
                "traceforge: warning: {error}. `traceforge check` will not see this run's usage; set CARGO_TARGET_DIR or RecorderBuilder::target_dir to a writable directory (this warning is shown once)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(cassette: &Path) -> UsageRecord {
        UsageRecord {
            format_version: USAGE_FORMAT_VERSION,
            cassette: cassette.to_owned(),
            cassette_sha256: storage::digest(b"{}"),
            mode: "strict".to_owned(),
            test: Some("chat::answers".to_owned()),
            libtest_name: false,
            test_passed: true,
            misses: 0,
            interactions: vec![InteractionUsage {
                key: "a".repeat(64),
                summary: "POST openai /chat/completions".to_owned(),
                recorded: 2,
                used: 1,
            }],
            executable: None,
            executable_modified_ms: None,
        }
    }

    #[test]
    fn records_round_trip_and_are_named_by_their_cassette() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let first = record(Path::new("/repo/cassettes/a/chat.json"));
        let second = record(Path::new("/repo/cassettes/b/chat.json"));
        let first_path = first.write(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let second_path = second.write(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(first_path, second_path, "same file name in two folders");
        std::fs::write(usage_dir(dir.path()).join("broken.json"), "{").unwrap_or_else(|e| panic!("{e}"));
        let all = read_all(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(all.len(), 3);
        let good: Vec<UsageRecord> = all.iter().filter_map(|(_, r)| r.clone().ok()).collect();
        assert!(good.contains(&first) && good.contains(&second));
        assert_eq!(first.unused().count(), 1);
    }

    #[test]
    fn no_usage_directory_means_no_records() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        assert!(read_all(dir.path()).unwrap_or_else(|e| panic!("{e}")).is_empty());
    }

    #[test]
    fn a_test_binary_finds_the_target_directory_it_was_built_in() {
        // This unit test runs from `<target>/debug/deps/`.
        let exe = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
        let found = exe.ancestors().skip(1).take(4).find(|dir| is_target_dir(dir));
        assert!(found.is_some_and(|dir| dir.join("debug").is_dir() || dir.join("release").is_dir()), "{found:?}");
        assert_eq!(Some(target_dir().as_path()), found);
    }

    #[test]
    fn a_target_directory_the_writer_creates_is_marked_so_walkers_skip_it() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let target = dir.path().join("target");
        record(Path::new("/repo/cassettes/chat.json")).write(&target).unwrap_or_else(|e| panic!("{e}"));
        assert!(is_target_dir(&target));
        // An existing directory is left as it is: it may be anything the user pointed us at.
        let existing = dir.path().join("existing");
        std::fs::create_dir_all(&existing).unwrap_or_else(|e| panic!("{e}"));
        record(Path::new("/repo/cassettes/chat.json")).write(&existing).unwrap_or_else(|e| panic!("{e}"));
        assert!(!is_target_dir(&existing));
    }

    #[test]
    fn libtest_names_the_thread_of_a_test_after_it() {
        assert!(on_test_thread(Some("usage::tests::libtest_names_the_thread_of_a_test_after_it")));
        assert!(!on_test_thread(Some("usage::tests::another")));
        assert!(!on_test_thread(None));
    }

    #[test]
    fn outside_cargo_the_git_repository_holds_the_target() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let nested = dir.path().join("cassettes/python");
        std::fs::create_dir_all(&nested).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(workspace_target(&nested), nested.join("target"), "no repository: the directory itself");
        std::fs::create_dir_all(dir.path().join(".git")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(workspace_target(&nested), dir.path().join("target"));
        assert_eq!(workspace_target(&dir.path().join("cassettes")), dir.path().join("target"));
    }

    #[test]
    fn the_workspace_target_is_beside_the_cargo_lock() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let nested = dir.path().join("crates/app/cassettes");
        std::fs::create_dir_all(&nested).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.path().join("Cargo.lock"), "").unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.path().join("crates/app/Cargo.toml"), "").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(workspace_target(&nested), dir.path().join("target"));
    }
}
