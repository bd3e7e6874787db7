//! Many processes, one cassette: eight child processes record fifty distinct requests each
//! into the same cassette and save at the same moment; the file ends with all 400.

mod support;

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Command, Stdio};

use support::fake_openai::FakeOpenAi;
use support::scratch;
use traceforge::cassette::storage;

const HELPER: &str = env!("CARGO_BIN_EXE_traceforge-stress");
const PROCESSES: usize = 8;
const REQUESTS_EACH: usize = 50;
const ROUNDS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_processes_recording_into_one_cassette_lose_nothing() {
    let dir = scratch();
    let fake = FakeOpenAi::start().await;
    let upstream = fake.base_url();
    let mut total = 0;
    for round in 0..ROUNDS {
        let path = dir.path().join(format!("round-{round}.json"));
        let interactions = tokio::task::spawn_blocking({
            let (path, upstream) = (path.clone(), upstream.clone());
            move || one_round(&path, &upstream, round)
        })
        .await
        .unwrap_or_else(|e| panic!("round {round} panicked: {e}"));
        assert_eq!(interactions, PROCESSES * REQUESTS_EACH, "round {round}");
        total += interactions;
    }
    assert_eq!(fake.received().await, ROUNDS * PROCESSES * REQUESTS_EACH);
    println!("multiprocess: {ROUNDS} rounds x {PROCESSES} processes x {REQUESTS_EACH} requests: {total} interactions saved, none lost");
}

/// One round: start all workers, wait until each has recorded (and so has loaded the cassette
/// before anyone saved), release them together, and check the file.
fn one_round(path: &std::path::Path, upstream: &str, round: usize) -> usize {
    let mut children = Vec::new();
    for worker in 0..PROCESSES {
        let child = Command::new(HELPER)
            .args(["record", &path.display().to_string(), upstream, &format!("{round}-{worker}")])
            .arg(REQUESTS_EACH.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {HELPER}: {e}"));
        children.push(child);
    }
    let mut readers = Vec::new();
    for child in &mut children {
        let mut stdout = BufReader::new(child.stdout.take().unwrap_or_else(|| panic!("no stdout")));
        let mut line = String::new();
        let _ = stdout.read_line(&mut line);
        assert_eq!(line.trim(), "ready", "a worker failed before saving: {line}");
        readers.push(stdout);
    }
    // Every worker has loaded the (missing) cassette and recorded; now all save at once.
    for child in &mut children {
        let stdin = child.stdin.as_mut().unwrap_or_else(|| panic!("no stdin"));
        stdin.write_all(b"go\n").unwrap_or_else(|e| panic!("cannot release a worker: {e}"));
    }
    for (child, mut stdout) in children.into_iter().zip(readers) {
        let mut line = String::new();
        let _ = stdout.read_line(&mut line);
        let output = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
        assert!(output.status.success(), "worker failed: {}", String::from_utf8_lossy(&output.stderr));
        assert_eq!(line.trim(), format!("saved {REQUESTS_EACH}"));
    }
    let file = storage::load(path).unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|| panic!("no cassette"));
    storage::verify_keys(path, &file, &traceforge::Matcher::default()).unwrap_or_else(|e| panic!("{e}"));
    assert!(file.interactions.windows(2).all(|w| w[0].key < w[1].key), "interactions are sorted by key");
    assert!(file.interactions.iter().all(|i| i.responses.len() == 1));
    file.interactions.len()
}
