//! Streaming benchmarks, hand-rolled, printed as ratios measured in one run (never asserted):
//!
//! 1. time to first byte of a streamed answer through the recorder in `record` mode, against the
//!    same request sent straight to the upstream;
//! 2. replay throughput of a 1,000-event stream against a bare hyper server streaming the same
//!    events, one frame each;
//! 3. peak memory (VmHWM) while a 50 MB body streams through the recorder (record, replay and
//!    off), each measured in a child process of its own.
//!
//! `cargo bench -p traceforge --bench streaming`

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};
use http_body_util::StreamBody;
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use traceforge::{Mode, Recorder};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type FrameStream = Pin<Box<dyn Stream<Item = Result<Frame<Bytes>, BoxError>> + Send>>;

const STREAM_EVENTS: usize = 1_000;
const BIG_BODY: usize = 50 * 1024 * 1024;

fn event(i: usize) -> Bytes {
    Bytes::from(format!(
        "data: {{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"token {i} \"}},\"finish_reason\":null}}]}}\n\n"
    ))
}

/// One event of 1 KiB exactly, for the large SSE body.
fn big_event() -> Bytes {
    let head = "data: {\"choices\":[{\"delta\":{\"content\":\"";
    let tail = "\"},\"index\":0}],\"object\":\"chat.completion.chunk\"}\n\n";
    Bytes::from(format!("{head}{}{tail}", "x".repeat(1024 - head.len() - tail.len())))
}

/// The bare upstream: `/sse?n=N` streams N events, one frame each, with no delay; `/blob` streams
/// [`BIG_BODY`] bytes of `application/octet-stream`, generated 64 KiB at a time (never held whole),
/// and `/sse-blob` as many bytes of 1 KiB server-sent events.
fn bare_server() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    listener.set_nonblocking(true).unwrap_or_else(|e| panic!("{e}"));
    let address = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    std::thread::spawn(move || {
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap_or_else(|e| panic!("{e}"));
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap_or_else(|e| panic!("{e}"));
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let _ = stream.set_nodelay(true);
                let builder = builder.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(serve);
                    let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
    });
    address
}

async fn serve(request: Request<Incoming>) -> Result<Response<StreamBody<FrameStream>>, Infallible> {
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
    let (content_type, frames): (&str, FrameStream) = if path.ends_with("/blob") {
        let chunk = Bytes::from(vec![0xA5u8; 64 * 1024]);
        let count = BIG_BODY / chunk.len();
        (
            "application/octet-stream",
            Box::pin(futures_util::stream::iter((0..count).map(move |_| Ok(Frame::data(chunk.clone()))))),
        )
    } else if path.ends_with("/sse-blob") {
        // The same size as an SSE stream of 1 KiB chat-completion chunks.
        let event = big_event();
        let count = BIG_BODY / event.len();
        (
            "text/event-stream",
            Box::pin(futures_util::stream::iter((0..count).map(move |_| Ok(Frame::data(event.clone()))))),
        )
    } else {
        let n: usize = query.strip_prefix("n=").and_then(|n| n.parse().ok()).unwrap_or(20);
        ("text/event-stream", Box::pin(futures_util::stream::iter((0..n).map(|i| Ok(Frame::data(event(i)))))))
    };
    let response = Response::builder()
        .header("content-type", content_type)
        .body(StreamBody::new(frames))
        .unwrap_or_else(|e| panic!("{e}"));
    Ok(response)
}

fn recorder(path: &std::path::Path, mode: Mode, upstream: &str) -> Recorder {
    Recorder::builder()
        .cassette(path)
        .upstream("openai", upstream)
        .force_mode(mode)
        .start()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Sends one request and reads the body: (time to first chunk, total time, chunks).
async fn timed(client: &reqwest::Client, url: &str) -> (Duration, Duration, usize) {
    let started = Instant::now();
    let response = client.post(url).body("{\"stream\":true}").send().await.unwrap_or_else(|e| panic!("{e}"));
    let mut stream = response.bytes_stream();
    let mut first = None;
    let mut chunks = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap_or_else(|e| panic!("{e}"));
        if !chunk.is_empty() {
            first.get_or_insert_with(|| started.elapsed());
            chunks += 1;
        }
    }
    (first.unwrap_or_default(), started.elapsed(), chunks)
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() - 1) as f64 * p).round() as usize]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

async fn time_to_first_byte(upstream: &str, dir: &std::path::Path) {
    const ROUNDS: usize = 300;
    let client = reqwest::Client::new();
    let rec = recorder(&dir.join("ttfb.json"), Mode::Record, upstream);
    let direct_url = format!("{upstream}/chat/completions?n=20");
    let recorded_url = format!("{}/chat/completions?n=20", rec.url("openai"));
    let (mut direct, mut through) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS + 20 {
        // Interleaved, so that both see the same machine load.
        let a = timed(&client, &direct_url).await.0;
        let b = timed(&client, &recorded_url).await.0;
        if round >= 20 {
            direct.push(a);
            through.push(b);
        }
    }
    drop(rec); // not finished: nothing is written
    let (d50, t50) = (percentile(&mut direct, 0.5), percentile(&mut through, 0.5));
    let (d90, t90) = (percentile(&mut direct, 0.9), percentile(&mut through, 0.9));
    println!("time to first byte, 20-event SSE stream, {ROUNDS} rounds interleaved, HTTP/1.1 keep-alive:");
    println!("  direct to upstream      p50 {:>8.1} us   p90 {:>8.1} us", micros(d50), micros(d90));
    println!("  through recorder        p50 {:>8.1} us   p90 {:>8.1} us", micros(t50), micros(t90));
    println!(
        "  added by record mode    p50 {:>8.1} us   p90 {:>8.1} us   (target <= 1000 us)",
        micros(t50) - micros(d50),
        micros(t90) - micros(d90)
    );
}

async fn replay_throughput(upstream: &str, dir: &std::path::Path) {
    const ROUNDS: usize = 30;
    let client = reqwest::Client::new();
    let path = dir.join("replay.json");
    let url_of = |base: &str| format!("{base}/chat/completions?n={STREAM_EVENTS}");
    // Record the stream ROUNDS times: one interaction with ROUNDS responses to replay in order.
    let rec = recorder(&path, Mode::Record, upstream);
    for _ in 0..ROUNDS + 3 {
        timed(&client, &url_of(&rec.url("openai"))).await;
    }
    rec.finish().await.unwrap_or_else(|e| panic!("{e}"));

    let rec = recorder(&path, Mode::Replay, "http://127.0.0.1:9");
    let replay_url = url_of(&rec.url("openai"));
    let bare_url = url_of(upstream);
    for _ in 0..3 {
        timed(&client, &replay_url).await;
        timed(&client, &bare_url).await;
    }
    let (mut bare, mut replay) = (Duration::ZERO, Duration::ZERO);
    let (mut bare_chunks, mut replay_chunks) = (0, 0);
    for _ in 0..ROUNDS {
        let (_, total, chunks) = timed(&client, &bare_url).await;
        bare += total;
        bare_chunks += chunks;
        let (_, total, chunks) = timed(&client, &replay_url).await;
        replay += total;
        replay_chunks += chunks;
    }
    let _ = rec.finish().await;
    let rate = |total: Duration| (ROUNDS * STREAM_EVENTS) as f64 / total.as_secs_f64();
    println!("replay of a {STREAM_EVENTS}-event SSE stream, {ROUNDS} rounds interleaved:");
    println!(
        "  bare hyper server       {:>10.0} events/s   {:>6.2} ms/stream   {:.1} chunks/stream",
        rate(bare),
        bare.as_secs_f64() * 1e3 / ROUNDS as f64,
        bare_chunks as f64 / ROUNDS as f64
    );
    println!(
        "  traceforge replay       {:>10.0} events/s   {:>6.2} ms/stream   {:.1} chunks/stream",
        rate(replay),
        replay.as_secs_f64() * 1e3 / ROUNDS as f64,
        replay_chunks as f64 / ROUNDS as f64
    );
    println!("  replay / bare throughput: {:.2}x   (target >= 0.5x)", rate(replay) / rate(bare));
}

fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// One memory measurement, in this (child) process: prints `phase mib` lines. `mode` is `direct`,
/// `off`, `record` or `replay` for the binary body, `record-sse` or `replay-sse` for the SSE one.
fn memory_child(mode: &str, cassette: &str) {
    let (mode, blob) = match mode.strip_suffix("-sse") {
        Some(mode) => (mode, "sse-blob"),
        None => (mode, "blob"),
    };
    let upstream = format!("http://{}/v1", bare_server());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let base = vm_hwm_kib();
        let path = std::path::Path::new(cassette);
        let (rec, target) = match mode {
            "record" => {
                let rec = recorder(path, Mode::Record, &upstream);
                let url = format!("{}/{blob}", rec.url("openai"));
                (Some(rec), url)
            }
            "replay" => {
                let rec = recorder(path, Mode::Replay, "http://127.0.0.1:9/v1");
                println!("loaded {}", (vm_hwm_kib() - base) / 1024);
                let url = format!("{}/{blob}", rec.url("openai"));
                (Some(rec), url)
            }
            "off" => {
                let rec = recorder(path, Mode::Off, &upstream);
                let url = format!("{}/{blob}", rec.url("openai"));
                (Some(rec), url)
            }
            _ => (None, format!("{upstream}/{blob}")),
        };
        let response = client.post(&target).send().await.unwrap_or_else(|e| panic!("{e}"));
        let mut stream = response.bytes_stream();
        let mut received = 0;
        while let Some(chunk) = stream.next().await {
            received += chunk.unwrap_or_else(|e| panic!("{e}")).len();
        }
        assert_eq!(received, BIG_BODY, "the body arrived whole");
        println!("streamed {}", (vm_hwm_kib() - base) / 1024);
        if let Some(rec) = rec {
            rec.finish().await.unwrap_or_else(|e| panic!("{e}"));
            println!("finished {}", (vm_hwm_kib() - base) / 1024);
        }
    });
}

fn memory(dir: &std::path::Path) {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
    println!("peak memory (VmHWM growth over the child's baseline) for a {} MiB body:", BIG_BODY >> 20);
    for mode in ["direct", "off", "record", "replay", "record-sse", "replay-sse"] {
        if mode == "record-sse" {
            println!("  the same size in 1 KiB server-sent events (information: events are stored as JSON values):");
        }
        let cassette = dir.join(if mode.ends_with("-sse") { "big-sse.json" } else { "big.json" });
        let size = std::fs::metadata(&cassette).map_or(0, |m| m.len());
        if mode.starts_with("replay") && size > traceforge::cassette::storage::MAX_CASSETTE_BYTES {
            // Each event is stored as JSON, and the assembled answer repeats its text.
            println!("  {mode:<10} not replayable: its cassette is {} MiB, over the load limit", size >> 20);
            continue;
        }
        let output = std::process::Command::new(&exe)
            .env("TF_BENCH_MEMORY", mode)
            .env("TF_BENCH_CASSETTE", &cassette)
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        let text = String::from_utf8_lossy(&output.stdout);
        let phases: Vec<String> = text
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(phase, mib)| format!("{phase} {mib} MiB ({:.2}x body)", mib.parse::<f64>().unwrap_or(0.0) / 50.0))
            .collect();
        if !output.status.success() {
            println!("  {mode:<10} failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        println!("  {mode:<10} {}", phases.join(", "));
    }
}

fn main() {
    if let Ok(mode) = std::env::var("TF_BENCH_MEMORY") {
        memory_child(&mode, &std::env::var("TF_BENCH_CASSETTE").unwrap_or_default());
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` lists; there is nothing to list
    }
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let upstream = format!("http://{}/v1", bare_server());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    runtime.block_on(time_to_first_byte(&upstream, dir.path()));
    runtime.block_on(replay_throughput(&upstream, dir.path()));
    memory(dir.path());
}
