//! What the usage records say about each cassette: used in the last strict run, orphan, or
//! not known (no record, or a record of another version or build). Shared by `check` and
//! `prune`, so both draw the same conclusions.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use traceforge::cassette::CassetteFile;
use traceforge::usage::{self, UsageRecord};

use crate::failure::Failure;

/// The usage records that concern a cassette directory.
pub(crate) struct UsageIndex {
    pub(crate) target_dir: PathBuf,
    by_cassette: HashMap<PathBuf, UsageRecord>,
    /// Per test executable, the newest build any record was made with.
    newest_build: HashMap<PathBuf, u64>,
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
    /// No test used it in the last strict run.
    Orphan(String),
    /// A record exists but describes another version of the file or an older build; `why`.
    Stale(String),
    /// Its test failed in the last strict run, so what it left unused says nothing.
    TestFailed(&'a UsageRecord),
    /// The last strict run used it; the record says how much.
    Used(&'a UsageRecord),
}

impl UsageIndex {
    /// Reads the records in `target_dir`; `directory` is the cassette directory (canonical).
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
        Ok(UsageIndex { target_dir, by_cassette, newest_build, unreadable, dangling, covers_directory })
    }

    /// What the records say about `cassette` (canonical), whose bytes hash to `sha256`.
    pub(crate) fn evidence(&self, cassette: &Path, sha256: &str, file: &CassetteFile) -> Evidence<'_> {
        if !self.covers_directory {
            return Evidence::NoRecords;
        }
        let Some(record) = self.by_cassette.get(cassette) else {
            return Evidence::Orphan("no test loaded it in the last strict run (it has no usage record)".to_owned());
        };
        if let Some(why) = self.rebuilt_since(record) {
            return why;
        }
        if record.cassette_sha256 != sha256 {
            return Evidence::Stale(
                "the cassette changed since its last strict run (re-recorded or edited)".to_owned(),
            );
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
        Evidence::Used(record)
    }

    /// A record made by an executable that is gone, or by an older build of one that has run
    /// again since: for a test binary (`<target>/<profile>/deps/`), a run of the new build
    /// without this cassette means its test is gone.
    fn rebuilt_since(&self, record: &UsageRecord) -> Option<Evidence<'_>> {
        let (Some(exe), Some(built)) = (&record.executable, record.executable_modified_ms) else { return None };
        let Some(current) = usage::modified_ms(exe) else {
            return Some(Evidence::Orphan(format!("the executable that used it, {}, no longer exists", exe.display())));
        };
        if current == built {
            return None;
        }
        let is_test_binary = exe.parent().and_then(Path::file_name).is_some_and(|dir| dir == "deps");
        let new_build_ran = self.newest_build.get(exe).is_some_and(|newest| *newest == current);
        Some(if is_test_binary && new_build_ran {
            Evidence::Orphan(format!(
                "its test did not run in the last strict run of {} (the test was removed or renamed)",
                exe.display()
            ))
        } else {
            Evidence::Stale(format!("{} was rebuilt since its last strict run", exe.display()))
        })
    }
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

    fn record(cassette: &Path, exe: &Path, built: u64) -> UsageRecord {
        UsageRecord {
            format_version: USAGE_FORMAT_VERSION,
            cassette: cassette.to_owned(),
            cassette_sha256: storage::digest(b"cassette"),
            mode: "strict".to_owned(),
            test: None,
            libtest_name: false,
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

    #[test]
    fn records_of_older_builds_and_gone_executables_are_told_apart() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let root = std::fs::canonicalize(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let (cassettes, target) = (root.join("cassettes"), root.join("target"));
        let test_binary = target.join("debug/deps/chat-0123456789abcdef");
        let server = target.join("debug/traceforge");
        let [current, renamed, served, gone, unrecorded] =
            ["current", "renamed", "served", "gone", "unrecorded"].map(|n| cassettes.join(format!("{n}.json")));
        for path in [&test_binary, &server, &current, &renamed, &served, &gone, &unrecorded] {
            touch(path);
        }
        let now = usage::modified_ms(&test_binary).unwrap_or_else(|| panic!("no mtime"));
        let records = [
            record(&current, &test_binary, now),
            record(&renamed, &test_binary, now - 1000), // an older build: its test is gone
            record(&served, &server, now - 1000),       // `serve` rebuilt: unknown, not orphan
            record(&gone, &root.join("nowhere/deps/old-test"), now),
        ];
        for record in &records {
            record.write(&target).unwrap_or_else(|e| panic!("{e}"));
        }
        let index = UsageIndex::read(target, &cassettes).unwrap_or_else(|e| panic!("{e}"));
        assert!(index.covers_directory);
        let file = CassetteFile::default();
        let sha = storage::digest(b"cassette");
        assert!(matches!(index.evidence(&current, &sha, &file), Evidence::Used(_)));
        assert!(
            matches!(index.evidence(&renamed, &sha, &file), Evidence::Orphan(why) if why.contains("removed or renamed"))
        );
        assert!(matches!(index.evidence(&served, &sha, &file), Evidence::Stale(why) if why.contains("rebuilt")));
        assert!(
            matches!(index.evidence(&gone, &sha, &file), Evidence::Orphan(why) if why.contains("no longer exists"))
        );
        assert!(
            matches!(index.evidence(&unrecorded, &sha, &file), Evidence::Orphan(why) if why.contains("no usage record"))
        );
        assert!(matches!(index.evidence(&current, "other", &file), Evidence::Stale(why) if why.contains("changed")));
    }
}
