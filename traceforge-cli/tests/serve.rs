//! `traceforge serve` as a separate process, driven like tests in another language would:
//! by the real Python openai SDK (`TRACEFORGE_TEST_PYTHON`, set up by `scripts/provision`) and by
//! a raw HTTP client, recording against a fake upstream on loopback, then replaying strictly
//! with the upstream gone; and one cassette format shared with the Rust recorder both ways.

mod common;

use std::path::Path;
use std::process::Command;

use common::fake_llm::{answer_for, FakeLlm};
use common::{cassette, get, metric, path_arg, post_chat, record, run, scratch, strict_run, Served};
use serde_json::Value;
use traceforge::cassette::{storage, Body, CassetteFile};
use traceforge::{redact, Mode, Recorder};

const API_KEY: &str = "sk-proj-pythonsdkkeyabcdefghijklmnopqrstuvwxyz0123";
const PROMPT: &str = "What is the capital of France?";
const STREAMED_PROMPT: &str = "Please count to ten.";

/// The provisioned Python with the openai SDK. Missing is a failure, never a skip.
fn python() -> String {
    match std::env::var("TRACEFORGE_TEST_PYTHON") {
        Ok(python) if Path::new(&python).is_file() => python,
        other => panic!(
            "the Python openai SDK is not provisioned (TRACEFORGE_TEST_PYTHON = {other:?}): run `scripts/provision` in the workspace root, which installs it into target/traceforge-assets/python"
        ),
    }
}

/// Runs the Python client against `base_url` and returns what it printed.
fn python_client(base_url: &str, prompt: &str) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/openai_chat.py");
    let output = Command::new(python())
        .arg(script)
        .args([base_url, API_KEY, prompt, STREAMED_PROMPT])
        .env_remove("OPENAI_BASE_URL")
        .env_remove("OPENAI_API_KEY")
        .output()
        .unwrap_or_else(|e| panic!("cannot run the Python client: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the Python client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("the Python client printed no JSON ({e}): {stdout}"))
}

fn serve_args(mode: &str, cassette: &Path, target: &Path, upstream: Option<&str>) -> Vec<String> {
    let mut args = vec![
        "--mode".to_owned(),
        mode.to_owned(),
        "--cassette".to_owned(),
        path_arg(cassette),
        "--port".to_owned(),
        "0".to_owned(),
        "--target-dir".to_owned(),
        path_arg(target),
    ];
    if let Some(url) = upstream {
        args.extend(["--upstream".to_owned(), format!("openai={url}")]);
    }
    args
}

#[tokio::test]
async fn the_python_sdk_records_through_serve_then_replays_strictly_with_the_upstream_gone() {
    let dir = scratch();
    let (path, target) = (cassette(dir.path(), "python"), dir.path().join("target"));
    let fake = FakeLlm::start();

    let served = Served::start(&serve_args("record", &path, &target, Some(&fake.openai_url())));
    let recorded = python_client(&served.url("openai"), PROMPT);
    assert_eq!(recorded["text"], answer_for(PROMPT), "{recorded}");
    assert_eq!((recorded["outcome"].as_str(), recorded["finish_reason"].as_str()), (Some("recorded"), Some("stop")));
    assert_eq!(recorded["stream_text"], answer_for(STREAMED_PROMPT), "{recorded}");
    assert!(recorded["stream_chunks"].as_u64().is_some_and(|n| n > 1), "the stream came in one piece: {recorded}");
    let (status, metrics) = get(&served.url("metrics")).await;
    assert_eq!(status, 200);
    assert_eq!(metric(&metrics, "traceforge_recorded_total"), Some(2.0), "{metrics}");
    assert_eq!(metric(&metrics, "traceforge_upstream_latency_seconds_count{upstream=\"openai\"}"), Some(2.0));
    assert_eq!(
        metric(&metrics, "traceforge_upstream_latency_seconds_bucket{upstream=\"openai\",le=\"+Inf\"}"),
        Some(2.0)
    );
    let stopped = served.stop("TERM");
    assert_eq!(stopped.code, Some(0), "{}", stopped.stderr);
    assert!(stopped.stderr.contains("saved"), "{}", stopped.stderr);
    assert_eq!(fake.received(), 2);
    drop(fake);

    // Saved on SIGTERM, without the SDK's `Authorization: Bearer sk-…` anywhere.
    let text = String::from_utf8(std::fs::read(&path).unwrap_or_default()).unwrap_or_default();
    assert!(!text.contains(API_KEY) && !text.contains("Bearer"), "a secret reached the cassette");
    let file = storage::load(&path).unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|| panic!("no cassette saved"));
    let (value, _) = storage::to_pretty_json(&file).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(redact::scan(&value, &[]), vec![]);
    assert_eq!(file.interactions.len(), 2);
    assert!(
        file.interactions.iter().any(|i| matches!(i.responses[0].body, Body::Sse { .. })),
        "the stream was not stored as events"
    );

    // Strict, with the upstream gone: the same answers, event by event.
    let served = Served::start(&serve_args("strict", &path, &target, None));
    let replayed = python_client(&served.url("openai"), PROMPT);
    assert_eq!(replayed["outcome"], "hit");
    for field in ["text", "finish_reason", "stream_text", "stream_chunks"] {
        assert_eq!(replayed[field], recorded[field], "{field} differs on replay");
    }
    let (_, metrics) = get(&served.url("metrics")).await;
    assert_eq!(
        (metric(&metrics, "traceforge_hits_total"), metric(&metrics, "traceforge_misses_total")),
        (Some(2.0), Some(0.0))
    );
    let stopped = served.stop("TERM");
    assert_eq!(stopped.code, Some(0), "a clean strict run exits 0: {}", stopped.stderr);
    assert_eq!(std::fs::read_to_string(&path).unwrap_or_default(), text, "strict wrote the cassette");

    // A question the cassette does not hold: the SDK sees a 404 at once, serve exits 1 with the diff.
    let served = Served::start(&serve_args("strict", &path, &target, None));
    let missed = python_client(&served.url("openai"), "What is the capital of Italy?");
    assert_eq!(
        (missed["error_status"].as_u64(), missed["error_code"].as_str()),
        (Some(404), Some("traceforge_cassette_miss"))
    );
    let stopped = served.stop("INT");
    assert_eq!(stopped.code, Some(1), "{}", stopped.stderr);
    assert!(
        stopped.stderr.contains("had no recording") && stopped.stderr.contains("capital of Italy"),
        "{}",
        stopped.stderr
    );
    assert!(stopped.stderr.contains("were not used"), "{}", stopped.stderr);
    assert!(stopped.stderr.contains("traceforge serve --mode record"), "{}", stopped.stderr);
}

#[tokio::test]
async fn a_raw_http_client_records_and_the_control_endpoints_answer() {
    let dir = scratch();
    let (path, target) = (cassette(dir.path(), "raw"), dir.path().join("target"));
    let fake = FakeLlm::start();
    let served = Served::start(&serve_args("record", &path, &target, Some(&fake.openai_url())));
    assert!(served.base_url.starts_with("http://127.0.0.1:"), "{}", served.base_url);
    assert_eq!(served.url("openai"), format!("{}/openai", served.base_url));

    let (status, health) = get(&served.url("health")).await;
    assert_eq!(status, 200);
    let health: Value = serde_json::from_str(&health).unwrap_or_default();
    assert_eq!((health["status"].as_str(), health["mode"].as_str()), (Some("ok"), Some("record")));
    let (status, body) = post_chat(&served.url("openai"), PROMPT, false).await;
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap_or_default();
    assert_eq!(body["choices"][0]["message"]["content"], answer_for(PROMPT));
    let (status, streamed) = post_chat(&served.url("openai"), STREAMED_PROMPT, true).await;
    assert_eq!(status, 200);
    assert!(streamed.contains("data: [DONE]"), "{streamed}");
    let (status, unknown) = get(&format!("{}/nowhere/x", served.base_url)).await;
    assert_eq!(status, 404);
    assert!(unknown.contains("no upstream named `nowhere`"), "{unknown}");
    let (status, metrics) = get(&served.url("metrics")).await;
    assert_eq!(status, 200);
    assert!(metrics.contains("# TYPE traceforge_upstream_latency_seconds histogram"), "{metrics}");
    assert_eq!(metric(&metrics, "traceforge_info{mode=\"record\"}"), Some(1.0), "{metrics}");
    assert_eq!(metric(&metrics, "traceforge_recorded_total"), Some(2.0), "{metrics}");
    let stopped = served.stop("INT");
    assert_eq!(stopped.code, Some(0), "{}", stopped.stderr);
    assert_eq!(storage::load(&path).ok().flatten().map(|f| f.interactions.len()), Some(2), "not saved on SIGINT");

    // Loopback only, unless asked; a taken port is a clear error.
    let refused = run(&["serve", "--cassette", &path_arg(&path), "--host", "0.0.0.0", "--mode", "strict"]);
    assert_eq!(refused.code, Some(2), "{refused:?}");
    assert!(
        refused.stderr.contains("refusing to listen on 0.0.0.0") && refused.stderr.contains("--allow-remote"),
        "{}",
        refused.stderr
    );
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let port = taken.local_addr().map(|a| a.port()).unwrap_or_default().to_string();
    let busy = run(&["serve", "--cassette", &path_arg(&path), "--port", &port, "--mode", "strict"]);
    assert_eq!(busy.code, Some(2), "{busy:?}");
    assert!(
        busy.stderr.contains(&format!("127.0.0.1:{port}")) && busy.stderr.contains("Choose another --port"),
        "{}",
        busy.stderr
    );
    let bad_upstream = run(&["serve", "--cassette", &path_arg(&path), "--upstream", "openai"]);
    assert_eq!(bad_upstream.code, Some(2));
    assert!(bad_upstream.stderr.contains("NAME=URL"), "{}", bad_upstream.stderr);
}

#[tokio::test]
async fn one_format_a_rust_recording_replays_through_serve_and_a_serve_recording_through_rust() {
    let dir = scratch();
    let target = dir.path().join("target");
    let calls = [(PROMPT, false), (STREAMED_PROMPT, true)];

    // The committed cassette that `#[traceforge::cassette]` recorded in tests/attribute.rs,
    // replayed through serve with the request that test makes.
    let attribute = Path::new(env!("CARGO_MANIFEST_DIR")).join("../cassettes/attribute/answers_in_french.json");
    let served = Served::start(&serve_args("strict", &attribute, &target, None));
    let response = reqwest::Client::new()
        .post(format!("{}/chat/completions", served.url("openai")))
        .json(&serde_json::json!({"model": "gpt-4o-mini", "temperature": 0.0,
            "messages": [{"role": "user", "content": "What is the capital of France? Answer in French."}]}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.headers().get("x-traceforge").and_then(|v| v.to_str().ok()), Some("hit"));
    let body: Value = response.json().await.unwrap_or_default();
    assert_eq!(body["choices"][0]["message"]["content"], "La capitale de la France est Paris.");
    let stopped = served.stop("TERM");
    assert_eq!(stopped.code, Some(0), "{}", stopped.stderr);

    // Recorded by the Rust recorder (builder), replayed by serve in strict.
    let fake = FakeLlm::start();
    let from_rust = cassette(dir.path(), "from_rust");
    record(&from_rust, &fake.openai_url(), &calls).await;
    let mut live = Vec::new();
    for (prompt, stream) in calls {
        live.push(post_chat(&fake.openai_url(), prompt, stream).await);
    }
    let served = Served::start(&serve_args("strict", &from_rust, &target, None));
    for ((prompt, stream), expected) in calls.iter().zip(&live) {
        assert_eq!(&post_chat(&served.url("openai"), prompt, *stream).await, expected, "{prompt}");
    }
    let stopped = served.stop("TERM");
    assert_eq!(stopped.code, Some(0), "{}", stopped.stderr);

    // Recorded by serve, replayed by the Rust recorder in strict.
    let from_serve = cassette(dir.path(), "from_serve");
    let served = Served::start(&serve_args("record", &from_serve, &target, Some(&fake.openai_url())));
    for (prompt, stream) in calls {
        assert_eq!(post_chat(&served.url("openai"), prompt, stream).await.0, 200);
    }
    assert_eq!(served.stop("TERM").code, Some(0));
    drop(fake);
    let recorder = Recorder::builder()
        .cassette(&from_serve)
        .upstream("openai", "http://127.0.0.1:9/v1")
        .force_mode(Mode::Strict)
        .target_dir(&target)
        .start()
        .unwrap_or_else(|e| panic!("{e}"));
    for ((prompt, stream), expected) in calls.iter().zip(&live) {
        assert_eq!(&post_chat(&recorder.url("openai"), prompt, *stream).await, expected, "{prompt}");
    }
    let texts: Vec<String> = recorder.answers().into_iter().map(|a| a.text).collect();
    assert_eq!(texts, [answer_for(PROMPT), answer_for(STREAMED_PROMPT)]);
    let report = recorder.finish().await.unwrap_or_else(|e| panic!("strict replay of a serve recording: {e}"));
    assert_eq!((report.hits, report.misses), (2, 0));
    // Both recorders wrote the same cassette for the same calls.
    assert_eq!(std::fs::read(&from_serve).ok(), std::fs::read(&from_rust).ok());
    strict_run(&from_rust, &target, &calls).await.unwrap_or_else(|e| panic!("{e}"));
}

/// Records a slow stream through `serve` in record mode and sends `signals` while it is still
/// coming (the fake pauses 150 ms before each event after the first, so serve is still
/// finishing when they arrive). Returns how serve exited, the body the client read, and the
/// cassette as saved.
async fn signal_during_a_stream(dir: &Path, signals: &'static [&'static str]) -> (common::Run, String, CassetteFile) {
    let (path, target) = (cassette(dir, "in_flight"), dir.join("target"));
    let fake = FakeLlm::start();
    let served = Served::start(&serve_args("record", &path, &target, Some(&fake.openai_url())));
    let mut response = reqwest::Client::new()
        .post(format!("{}/chat/completions", served.url("openai")))
        .header("x-fake-delay-ms", "150")
        .json(&common::chat(STREAMED_PROMPT, true))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status().as_u16(), 200);
    let first = response.chunk().await.unwrap_or_else(|e| panic!("{e}")).unwrap_or_default();
    assert!(!first.is_empty());
    let stopping = tokio::task::spawn_blocking(move || served.stop_with(signals));
    let mut body = String::from_utf8_lossy(&first).into_owned();
    while let Some(chunk) =
        response.chunk().await.unwrap_or_else(|e| panic!("the stream broke off at {signals:?}: {e}"))
    {
        body.push_str(&String::from_utf8_lossy(&chunk));
    }
    let stopped = stopping.await.unwrap_or_else(|e| panic!("{e}"));
    let file = storage::load(&path)
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("not saved after {signals:?}: {}", stopped.stderr));
    (stopped, body, file)
}

#[tokio::test]
async fn sigterm_lets_a_stream_in_flight_finish_then_saves_it() {
    let dir = scratch();
    let (stopped, body, file) = signal_during_a_stream(dir.path(), &["TERM"]).await;
    assert!(body.trim_end().ends_with("data: [DONE]"), "the stream did not finish:\n{body}");
    assert_eq!(stopped.code, Some(0), "{}", stopped.stderr);
    assert!(stopped.stderr.contains("SIGTERM") && stopped.stderr.contains("saved"), "{}", stopped.stderr);
    let answer = traceforge::Answer::from_body(&file.interactions[0].responses[0].body).unwrap_or_default();
    assert_eq!((answer.text, answer.complete), (answer_for(STREAMED_PROMPT), true));
}

#[tokio::test]
async fn ctrl_c_then_a_test_runners_sigterm_still_saves() {
    let dir = scratch();
    // Ctrl-C reaches the whole process group; then pytest's fixture calls `terminate()`.
    let (stopped, body, file) = signal_during_a_stream(dir.path(), &["INT", "TERM"]).await;
    assert!(body.trim_end().ends_with("data: [DONE]"), "the stream did not finish:\n{body}");
    assert_eq!(stopped.code, Some(0), "{}", stopped.stderr);
    assert!(stopped.stderr.contains("SIGINT: no new connections"), "{}", stopped.stderr);
    assert!(stopped.stderr.contains("SIGTERM while finishing: ignored"), "{}", stopped.stderr);
    assert!(stopped.stderr.contains("saved"), "{}", stopped.stderr);
    assert_eq!(file.interactions.len(), 1);
}

#[tokio::test]
async fn without_target_dir_serve_writes_its_usage_record_where_check_reads_it() {
    let fake = FakeLlm::start();
    // A Python project in a git repository (no Cargo project around it), its cassettes nested.
    let repo = scratch();
    std::fs::create_dir_all(repo.path().join(".git")).unwrap_or_else(|e| panic!("{e}"));
    let nested = cassette(&repo.path().join("cassettes/python"), "suite");
    // And a bare folder with the cassette at its top.
    let bare = scratch();
    let top = cassette(bare.path(), "suite");
    for (path, checked_dir) in [(&nested, repo.path().join("cassettes")), (&top, bare.path().to_path_buf())] {
        record(path, &fake.openai_url(), &[(PROMPT, false)]).await;
        let served =
            Served::start(&["--mode".to_owned(), "strict".to_owned(), "--cassette".to_owned(), path_arg(path)]);
        assert_eq!(post_chat(&served.url("openai"), PROMPT, false).await.0, 200);
        let stopped = served.stop("TERM");
        assert_eq!(stopped.code, Some(0), "{}", stopped.stderr);

        let checked = run(&["check", &path_arg(&checked_dir), "--format", "json"]);
        assert_eq!(checked.code, Some(0), "{checked:?}");
        let document: Value = serde_json::from_str(&checked.stdout).unwrap_or_default();
        assert_eq!(document["usage_checked"], true, "check did not find serve's record: {}", checked.stdout);
        // The target directory serve made is no cassette directory: only the cassette is checked.
        assert_eq!(document["summary"]["cassettes"], 1, "{}", checked.stdout);
        assert_eq!(document["cassettes"][0]["status"], "ok", "{}", checked.stdout);
    }
}

#[tokio::test]
async fn one_refused_upstream_call_keeps_the_rest_of_a_serve_session_and_exits_1() {
    let dir = scratch();
    let (path, target) = (cassette(dir.path(), "session"), dir.path().join("target"));
    let fake = FakeLlm::start();
    let refused = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("{e}"));
    let mut args = serve_args("record", &path, &target, Some(&fake.openai_url()));
    args.extend(["--upstream".to_owned(), format!("refused=http://127.0.0.1:{refused}/v1")]);
    let served = Served::start(&args);
    assert_eq!(post_chat(&served.url("openai"), PROMPT, false).await.0, 200);
    assert_eq!(post_chat(&served.url("refused"), PROMPT, false).await.0, 502);
    let stopped = served.stop("TERM");
    assert_eq!(stopped.code, Some(1), "an upstream failure must fail the session: {}", stopped.stderr);
    assert!(stopped.stderr.contains("1 upstream call(s) failed"), "{}", stopped.stderr);
    assert!(
        stopped.stderr.contains(&format!("saved {} with the calls that succeeded", path.display())),
        "{}",
        stopped.stderr
    );
    let file = storage::load(&path).unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|| panic!("nothing saved"));
    assert_eq!(file.interactions.len(), 1);
    assert_eq!(file.interactions[0].request.upstream, "openai");
}
