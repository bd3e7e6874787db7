//! What the usage records say about each cassette: used in the last strict run, proven orphan,
//! or not known (no record, a record of another version or build, a run that failed or
//! missed). Shared by `check` and `prune`, so both draw the same conclusions.
//!
//! A missing record proves nothing: examples, `#[ignore]`d tests, tests whose attribute or
//! builder sets a mode (which wins over the CI default) and filtered runs leave none. The only
//! proof that no test uses a cassette is a rebuilt test binary that no longer lists the test
//! its record names.

use std::collections::{BTreeSet, HashMap};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use traceforge::cassette::CassetteFile;
use traceforge::usage::{self, UsageRecord};

use crate::failure::Failure;
use crate::style::Progress;

/// How long a test binary gets to list its tests; one that takes longer proves nothing.
const LIST_TIMEOUT: Duration = Duration::from_secs(30);

/// The usage records that concern a cassette directory.
pub(crate) struct UsageIndex {
    pub(crate) target_dir: PathBuf,
    by_cassette: HashMap<PathBuf, UsageRecord>,
    /// Per test executable, the newest build any record was made with.
    newest_build: HashMap<PathBuf, u64>,
    /// Per rebuilt test binary, the tests its current build lists, when it listed them.
    listings: HashMap<PathBuf, Option<BTreeSet<String>>>,
    /// Record files that could not be read, with why.
    pub(crate) unreadable: Vec<(PathBuf, String)>,
    /// Records whose cassette file no longer exists (left by removed tests or temp dirs).
    pub(crate) dangling: Vec<PathBuf>,
    /// Whether any record is about a cassette under the directory checked.
    pub(crate) covers_directory: bool,
}

/// What the usage records say about one cassette.
pub(crate) enum Evidence<'a> {
    /// No usage record concerns this directory: nothing can be said.
    NoRecords,
    /// No strict run used it, which does not prove that no test does; `why`.
    NoUsage(String),
    /// Proven unused: the test that used it is gone from its rebuilt test binary.
    Orphan(String),
    /// A record exists but describes another version of the file or an older build; `why`.
    Stale(String),
    /// Its test failed in the last strict run, so what it left unused says nothing.
    TestFailed(&'a UsageRecord),
    /// Its last strict run passed with misses (the test swallowed the miss errors), so what it
    /// left unused may be what those requests should have matched.
    Missed(&'a UsageRecord),
    /// The last strict run used it; the record says how much.
    Used(&'a UsageRecord),
}

impl UsageIndex {
    /// Reads the records in `target_dir`; `directory` is the cassette directory (canonical).
    /// Rebuilt test binaries are asked for their tests, with a progress line.
    pub(crate) fn read(target_dir: PathBuf, directory: &Path) -> Result<UsageIndex, Failure> {
        let mut by_cassette = HashMap::new();
        let mut newest_build: HashMap<PathBuf, u64> = HashMap::new();
        let mut unreadable = Vec::new();
        let mut dangling = Vec::new();
        for (file, record) in usage::read_all(&target_dir)? {
            match record {
                Ok(record) => {
                    if !record.cassette.exists() {
                        dangling.push(file);
                        continue;
                    }
                    if let (Some(exe), Some(built)) = (&record.executable, record.executable_modified_ms) {
                        let newest = newest_build.entry(exe.clone()).or_default();
                        *newest = (*newest).max(built);
                    }
                    by_cassette.insert(record.cassette.clone(), record);
                }
                Err(why) => unreadable.push((file, why)),
            }
        }
        let covers_directory = by_cassette.keys().any(|cassette| cassette.starts_with(directory));
        let to_list: BTreeSet<&PathBuf> = by_cassette
            .values()
            .filter(|record| record.cassette.starts_with(directory) && record.libtest_name && record.test.is_some())
            .filter_map(|record| {
                let (exe, built) = (record.executable.as_ref()?, record.executable_modified_ms?);
                usage::modified_ms(exe).is_some_and(|current| current != built).then_some(exe)
            })
            .collect();
        let mut progress = Progress::new("listing the tests of", to_list.len());
        let listings = to_list
            .into_iter()
            .enumerate()
            .map(|(index, exe)| {
                progress.step(index, &exe.display().to_string());
                (exe.clone(), list_tests(exe))
            })
            .collect();
        Ok(UsageIndex { target_dir, by_cassette, newest_build, listings, unreadable, dangling, covers_directory })
    }

    /// What the records say about `cassette` (canonical), whose bytes hash to `sha256`.
    pub(crate) fn evidence(&self, cassette: &Path, sha256: &str, file: &CassetteFile) -> Evidence<'_> {
        if !self.covers_directory {
            return Evidence::NoRecords;
        }
        let Some(record) = self.by_cassette.get(cassette) else {
            return Evidence::NoUsage(
                "no strict run loaded it (it has no usage record): the cassette of an example, of an `#[ignore]`d test, of a test whose attribute or builder sets its mode, or of a test a filtered run left out".to_owned(),
            );
        };
        // First: a cassette written since its record (e.g. re-recorded by a renamed test) is
        // in use by someone, whatever became of the test the record names.
        if record.cassette_sha256 != sha256 {
            return Evidence::Stale(
                "the cassette changed since its last strict run (re-recorded or edited)".to_owned(),
            );
        }
        if let Some(why) = self.rebuilt_since(record) {
            return why;
        }
        let recorded: BTreeSet<&str> = record.interactions.iter().map(|i| i.key.as_str()).collect();
        let on_disk: BTreeSet<&str> = file.interactions.iter().map(|i| i.key.as_str()).collect();
        if recorded != on_disk {
            return Evidence::Stale(
                "its last strict run matched under other rules than the cassette's key_rules".to_owned(),
            );
        }
        if !record.test_passed {
            return Evidence::TestFailed(record);
        }
        if record.misses > 0 {
            return Evidence::Missed(record);
        }
        Evidence::Used(record)
    }

    /// For a record made by an executable that is gone or was rebuilt since: an orphan when the
    /// rebuilt test binary no longer lists the record's test, else why its usage is unknown.
    fn rebuilt_since(&self, record: &UsageRecord) -> Option<Evidence<'_>> {
        let (Some(exe), Some(built)) = (&record.executable, record.executable_modified_ms) else { return None };
        let Some(current) = usage::modified_ms(exe) else {
            return Some(Evidence::Stale(format!(
                "the executable that used it, {}, no longer exists (cleaned, or its target removed)",
                exe.display()
            )));
        };
        if current == built {
            return None;
        }
        let listed = self.listings.get(exe).and_then(Option::as_ref);
        let test = record.test.as_deref().filter(|_| record.libtest_name);
        if let (Some(listed), Some(test)) = (listed, test) {
            if !listed.contains(test) {
                return Some(Evidence::Orphan(format!(
                    "its test `{test}` is gone: the current build of {} does not list it (removed or renamed)",
                    exe.display()
                )));
            }
            if self.newest_build.get(exe) == Some(&current) {
                return Some(Evidence::NoUsage(format!(
                    "its test `{test}` did not run in strict mode with the current build of {} (ignored, filtered out, or its mode is set in code)",
                    exe.display()
                )));
            }
        }
        Some(Evidence::Stale(format!("{} was rebuilt since its last strict run", exe.display())))
    }
}

/// The tests a libtest binary lists with `--list --format terse` (one `NAME: test` or
/// `NAME: benchmark` line each), or `None` when it does not answer like that in time: a
/// listing that could be anything else proves nothing.
fn list_tests(exe: &Path) -> Option<BTreeSet<String>> {
    let mut child = Command::new(exe)
        .args(["--list", "--format", "terse"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut stdout = child.stdout.take()?;
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        stdout.read_to_string(&mut text).map(|_| text)
    });
    let deadline = Instant::now() + LIST_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    };
    let text = reader.join().ok()?.ok()?;
    if !status.success() {
        return None;
    }
    let names = text
        .lines()
        .map(|line| line.strip_suffix(": test").or_else(|| line.strip_suffix(": benchmark")).map(str::to_owned))
        .collect::<Option<BTreeSet<String>>>()?;
    (!names.is_empty()).then_some(names)
}

/// The target directory for `directory`: the option, else the library's rule for readers.
pub(crate) fn target_dir(option: Option<&Path>, directory: &Path) -> PathBuf {
    option.map_or_else(|| usage::target_dir_for(directory), Path::to_path_buf)
}

/// How to make usage records, for messages.
pub(crate) const HOW_TO_RECORD_USAGE: &str =
    "run the whole test suite in strict mode first (`CI=true cargo test`): each strict run records which interactions it used under <target>/traceforge/usage/";

#[cfg(test)]
mod tests {
    use super::*;
    use traceforge::cassette::storage;
    use traceforge::usage::{InteractionUsage, USAGE_FORMAT_VERSION};

    fn record(cassette: &Path, exe: &Path, built: u64, test: Option<&str>) -> UsageRecord {
        UsageRecord {
            format_version: USAGE_FORMAT_VERSION,
            cassette: cassette.to_owned(),
            cassette_sha256: storage::digest(b"cassette"),
            mode: "strict".to_owned(),
            test: test.map(str::to_owned),
            libtest_name: test.is_some(),
            test_passed: true,
            misses: 0,
            interactions: Vec::<InteractionUsage>::new(),
            executable: Some(exe.to_owned()),
            executable_modified_ms: Some(built),
        }
    }

    fn touch(path: &Path) {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{e}"));
        }
        std::fs::write(path, b"cassette").unwrap_or_else(|e| panic!("{e}"));
    }

    /// A stand-in test binary: a script that answers `--list --format terse` as libtest does.
    #[cfg(unix)]
    fn lister(path: &Path, listing: &str) {
        use std::os::unix::fs::PermissionsExt as _;
        touch(path);
        std::fs::write(path, format!("#!/bin/sh\nprintf '{listing}'\n")).unwrap_or_else(|e| panic!("{e}"));
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap_or_else(|e| panic!("{e}"));
    }

    #[cfg(unix)]
    #[test]
    fn only_a_rebuilt_binary_that_no_longer_lists_the_test_proves_an_orphan() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let root = std::fs::canonicalize(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let (cassettes, target) = (root.join("cassettes"), root.join("target"));
        let test_binary = target.join("debug/deps/chat-0123456789abcdef");
        lister(&test_binary, "chat::kept: test\\nchat::ignored: test\\n");
        let silent = target.join("debug/deps/custom-harness");
        lister(&silent, "running 3 tests\\n");
        let server = target.join("debug/traceforge");
        touch(&server);
        let names = ["current", "renamed", "ignored", "unnamed", "unlisted", "served", "gone", "missed", "unrecorded"];
        let [current, renamed, ignored, unnamed, unlisted, served, gone, missed, unrecorded] =
            names.map(|n| cassettes.join(format!("{n}.json")));
        for path in [&current, &renamed, &ignored, &unnamed, &unlisted, &served, &gone, &missed, &unrecorded] {
            touch(path);
        }
        let now = usage::modified_ms(&test_binary).unwrap_or_else(|| panic!("no mtime"));
        let older = now - 1000;
        let mut with_misses = record(&missed, &test_binary, now, Some("chat::kept"));
        with_misses.misses = 1;
        let records = [
            record(&current, &test_binary, now, Some("chat::kept")),
            record(&renamed, &test_binary, older, Some("chat::old_name")), // gone from the listing
            record(&ignored, &test_binary, older, Some("chat::ignored")),  // listed, did not run
            record(&unnamed, &test_binary, older, None),                   // a builder test without a libtest name
            record(&unlisted, &silent, older, Some("custom::case")),       // a listing that is no listing
            record(&served, &server, older, Some("traceforge serve")),
            record(&gone, &root.join("nowhere/deps/old-test"), now, Some("chat::kept")),
            with_misses,
        ];
        for record in &records {
            record.write(&target).unwrap_or_else(|e| panic!("{e}"));
        }
        let index = UsageIndex::read(target, &cassettes).unwrap_or_else(|e| panic!("{e}"));
        assert!(index.covers_directory);
        let file = CassetteFile::default();
        let sha = storage::digest(b"cassette");
        let evidence = |path: &Path| index.evidence(path, &sha, &file);
        assert!(matches!(evidence(&current), Evidence::Used(_)));
        assert!(
            matches!(evidence(&renamed), Evidence::Orphan(why) if why.contains("`chat::old_name` is gone")),
            "the one proven orphan"
        );
        assert!(matches!(evidence(&ignored), Evidence::NoUsage(why) if why.contains("did not run in strict")));
        assert!(matches!(evidence(&unnamed), Evidence::Stale(why) if why.contains("rebuilt")));
        assert!(matches!(evidence(&unlisted), Evidence::Stale(why) if why.contains("rebuilt")));
        assert!(matches!(evidence(&served), Evidence::Stale(why) if why.contains("rebuilt")));
        assert!(matches!(evidence(&gone), Evidence::Stale(why) if why.contains("no longer exists")));
        assert!(matches!(evidence(&missed), Evidence::Missed(record) if record.misses == 1));
        assert!(matches!(evidence(&unrecorded), Evidence::NoUsage(why) if why.contains("no usage record")));
        // Changed since its record: in use by someone, even if its test is gone.
        assert!(matches!(index.evidence(&renamed, "other", &file), Evidence::Stale(why) if why.contains("changed")));
    }
}
