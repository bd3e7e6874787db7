//! `traceforge check`: everything that can be wrong with committed cassettes, each finding
//! made by the library's own code (loading and integrity rules, key verification, the secret
//! scan), plus what the usage records of the last strict run say.

use std::path::{Path, PathBuf};

use traceforge::cassette::storage;
use traceforge::config::{FileConfig, CONFIG_FILE};
use traceforge::{redact, Error, Matcher};

use crate::args::{CheckArgs, CheckFormat};
use crate::cassettes::{self, Loaded};
use crate::evidence::{self, Evidence, UsageIndex, HOW_TO_RECORD_USAGE};
use crate::failure::Failure;
use crate::report;
use crate::style::{Progress, Style};

/// One thing found about a cassette.
pub(crate) struct Finding {
    /// A stable name: `io`, `format`, `integrity`, `secret`, `orphan`, `unused` for problems;
    /// `not_canonical`, `no_usage`, `stale_usage`, `test_failed`, `misses` for warnings.
    pub(crate) kind: &'static str,
    pub(crate) message: String,
}

/// The findings about one cassette.
pub(crate) struct CassetteReport {
    pub(crate) name: String,
    pub(crate) problems: Vec<Finding>,
    pub(crate) warnings: Vec<Finding>,
}

impl CassetteReport {
    fn problem(&mut self, kind: &'static str, message: String) {
        self.problems.push(Finding { kind, message });
    }

    fn warning(&mut self, kind: &'static str, message: String) {
        self.warnings.push(Finding { kind, message });
    }

    pub(crate) fn status(&self) -> &'static str {
        if !self.problems.is_empty() {
            "problem"
        } else if !self.warnings.is_empty() {
            "warning"
        } else {
            "ok"
        }
    }
}

/// The whole check.
pub(crate) struct CheckReport {
    pub(crate) directory: String,
    pub(crate) target_dir: PathBuf,
    /// Set when no usage record concerns the directory: why orphans and unused interactions
    /// were not checked, and how to make them checkable.
    pub(crate) usage_note: Option<String>,
    /// Usage record files that could not be read (and were ignored), with why.
    pub(crate) unreadable_records: Vec<String>,
    pub(crate) cassettes: Vec<CassetteReport>,
}

impl CheckReport {
    pub(crate) fn problem_count(&self) -> usize {
        self.cassettes.iter().map(|c| c.problems.len()).sum()
    }

    pub(crate) fn warning_count(&self) -> usize {
        self.cassettes.iter().map(|c| c.warnings.len()).sum()
    }
}

pub(crate) fn run(args: &CheckArgs, style: Style) -> Result<(), Failure> {
    let loaded = cassettes::load_all(&args.dir, "reading")?;
    let allowed = allowed_secret_paths(args.config.as_deref(), &args.dir)?;
    let directory = std::fs::canonicalize(&args.dir).map_err(|e| Failure::io(&args.dir, "read", &e))?;
    let target_dir = evidence::target_dir(args.usage.target_dir.as_deref(), &directory);
    let usage = UsageIndex::read(target_dir.clone(), &directory)?;
    let usage_note = (!usage.covers_directory).then(|| {
        format!(
            "no usage record under {} concerns these cassettes, so orphans and unused interactions were not checked: {HOW_TO_RECORD_USAGE}, then check again",
            traceforge::usage::usage_dir(&target_dir).display()
        )
    });
    let report = CheckReport {
        directory: args.dir.display().to_string(),
        target_dir,
        usage_note,
        unreadable_records: usage
            .unreadable
            .iter()
            .map(|(path, why)| format!("usage record {} was ignored: {why}", path.display()))
            .collect(),
        cassettes: {
            // Key verification, the rewrite comparison and the secret scan are the slow part.
            let mut progress = Progress::new("checking", loaded.len());
            loaded
                .iter()
                .enumerate()
                .map(|(index, cassette)| {
                    progress.step(index, &cassette.name);
                    check_one(cassette, &allowed, &usage)
                })
                .collect()
        },
    };
    match args.format {
        CheckFormat::Text => report::print_text(&report, style),
        CheckFormat::Json => report::print_json(&report),
        CheckFormat::Junit => report::print_junit(&report),
    }
    if report.problem_count() > 0 {
        return Err(Failure::silent(crate::failure::EXIT_PROBLEMS));
    }
    Ok(())
}

fn check_one(loaded: &Loaded, allowed: &[String], usage: &UsageIndex) -> CassetteReport {
    let mut report = CassetteReport { name: loaded.name.clone(), problems: Vec::new(), warnings: Vec::new() };
    let file = match &loaded.file {
        Ok(file) => file,
        Err(error) => {
            report.problem(error_kind(error), error.to_string());
            // A cassette that does not load may still leak: scan whatever JSON it holds.
            if let Some(value) = loaded.bytes.as_deref().and_then(|b| serde_json::from_slice(b).ok()) {
                for finding in redact::scan(&value, allowed) {
                    report.problem("secret", secret_message(&finding));
                }
            }
            return report;
        }
    };
    match Matcher::from_key_rules(&file.key_rules) {
        Ok(matcher) => {
            if let Err(error) = storage::verify_keys(&loaded.path, file, &matcher) {
                report.problem("integrity", error.to_string());
            }
        }
        Err(why) => report.problem("integrity", format!("cassette {}: {why}", loaded.path.display())),
    }
    match storage::to_pretty_json(file) {
        Ok((value, text)) => {
            for finding in redact::scan(&value, allowed) {
                report.problem("secret", secret_message(&finding));
            }
            if loaded.bytes.as_deref() != Some(text.as_bytes()) {
                report.warning(
                    "not_canonical",
                    "not in the form traceforge writes (keys sorted, two-space indent, interactions sorted by key, final newline): the next save rewrites it, so that diff will show unrelated changes".to_owned(),
                );
            }
        }
        Err(error) => report.problem("format", format!("cannot serialize it again: {error}")),
    }
    let sha256 = storage::digest(loaded.bytes.as_deref().unwrap_or_default());
    match usage.evidence(&loaded.canonical_path(), &sha256, file) {
        Evidence::NoRecords => {}
        Evidence::NoUsage(why) => report.warning(
            "no_usage",
            format!("{why}. That does not prove it unused: if no test or example uses it, delete it by hand"),
        ),
        Evidence::Orphan(why) => report.problem(
            "orphan",
            format!("{why}; `traceforge prune --write --delete-orphans` deletes it (or delete it by hand)"),
        ),
        Evidence::Stale(why) => report.warning(
            "stale_usage",
            format!("{why}, so its usage is unknown: run the suite in strict mode again (`CI=true cargo test`)"),
        ),
        Evidence::TestFailed(record) => report.warning(
            "test_failed",
            format!(
                "its test{} failed in the last strict run, so unused interactions are unknown",
                record.test.as_deref().map(|t| format!(" `{t}`")).unwrap_or_default()
            ),
        ),
        Evidence::Missed(record) => report.warning(
            "misses",
            format!(
                "its last strict run{} passed with {} request(s) that had no recording (its code swallowed the miss), so unused interactions are unknown: they may be what those requests should match; fix the test or re-record the cassette",
                record.test.as_deref().map(|t| format!(" (`{t}`)")).unwrap_or_default(),
                record.misses
            ),
        ),
        Evidence::Used(record) => {
            let test = record.test.as_deref().map(|t| format!(" (`{t}`)")).unwrap_or_default();
            // As prune decides: a cassette the run used none of is deleted, only on request.
            let fix = if record.interactions.iter().all(|i| i.used == 0) {
                "`traceforge prune --write --delete-orphans` deletes the cassette, of which the run used nothing"
            } else {
                "`traceforge prune --write` removes what was not played"
            };
            for unused in record.unused() {
                report.problem(
                    "unused",
                    format!(
                        "{} (key {}) was not used by the last strict run{test}: {} of {} recorded response(s) played; {fix}",
                        unused.summary,
                        unused.key.get(..12).unwrap_or(&unused.key),
                        unused.used,
                        unused.recorded
                    ),
                );
            }
        }
    }
    report
}

fn error_kind(error: &Error) -> &'static str {
    match error {
        Error::CassetteRead { .. } => "io",
        Error::CassetteInvalid { .. } => "integrity",
        _ => "format",
    }
}

fn secret_message(finding: &redact::SecretFinding) -> String {
    format!(
        "{} at {} ({}): remove it (edit the cassette or re-record with a redaction rule), or, if it is not a secret, add the path to `allow_secret_paths` in {CONFIG_FILE}",
        finding.kind, finding.json_path, finding.masked
    )
}

/// The JSON paths the secret scan accepts: from `--config`, else the `traceforge.toml` at the
/// root of the crate holding `dir` (the nearest directory above it with a `Cargo.toml`).
pub(crate) fn allowed_secret_paths(config: Option<&Path>, dir: &Path) -> Result<Vec<String>, Failure> {
    let path = match config {
        Some(path) if !path.is_file() => {
            return Err(Failure::usage(format!("no configuration file at {}", path.display())));
        }
        Some(path) => path.to_path_buf(),
        None => {
            let absolute = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
            match absolute.ancestors().find(|d| d.join("Cargo.toml").is_file()) {
                Some(root) => root.join(CONFIG_FILE),
                None => return Ok(Vec::new()),
            }
        }
    };
    Ok(FileConfig::load(&path)?.map(|c| c.redaction.allow_secret_paths).unwrap_or_default())
}
