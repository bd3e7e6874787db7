//! Disk full or permission denied while saving: a clear error that names the cassette and the
//! step that failed, the old cassette intact byte for byte, and no temp file left behind.
//!
//! Our CI (`.ci/run`) runs as root, where mode 0555 does not stop a write. So each failure is
//! produced in a way that also holds for root: a file-size limit (RLIMIT_FSIZE, which binds root
//! too), a tmpfs that really fills up (mounting needs root), a child that runs without the
//! capabilities that let root ignore file modes, and paths the kernel refuses for everyone.
//!
//! A test whose prerequisite is missing fails and names it. Only with
//! `TRACEFORGE_SKIP_PRIVILEGED_TESTS=1` (set for the non-root GitHub-hosted runners) does it
//! pass without running, and it says so.

mod support;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::{scratch, synthetic};
use traceforge::cassette::storage::{self, SaveOptions};
use traceforge::Error;

const HELPER: &str = env!("CARGO_BIN_EXE_traceforge-stress");

/// A cassette holding version 2, and its bytes.
fn old_cassette(dir: &Path) -> (PathBuf, Vec<u8>) {
    let path = dir.join("cassette.json");
    storage::save(&path, &SaveOptions::default(), |_| synthetic::version(2)).unwrap_or_else(|e| panic!("{e}"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(bytes, synthetic::version_bytes(2));
    (path, bytes)
}

fn assert_intact(path: &Path, old: &[u8]) {
    assert!(std::fs::read(path).map(|now| now == old).unwrap_or(false), "the old cassette changed");
    let dir = path.parent().unwrap_or(Path::new("."));
    let temps: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    assert!(!temps.iter().any(|name| name.contains(".tmp-")), "a temp file was left behind: {temps:?}");
}

fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The variable that lets a test whose prerequisite is missing pass without running.
const SKIP_ENV: &str = "TRACEFORGE_SKIP_PRIVILEGED_TESTS";

/// A missing prerequisite fails the test, unless skipping was asked for explicitly: a test that
/// did not run must never look like one that passed.
fn missing_prerequisite(what: &str) {
    if std::env::var(SKIP_ENV).is_ok_and(|value| value == "1") {
        println!("skipped on request ({SKIP_ENV}=1): {what}");
        return;
    }
    panic!("missing prerequisite: {what}\n(set {SKIP_ENV}=1 to skip this test on purpose)");
}

#[test]
fn a_file_size_limit_fails_the_write_midway_and_keeps_the_old_cassette() {
    let dir = scratch();
    let (path, old) = old_cassette(dir.path());
    // The child ignores SIGXFSZ (an ignored signal stays ignored across exec) and may write at
    // most 8 blocks per file, so writing version 200 (~260 KB) fails with EFBIG after a short write.
    let output = Command::new("sh")
        .args(["-c", "trap '' XFSZ; ulimit -f 8 && exec \"$0\" \"$@\"", HELPER, "save"])
        .arg(&path)
        .arg("200")
        .output()
        .unwrap_or_else(|e| panic!("cannot run sh: {e}"));
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(2), "the save must fail: {stderr}");
    for expected in [
        &path.display().to_string() as &str,
        "write the temp file",
        "File too large",
        "previous cassette on disk is unchanged",
    ] {
        assert!(stderr.contains(expected), "missing `{expected}` in: {stderr}");
    }
    assert_intact(&path, &old);
    // Without the limit, the same save succeeds: the failure was the limit's doing.
    let output = Command::new(HELPER).arg("save").arg(&path).arg("200").output().unwrap_or_else(|e| panic!("{e}"));
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert_eq!(std::fs::read(&path).unwrap_or_default(), synthetic::version_bytes(200));
}

/// A small tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_keeps_the_old_cassette() {
    let dir = scratch();
    let mount_point = dir.path().join("small");
    std::fs::create_dir(&mount_point).unwrap_or_else(|e| panic!("{e}"));
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "traceforge-test", &mount_point.display().to_string()])
        .output();
    match mounted {
        Ok(output) if output.status.success() => {}
        Ok(output) => {
            // Mounting needs CAP_SYS_ADMIN (root).
            missing_prerequisite(&format!("`mount -t tmpfs` failed, run as root: {}", stderr_of(&output).trim()));
            return;
        }
        Err(error) => {
            missing_prerequisite(&format!("cannot run `mount`: {error}"));
            return;
        }
    }
    let _guard = Tmpfs(mount_point.clone());
    let (path, old) = old_cassette(&mount_point);
    match storage::save(&path, &SaveOptions::default(), |_| synthetic::version(200)) {
        Err(Error::CassetteWrite { path: reported, action, source }) => {
            assert_eq!(reported, path);
            assert_eq!(source.raw_os_error(), Some(28), "{action}: {source}"); // ENOSPC
        }
        other => panic!("expected ENOSPC, got {other:?}"),
    }
    assert_intact(&path, &old);
    // The space the failed write used is free again: a small save still fits.
    storage::save(&path, &SaveOptions::default(), |_| synthetic::version(3)).unwrap_or_else(|e| panic!("{e}"));
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

#[test]
fn a_read_only_directory_is_a_permission_error_and_keeps_the_old_cassette() {
    let dir = scratch();
    let folder = dir.path().join("ro");
    std::fs::create_dir(&folder).unwrap_or_else(|e| panic!("{e}"));
    let (path, old) = old_cassette(&folder);
    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o555)).unwrap_or_else(|e| panic!("{e}"));
    // Root ignores file modes through CAP_DAC_OVERRIDE; run the saving child with an empty
    // capability bounding set, so for it uid 0 is just the owner of a r-x directory.
    let as_root = running_as_root();
    let mut command = if as_root {
        let mut command = Command::new("setpriv");
        command.args(["--inh-caps=-all", "--bounding-set=-all", "--", HELPER]);
        command
    } else {
        Command::new(HELPER)
    };
    let output = command.arg("save").arg(&path).arg("200").output();
    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o755)).unwrap_or_else(|e| panic!("{e}"));
    let output = match output {
        Ok(output) if !stderr_of(&output).starts_with("setpriv:") => output,
        Ok(output) if as_root => {
            let why = stderr_of(&output);
            missing_prerequisite(&format!("as root, `setpriv` could not drop the capabilities: {}", why.trim()));
            return;
        }
        Err(error) if as_root => {
            missing_prerequisite(&format!("as root, the test needs `setpriv` (util-linux): {error}"));
            return;
        }
        other => panic!("cannot run the helper: {other:?}"),
    };
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(2), "the save must fail: {stderr}");
    for expected in [&path.display().to_string() as &str, "create the temp file", "Permission denied"] {
        assert!(stderr.contains(expected), "missing `{expected}` in: {stderr}");
    }
    assert_intact(&path, &old);
}

#[test]
fn paths_the_kernel_refuses_to_everyone_are_clear_errors() {
    let dir = scratch();
    // The cassette's directory would have to be inside a regular file: ENOTDIR, even for root.
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a directory").unwrap_or_else(|e| panic!("{e}"));
    let path = file.join("cassettes").join("c.json");
    match storage::save(&path, &SaveOptions::default(), |_| synthetic::version(1)) {
        Err(error @ Error::CassetteWrite { .. }) => {
            let message = error.to_string();
            assert!(
                message.contains(&path.display().to_string()) && message.contains("create the cassette directory"),
                "{message}"
            );
        }
        other => panic!("expected a write error, got {other:?}"),
    }
    assert_eq!(std::fs::read(&file).unwrap_or_default(), b"not a directory");

    // The lock file's place is taken by a directory: EISDIR, and the old cassette stays.
    let locked = dir.path().join("locked");
    std::fs::create_dir(&locked).unwrap_or_else(|e| panic!("{e}"));
    let (path, old) = old_cassette(&locked);
    let lock = storage::lock_path(&path);
    std::fs::remove_file(&lock).unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir(&lock).unwrap_or_else(|e| panic!("{e}"));
    match storage::save(&path, &SaveOptions::default(), |_| synthetic::version(200)) {
        Err(error @ Error::CassetteWrite { .. }) => {
            assert!(error.to_string().contains("open the lock file"), "{error}")
        }
        other => panic!("expected a write error, got {other:?}"),
    }
    assert_intact(&path, &old);
}
