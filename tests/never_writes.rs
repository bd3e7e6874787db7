//! When traceforge must not write: a test that fails or panics leaves its cassette
//! byte-identical, strict mode runs on a read-only checkout without creating any file, and `off`
//! forwards every call without reading or writing a cassette.

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::panic::AssertUnwindSafe;
use std::path::Path;

use futures_util::FutureExt as _;
use serde_json::json;
use support::fake_openai::FakeOpenAi;
use support::leak;
use traceforge::__private::{run_async, TestMeta, TestOptions};
use traceforge::{Cassette, Mode, Recorder};

/// Every file in `dir` (recursively) with its bytes: the whole visible state of a checkout.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).unwrap_or_else(|e| panic!("{e}")).flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.insert(path.display().to_string(), std::fs::read(&path).unwrap_or_default());
            }
        }
    }
    files
}

async fn ask(base: &str, prompt: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("{base}/chat/completions"))
        .json(&json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": prompt}]}))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// Records one interaction into `path` so there is something to protect.
async fn record_original(path: &Path, upstream: &str) {
    let rec = Recorder::builder()
        .cassette(path)
        .upstream("openai", upstream)
        .force_mode(Mode::Record)
        .start()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ask(&rec.url("openai"), "original").await, 200);
    assert!(rec.finish().await.unwrap_or_else(|e| panic!("{e}")).saved);
}

fn meta() -> TestMeta {
    support::test_meta(module_path!(), "body_under_test")
}

#[tokio::test]
async fn a_panicking_or_failing_test_leaves_the_cassette_byte_identical() {
    let dir = support::scratch();
    let path = dir.path().join("protected.json");
    let fake = FakeOpenAi::start().await;
    record_original(&path, &fake.base_url()).await;
    let before = snapshot(dir.path());

    for mode in [Mode::Record, Mode::Auto] {
        let options = || TestOptions {
            upstreams: Box::leak(vec![("openai", leak(fake.base_url()))].into_boxed_slice()),
            path: Some(leak(path.display().to_string())),
            mode: Some(mode),
            ..TestOptions::default()
        };
        // The body records a new interaction, then panics: the panic reaches the caller and
        // nothing is saved.
        let panicked = AssertUnwindSafe(run_async(meta(), options(), |tf: Cassette| async move {
            assert_eq!(ask(&tf.url("openai"), "new question before a panic").await, 200);
            if tf.mode() != Mode::Off {
                panic!("the test under test fails");
            }
        }))
        .catch_unwind()
        .await;
        assert!(panicked.is_err(), "{mode}: the panic must propagate");
        assert_eq!(snapshot(dir.path()), before, "{mode}: a panicking test changed the directory");

        // Same for a body that returns Err.
        let result = run_async(meta(), options(), |tf: Cassette| async move {
            assert_eq!(ask(&tf.url("openai"), "new question before an Err").await, 200);
            Err::<(), String>("the test under test returned an error".to_owned())
        })
        .await;
        assert!(result.is_err());
        assert_eq!(snapshot(dir.path()), before, "{mode}: a failing test changed the directory");
    }
    // The new questions did reach the upstream: there was something that could have been saved.
    assert_eq!(fake.received().await, 5);
}

#[tokio::test]
async fn strict_mode_runs_on_a_read_only_checkout_and_creates_no_file() {
    let dir = support::scratch();
    let checkout = dir.path().join("cassettes");
    let path = checkout.join("read_only.json");
    let fake = FakeOpenAi::start().await;
    record_original(&path, &fake.base_url()).await;
    drop(fake);
    // Only the cassette itself, as in a fresh clone: no lock file, no temp files.
    let lock = traceforge::cassette::storage::lock_path(&path);
    std::fs::remove_file(&lock).unwrap_or_else(|e| panic!("{e}"));
    let set_mode = |p: &Path, mode: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap_or_else(|e| panic!("{e}"))
    };
    set_mode(&path, 0o444);
    set_mode(&checkout, 0o555);
    let before = snapshot(dir.path());
    assert_eq!(before.len(), 1);

    // As root, 0555 does not stop writes, so the assertion is on the result: the directory
    // holds exactly the same files with exactly the same bytes.
    let strict = |upstream: &str| {
        Recorder::builder()
            .cassette(&path)
            .upstream("openai", upstream)
            .force_mode(Mode::Strict)
            .start()
            .unwrap_or_else(|e| panic!("strict must start on a read-only checkout: {e}"))
    };
    let rec = strict("http://127.0.0.1:9/v1");
    assert_eq!(ask(&rec.url("openai"), "original").await, 200);
    let report = rec.finish().await.unwrap_or_else(|e| panic!("strict replay failed: {e}"));
    assert_eq!((report.hits, report.saved), (1, false));
    assert_eq!(snapshot(dir.path()), before, "a passing strict run wrote something");

    // A strict miss fails the test, and writes nothing either.
    let rec = strict("http://127.0.0.1:9/v1");
    assert_eq!(ask(&rec.url("openai"), "a question never recorded").await, 404);
    assert!(rec.finish().await.is_err());
    assert_eq!(snapshot(dir.path()), before, "a failing strict run wrote something");

    // A missing cassette in a read-only folder: a miss, and still no file.
    let rec = Recorder::builder()
        .cassette(checkout.join("absent.json"))
        .force_mode(Mode::Strict)
        .start()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ask(&rec.url("openai"), "original").await, 404);
    assert!(rec.finish().await.is_err());
    assert_eq!(snapshot(dir.path()), before, "a strict run without a cassette wrote something");

    set_mode(&checkout, 0o755); // so the temp dir can be removed when not running as root
}

#[tokio::test]
async fn off_mode_forwards_every_call_and_reads_and_writes_nothing() {
    let dir = support::scratch();
    let fake = FakeOpenAi::start().await;
    let off = |path: &Path| {
        Recorder::builder()
            .cassette(path)
            .upstream("openai", &fake.base_url())
            .force_mode(Mode::Off)
            .start()
            .unwrap_or_else(|e| panic!("off must start: {e}"))
    };
    let outcome = |base: String, prompt: &'static str| async move {
        let response = reqwest::Client::new()
            .post(format!("{base}/chat/completions"))
            .json(&json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": prompt}]}))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let header = response.headers().get(traceforge::OUTCOME_HEADER).and_then(|v| v.to_str().ok());
        (response.status().as_u16(), header.unwrap_or_default().to_owned())
    };

    // No cassette: the call is forwarded, and no file or directory appears.
    let rec = off(&dir.path().join("never").join("absent.json"));
    assert_eq!(outcome(rec.url("openai"), "original").await, (200, "passthrough".to_owned()));
    let report = rec.finish().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((report.passed_through, report.recorded, report.hits, report.saved), (1, 0, 0, false));
    assert_eq!(std::fs::read_dir(dir.path()).map(|d| d.count()).ok(), Some(0), "off created a file");

    // A cassette that holds this very request is not replayed from, nor changed.
    let path = dir.path().join("kept.json");
    record_original(&path, &fake.base_url()).await;
    // A corrupt one is not even read.
    let corrupt = dir.path().join("corrupt.json");
    std::fs::write(&corrupt, "{ not a cassette").unwrap_or_else(|e| panic!("{e}"));
    let before = snapshot(dir.path());
    let received = fake.received().await;
    for cassette in [&path, &corrupt] {
        let rec = off(cassette);
        for prompt in ["original", "a question never recorded"] {
            assert_eq!(outcome(rec.url("openai"), prompt).await, (200, "passthrough".to_owned()));
        }
        assert_eq!(rec.finish().await.map(|r| (r.passed_through, r.saved)).ok(), Some((2, false)));
    }
    assert_eq!(fake.received().await, received + 4, "off must forward every call");
    assert_eq!(snapshot(dir.path()), before, "off changed the directory");
}
