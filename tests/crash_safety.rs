//! Crash while saving: a child process that saves in a loop is killed with SIGKILL at random
//! moments. After every kill the cassette on disk is exactly the last version the child
//! finished saving, or the one it was saving; it always parses; and stale temp files left by
//! the kill are ignored by readers and removed by the next save.

mod support;

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{scratch, synthetic};
use traceforge::cassette::storage::{self, SaveOptions};

const HELPER: &str = env!("CARGO_BIN_EXE_traceforge-stress");
const TRIALS: usize = 200;
/// The kill lands uniformly within this window after the child starts saving.
const MAX_DELAY_MICROS: u64 = 100_000;

fn temp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.contains(".json.tmp-"))
                .collect()
        })
        .unwrap_or_default()
}

fn version_on_disk(path: &Path) -> usize {
    let file = match storage::load(path) {
        Ok(Some(file)) => file,
        Ok(None) => panic!("the cassette disappeared"),
        Err(error) => panic!("the cassette does not parse after a kill: {error}"),
    };
    let n = file.interactions.len();
    let bytes = std::fs::read(path).unwrap_or_default();
    assert!(
        bytes == synthetic::version_bytes(n),
        "the file holds {n} interactions but is not version {n} byte for byte"
    );
    n
}

#[test]
fn sigkill_during_saves_leaves_the_old_or_the_new_version() {
    let dir = scratch();
    let path = dir.path().join("crash.json");
    let mut on_disk = 0; // no file yet
    let (mut with_temp_left, mut mid_save_kills, mut saves_seen) = (0, 0, 0);
    for trial in 0..TRIALS {
        let mut child = Command::new(HELPER)
            .args(["save-forever", &path.display().to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {HELPER}: {e}"));
        let mut stdout = BufReader::new(child.stdout.take().unwrap_or_else(|| panic!("no stdout")));
        let mut line = String::new();
        let _ = stdout.read_line(&mut line);
        assert_eq!(line.trim(), "started", "trial {trial}");
        // Random, not synchronisation: where the kill lands is the point of the test.
        std::thread::sleep(Duration::from_micros(rand_below(MAX_DELAY_MICROS)));
        child.kill().unwrap_or_else(|e| panic!("cannot kill the child: {e}"));
        let status = child.wait().unwrap_or_else(|e| panic!("{e}"));
        assert!(!status.success(), "trial {trial}: the child must have been killed");
        let mut rest = String::new();
        let _ = stdout.read_to_string(&mut rest);

        // The last version the child reported as saved, and the one it may have been saving.
        let saved: Vec<usize> = rest.lines().filter_map(|l| l.strip_prefix("saved ")?.parse().ok()).collect();
        saves_seen += saved.len();
        let last = saved.last().copied().unwrap_or(on_disk);
        let found = if on_disk == 0 && saved.is_empty() && !path.exists() { 0 } else { version_on_disk(&path) };
        assert!(
            found == last || found == synthetic::next(last),
            "trial {trial}: on disk is version {found}, but the child had saved {last} and was at most saving {}",
            synthetic::next(last)
        );
        if found != last {
            mid_save_kills += 1;
        }
        if !temp_files(dir.path()).is_empty() {
            with_temp_left += 1;
        }
        on_disk = found;
    }

    // Stale temp files are ignored by readers (above) and removed by the next save.
    let next = synthetic::next(on_disk);
    storage::save(&path, &SaveOptions::default(), |_| synthetic::version(next)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(version_on_disk(&path), next);
    assert_eq!(temp_files(dir.path()), Vec::<String>::new(), "the save removed the stale temp files");
    println!(
        "crash safety: {TRIALS} SIGKILL trials, {saves_seen} completed saves observed, {with_temp_left} trials left a stale temp file, \
         {mid_save_kills} kills landed after the rename but before the child reported it"
    );
    assert!(with_temp_left > 0, "no kill landed during a write; raise MAX_DELAY_MICROS or the version size");
}

/// A small xorshift seeded from the clock: the kill times differ between runs.
fn rand_below(bound: u64) -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static STATE: AtomicU64 = AtomicU64::new(0);
    let mut x = STATE.load(Ordering::Relaxed);
    if x == 0 {
        x = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64) | 1;
    }
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    STATE.store(x, Ordering::Relaxed);
    x % bound
}
