//! Spine benchmarks for traceforge, hand-rolled (no criterion): warm-up, many iterations,
//! median and p90, on loopback, in one run.
//!
//! 1. Replay latency of one chat completion through the recorder in strict mode, against a bare
//!    hyper 1.x server returning the same bytes. Target: recorder <= 1.5x bare hyper. Measured
//!    twice: with the client and both server threads pinned to one CPU (`taskset`; this pass
//!    decides the target) and unpinned, where on a small VM the latency mostly depends on which
//!    vCPU the scheduler puts each thread on (a cross-vCPU wake-up costs ~50-100 µs there).
//! 2. Per-test overhead: start a recorder on a 50-interaction cassette and finish it, against
//!    starting a wiremock server, mounting 50 equivalent mocks and dropping it. Target: <= 1x.
//! 3. Cassette load time (`storage::load`) for 1,000 and 10,000 interactions.
//!    Targets: 10,000 in <= 100 ms, and 10k / 1k <= 12.
//!
//! Run with `cargo bench -p traceforge --bench spine`. It only prints: a missed target is
//! reported, never turned into a failure, since timings depend on the machine. Set
//! `SPINE_ONLY=replay|overhead|load` to run one section (e.g. under a profiler).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Display;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use traceforge::cassette::canonical::{request_key, sorted};
use traceforge::cassette::storage::{self, to_pretty_json, write_atomically};
use traceforge::cassette::{Body, CassetteFile, Interaction, Json, RecordedRequest, RecordedResponse, FORMAT_VERSION};
use traceforge::{Mode, Recorder};
use wiremock::matchers::{body_json, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A base URL where nothing listens: replay runs must never reach an upstream.
const NOWHERE: &str = "http://127.0.0.1:9/v1";

/// Size of the user prompt in every chat request.
const PROMPT_BYTES: usize = 300;
/// Size (compact JSON) of the replayed chat completion in sections 1 and 2.
const REPLAY_RESPONSE_BYTES: usize = 2048;
/// Size (compact JSON) of each response in the load-time cassettes of section 3.
const LOAD_RESPONSE_BYTES: usize = 1024;

const REPLAY_WARMUP: usize = 1_000;
const REPLAY_ROUNDS: usize = 20;
const REPLAY_BATCH: usize = 400;

const OVERHEAD_INTERACTIONS: usize = 50;
const OVERHEAD_WARMUP: usize = 30;
const OVERHEAD_ITERS: usize = 300;
const FULL_RUN_WARMUP: usize = 5;
const FULL_RUN_ITERS: usize = 150;

const LOAD_SMALL: usize = 1_000;
const LOAD_LARGE: usize = 10_000;
const LOAD_SMALL_ITERS: usize = 40;
const LOAD_LARGE_ITERS: usize = 15;
const BREAKDOWN_ITERS: usize = 5;

fn ok<T, E: Display>(result: Result<T, E>, what: &str) -> T {
    match result {
        Ok(value) => value,
        Err(error) => panic!("{what}: {error}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Statistics and output
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy)]
struct Stats {
    n: usize,
    median: Duration,
    p90: Duration,
}

fn stats(samples: &[Duration]) -> Stats {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    if sorted.is_empty() {
        return Stats { n: 0, median: Duration::ZERO, p90: Duration::ZERO };
    }
    // Nearest-rank percentiles.
    let at = |p: f64| sorted[((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1];
    Stats { n: sorted.len(), median: at(0.5), p90: at(0.9) }
}

fn human(duration: Duration) -> String {
    let micros = duration.as_secs_f64() * 1e6;
    if micros < 1_000.0 {
        format!("{micros:.1} µs")
    } else if micros < 1_000_000.0 {
        format!("{:.2} ms", micros / 1_000.0)
    } else {
        format!("{:.2} s", micros / 1_000_000.0)
    }
}

fn heading(title: &str) {
    println!();
    println!("{title}");
    println!("  {:<58} {:>6} {:>11} {:>11}", "", "n", "median", "p90");
}

fn row(label: &str, stats: &Stats) {
    println!("  {label:<58} {:>6} {:>11} {:>11}", stats.n, human(stats.median), human(stats.p90));
}

fn note(text: &str) {
    println!("    {text}");
}

/// Prints `num / den` for the median and p90, and whether the median ratio meets `target`.
fn ratio_row(label: &str, num: &Stats, den: &Stats, target: f64) -> Verdict {
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(f64::MIN_POSITIVE);
    let median = ratio(num.median, den.median);
    let p90 = ratio(num.p90, den.p90);
    let met = median <= target;
    println!(
        "  {label:<58} {:>6} {:>10.2}x {:>10.2}x   target <= {target}x (median): {}",
        "",
        median,
        p90,
        if met { "MET" } else { "MISSED" }
    );
    Verdict { what: label.trim().to_owned(), value: format!("{median:.2}x"), target: format!("<= {target}x"), met }
}

struct Verdict {
    what: String,
    value: String,
    target: String,
    met: bool,
}

fn bytes_human(bytes: usize) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
    } else if bytes >= 1 << 10 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{bytes} B")
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| text.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// CPU time a thread of this process has run so far (Linux schedstat, in ns), by thread id;
/// `None` elsewhere. Unlike latency, it barely moves when the machine is busy.
fn thread_cpu(tid: Option<&str>) -> Option<Duration> {
    schedstat(&Path::new("/proc/self/task").join(tid?).join("schedstat"))
}

/// The ids of this process's threads whose name starts with `name_prefix`.
fn thread_ids(name_prefix: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc/self/task") else { return Vec::new() };
    entries
        .flatten()
        .filter(|entry| {
            std::fs::read_to_string(entry.path().join("comm"))
                .is_ok_and(|name| name.trim_end().starts_with(name_prefix))
        })
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect()
}

/// The id of the first thread of this process whose name starts with `name_prefix`.
fn thread_id(name_prefix: &str) -> Option<String> {
    thread_ids(name_prefix).into_iter().next()
}

/// [`thread_id`], waiting a little for a thread that has just been spawned to name itself.
fn wait_for_thread(name_prefix: &str) -> Option<String> {
    for _ in 0..200 {
        if let Some(tid) = thread_id(name_prefix) {
            return Some(tid);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

/// The CPUs this thread may run on, e.g. `0-1`.
fn allowed_cpus() -> Option<String> {
    let status = std::fs::read_to_string("/proc/thread-self/status").ok()?;
    status.lines().find_map(|line| line.strip_prefix("Cpus_allowed_list:")).map(|list| list.trim().to_owned())
}

fn taskset_works() -> bool {
    std::process::Command::new("taskset")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Pins one thread to `cpus` (a taskset list). std has no affinity API, and the bench adds no
/// dependency for it.
fn pin(tid: &str, cpus: &str) -> bool {
    std::process::Command::new("taskset")
        .args(["-p", "-c", cpus, tid])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

fn own_cpu() -> Option<Duration> {
    schedstat(Path::new("/proc/thread-self/schedstat"))
}

fn schedstat(path: &Path) -> Option<Duration> {
    let text = std::fs::read_to_string(path).ok()?;
    text.split_whitespace().next()?.parse().ok().map(Duration::from_nanos)
}

// ---------------------------------------------------------------------------------------------
// Realistic content
// ---------------------------------------------------------------------------------------------

const WORDS: [&str; 48] = [
    "the",
    "model",
    "should",
    "summarise",
    "this",
    "incident",
    "report",
    "for",
    "an",
    "on-call",
    "engineer",
    "who",
    "needs",
    "to",
    "know",
    "which",
    "service",
    "failed",
    "first",
    "and",
    "why",
    "latency",
    "rose",
    "after",
    "deploy",
    "of",
    "version",
    "with",
    "retries",
    "timeouts",
    "database",
    "connection",
    "pool",
    "exhausted",
    "queue",
    "backlog",
    "grew",
    "customers",
    "saw",
    "errors",
    "in",
    "checkout",
    "region",
    "rollback",
    "fixed",
    "it",
    "within",
    "minutes",
];

struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
}

/// Deterministic English-looking ASCII text of exactly `len` bytes.
fn prose(seed: u64, len: usize) -> String {
    let mut rng = Lcg(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03);
    let mut text = String::with_capacity(len + 16);
    while text.len() < len {
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(WORDS[(rng.next() % WORDS.len() as u64) as usize]);
    }
    text.truncate(len);
    text
}

/// A chat-completion request whose user prompt is `prompt_bytes` long and unique per `seed`.
fn chat_request(seed: u64, prompt_bytes: usize) -> Value {
    let prefix = format!("Ticket #{seed}: ");
    let prompt = format!("{prefix}{}", prose(seed, prompt_bytes.saturating_sub(prefix.len())));
    json!({
        "model": "gpt-4o-mini",
        "temperature": 0.2,
        "max_tokens": 512,
        "messages": [
            {"role": "system", "content": "You are a concise assistant for an incident-review tool."},
            {"role": "user", "content": prompt}
        ]
    })
}

/// A chat completion in OpenAI's shape whose compact JSON is `target_bytes` long.
fn chat_response(seed: u64, target_bytes: usize) -> Value {
    let build = |content: String| {
        json!({
            "id": format!("chatcmpl-{:024x}", u128::from(seed).wrapping_mul(0x2545_F491_4F6C_DD1D)),
            "object": "chat.completion",
            "created": 1_718_000_000u64 + seed,
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": null, "annotations": []},
                "logprobs": null,
                "finish_reason": "stop"
            }],
            "usage": {
                "prompt_tokens": 87,
                "completion_tokens": 402,
                "total_tokens": 489,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {
                    "reasoning_tokens": 0,
                    "audio_tokens": 0,
                    "accepted_prediction_tokens": 0,
                    "rejected_prediction_tokens": 0
                }
            },
            "service_tier": "default",
            "system_fingerprint": "fp_0ba0d124f1"
        })
    };
    let overhead = ok(serde_json::to_vec(&build(String::new())), "serialize a response").len();
    build(prose(seed ^ 0x5EED, target_bytes.saturating_sub(overhead)))
}

fn recorded_request(body: &Value) -> RecordedRequest {
    RecordedRequest {
        method: "POST".to_owned(),
        upstream: "openai".to_owned(),
        path: "/chat/completions".to_owned(),
        query: BTreeMap::new(),
        headers: BTreeMap::new(),
        body: Body::Json { json: body.clone().into() },
    }
}

fn recorded_response(body: &Value) -> RecordedResponse {
    RecordedResponse {
        status: 200,
        headers: BTreeMap::from([("content-type".to_owned(), "application/json".to_owned())]),
        body: Body::Json { json: body.clone().into() },
    }
}

fn interaction(request: &Value, responses: Vec<RecordedResponse>) -> Interaction {
    let request = recorded_request(request);
    Interaction { key: request_key(&request), request, responses }
}

/// Writes a cassette the way `storage::save` does (sorted, pretty, atomic); returns its size.
fn write_cassette(path: &Path, mut interactions: Vec<Interaction>) -> usize {
    interactions.sort_by(|a, b| a.key.cmp(&b.key));
    let file = CassetteFile { format_version: FORMAT_VERSION, interactions, ..CassetteFile::default() };
    let (_, text) = ok(to_pretty_json(&file), "serialize the cassette");
    ok(write_atomically(path, text.as_bytes()), "write the cassette");
    text.len()
}

fn client() -> reqwest::Client {
    ok(reqwest::Client::builder().no_proxy().build(), "build a reqwest client")
}

async fn post(client: &reqwest::Client, url: &str, body: &Bytes) -> (u16, Bytes) {
    let response = ok(
        client.post(url).header(reqwest::header::CONTENT_TYPE, "application/json").body(body.clone()).send().await,
        "send a request",
    );
    let status = response.status().as_u16();
    (status, ok(response.bytes().await, "read a response body"))
}

/// One request, timed from send to the last byte of the response body.
async fn timed_post(client: &reqwest::Client, url: &str, body: &Bytes, expected_len: usize) -> Duration {
    let started = Instant::now();
    let (status, bytes) = post(client, url, body).await;
    let elapsed = started.elapsed();
    if status != 200 || bytes.len() != expected_len {
        panic!("{url} answered {status} with {} bytes (expected 200 with {expected_len})", bytes.len());
    }
    elapsed
}

// ---------------------------------------------------------------------------------------------
// The bare hyper baseline: http1, on its own thread and current-thread runtime, like the recorder
// ---------------------------------------------------------------------------------------------

struct BareServer {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BareServer {
    fn start(body: Bytes) -> BareServer {
        let listener = ok(std::net::TcpListener::bind("127.0.0.1:0"), "bind the bare server");
        ok(listener.set_nonblocking(true), "make the listener non-blocking");
        let addr = ok(listener.local_addr(), "bare server address");
        let (shutdown, signal) = oneshot::channel();
        let thread = ok(
            std::thread::Builder::new().name("bare-hyper".to_owned()).spawn(move || {
                let runtime = ok(tokio::runtime::Builder::new_current_thread().enable_all().build(), "bare runtime");
                runtime.block_on(serve_bare(listener, body, signal));
            }),
            "spawn the bare server thread",
        );
        BareServer { addr, shutdown: Some(shutdown), thread: Some(thread) }
    }
}

impl Drop for BareServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve_bare(listener: std::net::TcpListener, body: Bytes, mut shutdown: oneshot::Receiver<()>) {
    let listener = ok(tokio::net::TcpListener::from_std(listener), "bare listener");
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let body = body.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let body = body.clone();
                        async move {
                            // Read the request like any real server would.
                            let _ = request.into_body().collect().await;
                            let mut response = Response::new(Full::new(body));
                            response
                                .headers_mut()
                                .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Replay latency
// ---------------------------------------------------------------------------------------------

/// The latencies and CPU use of one pass over both servers.
struct ReplayPass {
    /// Per request, bare hyper then recorder.
    samples: [Vec<Duration>; 2],
    /// CPU time of each server's thread, and of the client's, per target (None off Linux).
    server_cpu: [Option<Duration>; 2],
    client_cpu: [Option<Duration>; 2],
}

struct ReplayInput {
    cassette: std::path::PathBuf,
    request_bytes: Bytes,
    response_bytes: Bytes,
    total: usize,
}

/// Starts both servers, optionally pins the client and both server threads to `cpu` (and the
/// client back to `restore` afterwards), and times interleaved batches of requests against each.
async fn replay_pass(input: &ReplayInput, pinning: Option<(&str, &str)>) -> ReplayPass {
    let cpu = pinning.map(|(cpu, _)| cpu);
    let recorder = ok(
        Recorder::builder().cassette(&input.cassette).upstream("openai", NOWHERE).force_mode(Mode::Strict).start(),
        "start the recorder",
    );
    let bare = BareServer::start(input.response_bytes.clone());
    let targets = [
        (format!("http://{}/v1/chat/completions", bare.addr), client()),
        (format!("{}/chat/completions", recorder.url("openai")), client()),
    ];
    let (request_bytes, response_bytes) = (&input.request_bytes, &input.response_bytes);

    // Recorders serve on pooled threads named `traceforge-server` (Linux shows 15 bytes of a
    // name): this recorder's is the one that ran while it answered the first requests.
    let pooled = thread_ids("traceforge-serv");
    let cpu_before: Vec<Option<Duration>> = pooled.iter().map(|tid| thread_cpu(Some(tid))).collect();
    // Both must answer with exactly the same bytes.
    for _ in 0..20 {
        for (url, client) in &targets {
            let (status, body) = post(client, url, request_bytes).await;
            if status != 200 || body != *response_bytes {
                panic!("{url} answered {status} with a different body:\n{}", String::from_utf8_lossy(&body));
            }
        }
    }
    let recorder_thread = pooled
        .iter()
        .zip(cpu_before)
        .filter_map(|(tid, before)| Some((thread_cpu(Some(tid))?.checked_sub(before?)?, tid.clone())))
        .max()
        .map(|(_, tid)| tid);
    let server_threads = [wait_for_thread("bare-hyper"), recorder_thread];
    if let Some(cpu) = cpu {
        let own = std::process::id().to_string();
        let all = [Some(own), server_threads[0].clone(), server_threads[1].clone()];
        for tid in &all {
            if !tid.as_deref().is_some_and(|tid| pin(tid, cpu)) {
                panic!("could not pin thread {tid:?} to CPU {cpu} with taskset");
            }
        }
    }
    for _ in 20..REPLAY_WARMUP {
        for (url, client) in &targets {
            timed_post(client, url, request_bytes, response_bytes.len()).await;
        }
    }
    let mut pass = ReplayPass {
        samples: [Vec::with_capacity(REPLAY_ROUNDS * REPLAY_BATCH), Vec::with_capacity(REPLAY_ROUNDS * REPLAY_BATCH)],
        server_cpu: [Some(Duration::ZERO); 2],
        client_cpu: [Some(Duration::ZERO); 2],
    };
    for round in 0..REPLAY_ROUNDS {
        // Interleaved batches, alternating which goes first, so drift hits both alike.
        for turn in 0..2 {
            let which = if round % 2 == 0 { turn } else { 1 - turn };
            let (url, client) = &targets[which];
            let (server_before, client_before) = (thread_cpu(server_threads[which].as_deref()), own_cpu());
            for _ in 0..REPLAY_BATCH {
                pass.samples[which].push(timed_post(client, url, request_bytes, response_bytes.len()).await);
            }
            let (server_after, client_after) = (thread_cpu(server_threads[which].as_deref()), own_cpu());
            let add = |total: Option<Duration>, before: Option<Duration>, after: Option<Duration>| {
                Some(total? + after?.checked_sub(before?)?)
            };
            pass.server_cpu[which] = add(pass.server_cpu[which], server_before, server_after);
            pass.client_cpu[which] = add(pass.client_cpu[which], client_before, client_after);
        }
    }
    match recorder.finish().await {
        Ok(report) if report.hits == input.total => {}
        Ok(report) => panic!("the recorder replayed {} of {} responses", report.hits, input.total),
        Err(error) => panic!("strict finish failed: {error}"),
    }
    drop(bare);
    if let Some((_, restore)) = pinning {
        pin(&std::process::id().to_string(), restore);
    }
    pass
}

async fn replay_latency(dir: &Path) -> Vec<Verdict> {
    let request = chat_request(1, PROMPT_BYTES);
    let response = sorted(chat_response(1, REPLAY_RESPONSE_BYTES));
    let total = REPLAY_WARMUP + REPLAY_ROUNDS * REPLAY_BATCH;
    let input = ReplayInput {
        cassette: dir.join("replay.json"),
        request_bytes: Bytes::from(ok(serde_json::to_vec(&request), "serialize the request")),
        response_bytes: Bytes::from(ok(serde_json::to_vec(&response), "serialize the response")),
        total,
    };
    // One interaction recorded `total` times: strict replays responses[0], [1], ... in order,
    // and finish() then checks that every one of them was used.
    let responses = (0..total).map(|_| recorded_response(&response)).collect();
    let size = write_cassette(&input.cassette, vec![interaction(&request, responses)]);

    // The process's allowed CPUs before any pinning, e.g. "0-1"; pin to the first of them.
    let allowed = allowed_cpus();
    let first_cpu = allowed.as_deref().and_then(|list| list.split([',', '-']).next()).map(str::to_owned);
    let can_pin = first_cpu.is_some() && thread_id("").is_some() && taskset_works();
    let unpinned = replay_pass(&input, None).await;
    let pinned = match (&first_cpu, &allowed, can_pin) {
        (Some(cpu), Some(allowed), true) => Some(replay_pass(&input, Some((cpu, allowed))).await),
        _ => None,
    };

    heading(&format!(
        "1. Replay latency: one chat completion ({} response body, {} request body), keep-alive reqwest client",
        bytes_human(input.response_bytes.len()),
        bytes_human(input.request_bytes.len())
    ));
    let per_request = |cpu: Option<Duration>| {
        cpu.map_or_else(|| "n/a".to_owned(), |cpu| human(cpu / (REPLAY_ROUNDS * REPLAY_BATCH) as u32))
    };
    let mut verdicts = Vec::new();
    let passes =
        [(&pinned, "client + both servers pinned to one CPU"), (&Some(unpinned), "unpinned (scheduler's placement)")];
    for (index, (pass, title)) in passes.into_iter().enumerate() {
        let Some(pass) = pass else {
            println!("  {title}: skipped (needs Linux and taskset)");
            continue;
        };
        let bare_stats = stats(&pass.samples[0]);
        let recorder_stats = stats(&pass.samples[1]);
        println!("  {title}:");
        row("  bare hyper 1.x (http1, own thread + current-thread rt)", &bare_stats);
        row("  traceforge recorder, strict replay", &recorder_stats);
        let verdict = ratio_row("  ratio recorder / bare hyper", &recorder_stats, &bare_stats, 1.5);
        note(&format!(
            "  recorder adds {} per request at the median; CPU per request: server thread {} bare vs {} recorder, \
             client thread {} vs {}",
            human(recorder_stats.median.saturating_sub(bare_stats.median)),
            per_request(pass.server_cpu[0]),
            per_request(pass.server_cpu[1]),
            per_request(pass.client_cpu[0]),
            per_request(pass.client_cpu[1])
        ));
        // The pinned pass decides the target when there is one: unpinned latency on a small
        // VM is dominated by where the scheduler happens to put the three threads.
        if index == 0 || pinned.is_none() {
            verdicts.push(Verdict {
                what: format!("{} ({})", verdict.what, if index == 0 { "pinned" } else { "unpinned" }),
                ..verdict
            });
        }
    }
    note(&format!(
        "{REPLAY_WARMUP} warm-up requests each, then {REPLAY_ROUNDS} interleaved batches of {REPLAY_BATCH}, per pass; cassette of {} \
         ({total} recorded responses of one request, all consumed: strict finish passed each time)",
        bytes_human(size)
    ));
    note("unpinned, a request whose client thread sleeps and is woken from the other vCPU pays ~50-100 µs here;");
    note("pinned, latency is client CPU + server CPU, which is what the recorder controls.");

    // What the recorder does per request that bare hyper does not, timed in-process with the
    // public equivalents of its steps (handler.rs: canonical_request, request_key, Body::replay).
    let parse = mean_of(|| {
        std::hint::black_box(ok(serde_json::from_slice::<Value>(&input.request_bytes), "parse"));
    });
    let canonical = recorded_request(&request);
    let key = mean_of(|| {
        std::hint::black_box(request_key(std::hint::black_box(&canonical)));
    });
    let replay_hot = mean_of(|| {
        std::hint::black_box(ok(serde_json::to_vec(std::hint::black_box(&response)), "serialize"));
    });
    // As in the server: each stored response body is taken once, from a freshly loaded cassette
    // (Body::replay sends Json::compact, the compact text read at load).
    let loaded = ok(storage::load(&input.cassette), "load the replay cassette");
    let stored: Vec<&Json> = loaded
        .iter()
        .flat_map(|file| &file.interactions)
        .flat_map(|interaction| &interaction.responses)
        .filter_map(|response| match &response.body {
            Body::Json { json } => Some(json),
            _ => None,
        })
        .collect();
    let started = Instant::now();
    for json in &stored {
        std::hint::black_box(json.compact());
    }
    let replay_cold = started.elapsed() / stored.len().max(1) as u32;
    note("in-process cost of the recorder's extra steps (mean per call):");
    note(&format!("  parse the request body to a Value (Body::from_bytes)                {:>10}", human(parse)));
    note(&format!("  request_key (canonical JSON + sha256)                               {:>10}", human(key)));
    note(&format!("  for scale: serialize the response as a Value, hot                   {:>10}", human(replay_hot)));
    note(&format!(
        "  the response bytes of each of the {} loaded responses, as served {:>10}",
        stored.len(),
        human(replay_cold)
    ));
    verdicts
}

fn mean_of(mut f: impl FnMut()) -> Duration {
    for _ in 0..1_000 {
        f();
    }
    let runs = 20_000u32;
    let started = Instant::now();
    for _ in 0..runs {
        f();
    }
    started.elapsed() / runs
}

// ---------------------------------------------------------------------------------------------
// 2. Per-test overhead
// ---------------------------------------------------------------------------------------------

async fn per_test_overhead(dir: &Path) -> Vec<Verdict> {
    let pairs: Vec<(Value, Value)> = (0..OVERHEAD_INTERACTIONS as u64)
        .map(|i| (chat_request(100 + i, PROMPT_BYTES), sorted(chat_response(100 + i, REPLAY_RESPONSE_BYTES))))
        .collect();
    let cassette = dir.join("overhead.json");
    let size = write_cassette(
        &cassette,
        pairs.iter().map(|(request, response)| interaction(request, vec![recorded_response(response)])).collect(),
    );

    let start_recorder = |mode: Mode| {
        ok(
            Recorder::builder().cassette(&cassette).upstream("openai", NOWHERE).force_mode(mode).start(),
            "start the recorder",
        )
    };
    // (a) start + load + finish, no requests, against start + mount 50 + drop.
    let (mut tf_total, mut tf_start, mut tf_finish, mut wm_total) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for iteration in 0..OVERHEAD_WARMUP + OVERHEAD_ITERS {
        let measured = iteration >= OVERHEAD_WARMUP;
        for turn in 0..2 {
            // Back to the scheduler between turns (untimed): wiremock's Drop blocks on a tokio lock,
            // which never wakes once this task has spent its cooperative budget without yielding.
            tokio::task::yield_now().await;
            if (iteration + turn) % 2 == 0 {
                let started = Instant::now();
                let recorder = start_recorder(Mode::Replay);
                let after_start = Instant::now();
                let report = ok(recorder.finish().await, "replay finish");
                let done = Instant::now();
                if report.unused.len() != OVERHEAD_INTERACTIONS {
                    panic!("expected {OVERHEAD_INTERACTIONS} unused interactions, got {}", report.unused.len());
                }
                if measured {
                    tf_total.push(done - started);
                    tf_start.push(after_start - started);
                    tf_finish.push(done - after_start);
                }
            } else {
                let started = Instant::now();
                let server = MockServer::start().await;
                mount_all(&server, &pairs).await;
                drop(server);
                if measured {
                    wm_total.push(started.elapsed());
                }
            }
        }
    }
    // The fixed part: the same recorder with no cassette file to load.
    let missing = dir.join("does-not-exist.json");
    let mut fixed = Vec::new();
    for iteration in 0..OVERHEAD_WARMUP + OVERHEAD_ITERS {
        let started = Instant::now();
        let recorder = ok(
            Recorder::builder().cassette(&missing).upstream("openai", NOWHERE).force_mode(Mode::Replay).start(),
            "start the recorder",
        );
        ok(recorder.finish().await, "finish");
        if iteration >= OVERHEAD_WARMUP {
            fixed.push(started.elapsed());
        }
    }
    let (mut load_50, mut drop_50) = (Vec::new(), Vec::new());
    for iteration in 0..OVERHEAD_WARMUP + OVERHEAD_ITERS {
        let started = Instant::now();
        let file = ok(storage::load(&cassette), "load the cassette");
        let loaded = Instant::now();
        drop(file);
        if iteration >= OVERHEAD_WARMUP {
            load_50.push(loaded - started);
            drop_50.push(loaded.elapsed());
        }
    }

    // (b) a whole passing test: the same plus the 50 requests (strict for traceforge). Each
    // side's overhead is also timed alone, without its 50 calls: start (+ load, or + mount)
    // and the strict finish (or the drop) of a test that passed.
    let request_bodies: Vec<Bytes> =
        pairs.iter().map(|(request, _)| Bytes::from(ok(serde_json::to_vec(request), "serialize"))).collect();
    let response_lens: Vec<usize> =
        pairs.iter().map(|(_, response)| ok(serde_json::to_vec(response), "serialize").len()).collect();
    let (mut tf_full, mut wm_full) = (Vec::new(), Vec::new());
    let (mut tf_strict, mut tf_strict_start, mut tf_strict_finish, mut wm_setup) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for iteration in 0..FULL_RUN_WARMUP + FULL_RUN_ITERS {
        let measured = iteration >= FULL_RUN_WARMUP;
        for turn in 0..2 {
            // Back to the scheduler between turns (untimed): wiremock's Drop blocks on a tokio lock,
            // which never wakes once this task has spent its cooperative budget without yielding.
            tokio::task::yield_now().await;
            // A fresh client per test, as tests do; built before the clock starts.
            let client = client();
            if (iteration + turn) % 2 == 0 {
                let started = Instant::now();
                let recorder = start_recorder(Mode::Strict);
                let after_start = Instant::now();
                let url = format!("{}/chat/completions", recorder.url("openai"));
                for (body, len) in request_bodies.iter().zip(&response_lens) {
                    timed_post(&client, &url, body, *len).await;
                }
                let before_finish = Instant::now();
                let report = ok(recorder.finish().await, "strict finish");
                let done = Instant::now();
                if measured {
                    tf_full.push(done - started);
                    tf_strict.push((after_start - started) + (done - before_finish));
                    tf_strict_start.push(after_start - started);
                    tf_strict_finish.push(done - before_finish);
                }
                if report.hits != OVERHEAD_INTERACTIONS {
                    panic!("expected {OVERHEAD_INTERACTIONS} hits, got {}", report.hits);
                }
            } else {
                let started = Instant::now();
                let server = MockServer::start().await;
                mount_all(&server, &pairs).await;
                let mounted = Instant::now();
                let url = format!("{}/v1/chat/completions", server.uri());
                for (body, len) in request_bodies.iter().zip(&response_lens) {
                    timed_post(&client, &url, body, *len).await;
                }
                let before_drop = Instant::now();
                drop(server);
                let done = Instant::now();
                if measured {
                    wm_full.push(done - started);
                    wm_setup.push((mounted - started) + (done - before_drop));
                }
            }
        }
    }

    let (tf, wm) = (stats(&tf_total), stats(&wm_total));
    heading(&format!(
        "2. Per-test overhead: {OVERHEAD_INTERACTIONS}-interaction cassette ({}), ~2 KiB responses",
        bytes_human(size)
    ));
    let (tf_strict, wm_setup) = (stats(&tf_strict), stats(&wm_setup));
    println!("  a passing test, its {OVERHEAD_INTERACTIONS} calls made but not timed (this decides the target):");
    row("  traceforge strict: start + load, then the strict finish", &tf_strict);
    row("    of which Recorder::builder()...start()", &stats(&tf_strict_start));
    row("    of which finish() (every recording used: passes)", &stats(&tf_strict_finish));
    row("  wiremock: MockServer::start + mount 50 body_json mocks, then drop", &wm_setup);
    let verdict = ratio_row("  ratio traceforge / wiremock", &tf_strict, &wm_setup, 1.0);
    println!();
    println!("  no calls at all (Mode::Replay: a strict finish with none made fails on 50 unused recordings):");
    row("  traceforge: start + load + finish (Mode::Replay, no calls)", &tf);
    row("    of which Recorder::builder()...start()", &stats(&tf_start));
    row("      of which storage::load of the cassette (measured alone)", &stats(&load_50));
    row("    of which finish() (lists the 50 unused recordings)", &stats(&tf_finish));
    row("      of which dropping the loaded cassette (measured alone)", &stats(&drop_50));
    row("    for scale: start + finish with no cassette file at all", &stats(&fixed));
    row("  wiremock: MockServer::start + mount 50 body_json mocks + drop", &wm);
    ratio_row("  ratio traceforge / wiremock (information)", &tf, &wm, 1.0);
    note("wiremock's MockServer::start takes a pooled server after the first (no new thread or listener),");
    note("and a dropped server is reset when it is next taken; both costs are inside the loop. Recorders");
    note("serve on pooled threads too, each with a runtime of its own.");
    println!();
    println!("  supplementary, a whole passing test with the {OVERHEAD_INTERACTIONS} calls made:");
    let (tf_full, wm_full) = (stats(&tf_full), stats(&wm_full));
    row("  traceforge strict: start + 50 replayed calls + finish", &tf_full);
    row("  wiremock: start + mount 50 + 50 calls + drop", &wm_full);
    let ratio = tf_full.median.as_secs_f64() / wm_full.median.as_secs_f64().max(f64::MIN_POSITIVE);
    note(&format!("ratio traceforge / wiremock (median): {ratio:.2}x (information only, no target)"));
    vec![verdict]
}

async fn mount_all(server: &MockServer, pairs: &[(Value, Value)]) {
    for (request, response) in pairs {
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .and(body_json(request))
            .respond_with(ResponseTemplate::new(200).set_body_json(response))
            .mount(server)
            .await;
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Cassette load time
// ---------------------------------------------------------------------------------------------

fn cassette_load(dir: &Path) -> Vec<Verdict> {
    let generated: Vec<Interaction> = (0..LOAD_LARGE as u64)
        .map(|i| {
            let seed = 10_000 + i;
            interaction(
                &chat_request(seed, PROMPT_BYTES),
                vec![recorded_response(&chat_response(seed, LOAD_RESPONSE_BYTES))],
            )
        })
        .collect();
    let small_path = dir.join("load-1k.json");
    let large_path = dir.join("load-10k.json");
    let small_size = write_cassette(&small_path, generated[..LOAD_SMALL].to_vec());
    let large_size = write_cassette(&large_path, generated);

    let time_load = |path: &Path, iterations: usize| {
        let _ = ok(storage::load(path), "load"); // warm-up (and page cache)
        let mut samples = Vec::with_capacity(iterations);
        for _ in 0..iterations {
            let started = Instant::now();
            let file = ok(storage::load(path), "load");
            samples.push(started.elapsed());
            drop(file);
        }
        stats(&samples)
    };
    let small = time_load(&small_path, LOAD_SMALL_ITERS);
    let large = time_load(&large_path, LOAD_LARGE_ITERS);

    // Where a 10,000-interaction load goes, step by step (storage::load = fs::read + parse;
    // parse = a format_version pre-pass over the whole text + the typed parse + validate).
    #[derive(serde::Deserialize)]
    struct Header {
        #[allow(dead_code)]
        format_version: Option<Value>,
    }
    let bytes = ok(std::fs::read(&large_path), "read");
    let mut steps: [Vec<Duration>; 7] = Default::default();
    for _ in 0..BREAKDOWN_ITERS {
        let started = Instant::now();
        std::hint::black_box(ok(std::fs::read(&large_path), "read"));
        steps[0].push(started.elapsed());

        let started = Instant::now();
        std::hint::black_box(ok(serde_json::from_slice::<Header>(&bytes), "header pass"));
        steps[1].push(started.elapsed());

        let started = Instant::now();
        let typed = ok(serde_json::from_slice::<CassetteFile>(&bytes), "typed parse");
        steps[2].push(started.elapsed());
        let started = Instant::now();
        drop(typed);
        steps[5].push(started.elapsed());

        let started = Instant::now();
        let parsed = ok(storage::parse(&large_path, &bytes), "storage::parse");
        steps[3].push(started.elapsed());

        // storage::validate is private: the same checks (hex keys, no duplicates, responses).
        let started = Instant::now();
        let mut seen = BTreeMap::new();
        for (index, interaction) in parsed.interactions.iter().enumerate() {
            let hex = interaction.key.len() == 64 && interaction.key.bytes().all(|b| b.is_ascii_hexdigit());
            if !hex || seen.insert(interaction.key.as_str(), index).is_some() || interaction.responses.is_empty() {
                panic!("interaction {index} does not validate");
            }
        }
        steps[6].push(started.elapsed());
        drop(seen);
        drop(parsed);

        let started = Instant::now();
        std::hint::black_box(ok(serde_json::from_slice::<serde::de::IgnoredAny>(&bytes), "scan"));
        steps[4].push(started.elapsed());
    }
    let steps = steps.map(|samples| stats(&samples));

    heading(&format!(
        "3. Cassette load, storage::load(path): chat requests with a {PROMPT_BYTES}-byte prompt, ~{} responses",
        bytes_human(LOAD_RESPONSE_BYTES)
    ));
    row(&format!("{LOAD_SMALL} interactions ({})", bytes_human(small_size)), &small);
    row(&format!("{LOAD_LARGE} interactions ({})", bytes_human(large_size)), &large);
    let met_time = large.median <= Duration::from_millis(100);
    println!(
        "  {:<58} {:>6} {:>11} {:>11}   target <= 100 ms (median): {}",
        format!("{LOAD_LARGE} interactions vs target"),
        "",
        human(large.median),
        "",
        if met_time { "MET" } else { "MISSED" }
    );
    let scaling = ratio_row(&format!("ratio {LOAD_LARGE} / {LOAD_SMALL}"), &large, &small, 12.0);
    note(&format!("breakdown of a {LOAD_LARGE}-interaction load ({BREAKDOWN_ITERS} runs, medians):"));
    note(&format!("  fs::read of the file                                         {:>10}", human(steps[0].median)));
    note(&format!("  format_version pre-pass (from_slice::<Header>, whole text)   {:>10}", human(steps[1].median)));
    note(&format!("  typed parse (from_slice::<CassetteFile>)                     {:>10}", human(steps[2].median)));
    note(&format!("  validate (the same checks, replicated)                       {:>10}", human(steps[6].median)));
    note(&format!("  = storage::parse                                             {:>10}", human(steps[3].median)));
    note(&format!("  for scale: a bare syntax scan (from_slice::<IgnoredAny>)      {:>10}", human(steps[4].median)));
    note(&format!("  not in load: dropping the loaded CassetteFile                {:>10}", human(steps[5].median)));
    vec![
        Verdict {
            what: format!("load of {LOAD_LARGE} interactions"),
            value: human(large.median),
            target: "<= 100 ms".to_owned(),
            met: met_time,
        },
        scaling,
    ]
}

// ---------------------------------------------------------------------------------------------

fn main() {
    let only = std::env::var("SPINE_ONLY").unwrap_or_default();
    let runs = |section: &str| only.is_empty() || only == section;
    let dir = ok(tempfile::tempdir(), "create a temp dir");
    let runtime = ok(tokio::runtime::Builder::new_current_thread().enable_all().build(), "client runtime");
    let started = Instant::now();
    let start_load = load_average();

    println!(
        "traceforge spine benchmark: loopback, {} build, {} CPU(s), client on a current-thread tokio runtime",
        if cfg!(debug_assertions) { "DEBUG (numbers meaningless)" } else { "optimised" },
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let mut verdicts = Vec::new();
    if runs("replay") {
        verdicts.extend(runtime.block_on(replay_latency(dir.path())));
    }
    if runs("overhead") {
        verdicts.extend(runtime.block_on(per_test_overhead(dir.path())));
    }
    if runs("load") {
        verdicts.extend(cassette_load(dir.path()));
    }

    println!();
    println!("load average (1, 5, 15 min): {} at the start, {} at the end", start_load, load_average());
    println!("Targets");
    for verdict in &verdicts {
        println!(
            "  {:<40} {:>10}   target {:<10} {}",
            verdict.what,
            verdict.value,
            verdict.target,
            if verdict.met { "MET" } else { "MISSED" }
        );
    }
    println!("(timings are printed, never asserted; total bench time {})", human(started.elapsed()));
}
