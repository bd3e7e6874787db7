//! Shared by the CLI test binaries: running the built `traceforge`, a `serve` child process
//! read like a script would, and cassettes made with the library against a real fake upstream.
#![allow(dead_code)] // each test binary uses a different part of this module

/// The fake upstreams of the workspace's own tests, shared rather than copied: the streaming
/// one on hyper, and the wiremock one whose embedding function it reuses.
#[path = "../../../tests/support/fake_llm.rs"]
pub mod fake_llm;
#[path = "../../../tests/support/fake_openai.rs"]
pub mod fake_openai;

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use traceforge::{Mode, Recorder, Report};

/// Long enough for a loaded 2-core machine; nothing waits this long when things work.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A finished `traceforge` run.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// The built binary, with an environment that cannot change its behaviour behind the test's back.
pub fn traceforge() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_traceforge"));
    for name in ["TRACEFORGE_VCR_MODE", "CI", "NO_COLOR", "CARGO_TARGET_DIR", "TRACEFORGE_MATCH_STRATEGY"] {
        command.env_remove(name);
    }
    command
}

/// Runs `traceforge ARGS` to completion.
pub fn run(args: &[&str]) -> Run {
    let output = traceforge().args(args).output().unwrap_or_else(|e| panic!("cannot run traceforge: {e}"));
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

pub fn path_arg(path: &Path) -> String {
    path.display().to_string()
}

pub fn scratch() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|e| panic!("cannot create a temp dir: {e}"))
}

/// A chat completion request body.
pub fn chat(prompt: &str, stream: bool) -> Value {
    json!({"model": "gpt-4o-mini", "stream": stream, "messages": [{"role": "user", "content": prompt}]})
}

/// Posts a chat completion to `base` (an OpenAI base URL) and returns the status and body text.
pub async fn post_chat(base: &str, prompt: &str, stream: bool) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(format!("{base}/chat/completions"))
        .bearer_auth("sk-proj-testkeyabcdefghijklmnopqrstuvwxyz012345")
        .json(&chat(prompt, stream))
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {base}/chat/completions: {e}"));
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_else(|e| panic!("reading the body: {e}")))
}

/// Records `calls` (prompt, streamed) into `cassette` through the library's recorder.
pub async fn record(cassette: &Path, upstream: &str, calls: &[(&str, bool)]) {
    let recorder = Recorder::builder()
        .cassette(cassette)
        .upstream("openai", upstream)
        .force_mode(Mode::Record)
        .start()
        .unwrap_or_else(|e| panic!("{e}"));
    for (prompt, stream) in calls {
        assert_eq!(post_chat(&recorder.url("openai"), prompt, *stream).await.0, 200);
    }
    let report = recorder.finish().await.unwrap_or_else(|e| panic!("recording {}: {e}", cassette.display()));
    assert!(report.saved, "{} was not saved", cassette.display());
}

/// A strict run over `cassette` making `calls`, with its usage record in `target_dir`. It is
/// named after the running test, as `#[traceforge::cassette]` names it (libtest's name).
pub async fn strict_run(cassette: &Path, target_dir: &Path, calls: &[(&str, bool)]) -> traceforge::Result<Report> {
    let mut builder = Recorder::builder()
        .cassette(cassette)
        .upstream("openai", "http://127.0.0.1:9/v1")
        .force_mode(Mode::Strict)
        .target_dir(target_dir);
    if let Some(test) = std::thread::current().name() {
        builder = builder.test_name(test);
    }
    let recorder = builder.start()?;
    for (prompt, stream) in calls {
        post_chat(&recorder.url("openai"), prompt, *stream).await;
    }
    recorder.finish().await
}

/// A running `traceforge serve`, started and read the way a script would.
pub struct Served {
    child: Child,
    /// `NAME: URL` lines of the banner, by name (`openai`, `health`, `metrics`...).
    pub urls: BTreeMap<String, String>,
    /// `http://127.0.0.1:PORT`, from the `listening on` line.
    pub base_url: String,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Served {
    /// Starts `traceforge serve ARGS` and waits for its `listening on` line.
    pub fn start(args: &[String]) -> Served {
        let mut child = traceforge()
            .arg("serve")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start traceforge serve: {e}"));
        let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
        let mut stderr = child.stderr.take().unwrap_or_else(|| panic!("no stderr"));
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        let (lines, received) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let mut urls = BTreeMap::new();
        let deadline = Instant::now() + PATIENCE;
        let base_url = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match received.recv_timeout(left) {
                Ok(line) => line,
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let stderr = stderr.join().unwrap_or_default();
                    panic!("traceforge serve {args:?} printed no `listening on` line; stderr:\n{stderr}");
                }
            };
            if let Some(rest) = line.strip_prefix("listening on ") {
                break rest.split_whitespace().next().unwrap_or_default().to_owned();
            }
            if let Some((name, rest)) = line.split_once(": ") {
                if let Some(url) = rest.split_whitespace().next().filter(|u| u.starts_with("http://")) {
                    urls.insert(name.to_owned(), url.to_owned());
                }
            }
        };
        Served { child, urls, base_url, stderr: Some(stderr) }
    }

    /// The URL printed for `name`.
    pub fn url(&self, name: &str) -> String {
        self.urls.get(name).cloned().unwrap_or_else(|| panic!("no `{name}:` line in {:?}", self.urls))
    }

    /// Sends `signal` (`TERM`, `INT`) and waits for the exit.
    pub fn stop(self, signal: &str) -> Run {
        self.stop_with(&[signal])
    }

    /// Sends `signals` one after the other, and waits for the exit.
    pub fn stop_with(mut self, signals: &[&str]) -> Run {
        let pid = self.child.id().to_string();
        for signal in signals {
            let sent = Command::new("kill").args([&format!("-{signal}"), &pid]).status();
            assert!(sent.is_ok_and(|s| s.success()), "kill -{signal} {pid} failed");
        }
        let signal = signals.join(" then ");
        let deadline = Instant::now() + PATIENCE;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                _ => {
                    let _ = self.child.kill();
                    panic!("traceforge serve did not exit after SIG{signal}");
                }
            }
        };
        let stderr = self.stderr.take().map(|t| t.join().unwrap_or_default()).unwrap_or_default();
        Run { code: status.code(), stdout: String::new(), stderr }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        // A failed assertion must not leave the server running.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `GET url`, as text.
pub async fn get(url: &str) -> (u16, String) {
    let response = reqwest::get(url).await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

/// The value of an unlabelled or labelled sample in Prometheus text, e.g.
/// `traceforge_hits_total` or `traceforge_upstream_latency_seconds_count{upstream="openai"}`.
pub fn metric(text: &str, sample: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(sample)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The cassette's file name with `.json`, in `dir`.
pub fn cassette(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.json"))
}
