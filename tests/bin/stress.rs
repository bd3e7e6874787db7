//! Child-process helper for the reliability tests; not a user-facing tool.
//!
//! * `traceforge-stress record <cassette> <upstream-url> <worker> <count>`: starts an `auto`
//!   recorder on the shared cassette, records `count` distinct chat requests, prints `ready`,
//!   waits for a line on stdin (so all workers save at once), finishes and prints `saved <n>`.
//! * `traceforge-stress save-forever <cassette>`: prints `started`, then saves synthetic
//!   versions in a loop (see `tests/support/synthetic.rs`), printing `saved <n>` after each,
//!   until it is killed (or after a bounded number of saves).
//! * `traceforge-stress save <cassette> <version>`: one save of a synthetic version; on failure
//!   prints the error on stderr and exits with status 2.

#[path = "../support/synthetic.rs"]
#[allow(dead_code)] // the tests also use `version_bytes`
mod synthetic;

use std::io::{BufRead as _, Write as _};
use std::path::PathBuf;

use traceforge::cassette::storage::{self, SaveOptions};
use traceforge::{Mode, Recorder};

type BoxError = Box<dyn std::error::Error>;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["record", cassette, upstream, worker, count] => record(cassette, upstream, worker, count),
        ["save-forever", cassette] => save_forever(cassette),
        ["save", cassette, version] => save_once(cassette, version),
        _ => Err("usage: traceforge-stress record|save-forever|save ...".into()),
    };
    if let Err(error) = result {
        eprintln!("traceforge-stress: {error}");
        std::process::exit(2);
    }
}

fn record(cassette: &str, upstream: &str, worker: &str, count: &str) -> Result<(), BoxError> {
    let count: usize = count.parse()?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let recorder =
            Recorder::builder().cassette(cassette).upstream("openai", upstream).force_mode(Mode::Auto).start()?;
        let client = reqwest::Client::new();
        let url = format!("{}/chat/completions", recorder.url("openai"));
        for i in 0..count {
            let body = serde_json::json!({
                "model": "gpt-4o-mini",
                "messages": [{"role": "user", "content": format!("worker {worker} request {i}")}]
            });
            let response = client.post(&url).json(&body).send().await?;
            let outcome = response.headers().get(traceforge::OUTCOME_HEADER).cloned();
            if response.status() != 200 || outcome.as_ref().map(|v| v.as_bytes()) != Some(b"recorded") {
                return Err(format!("request {i}: status {} outcome {outcome:?}", response.status()).into());
            }
            response.bytes().await?;
        }
        println!("ready");
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        let report = recorder.finish().await?;
        println!("saved {}", report.recorded);
        Ok(())
    })
}

fn save_forever(cassette: &str) -> Result<(), BoxError> {
    let path = PathBuf::from(cassette);
    let options = SaveOptions::default();
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "started")?;
    // Bounded: a child whose parent died stops by itself.
    for _ in 0..100_000 {
        let mut saved = 0;
        storage::save(&path, &options, |on_disk| {
            saved = synthetic::next(on_disk.map_or(0, |file| file.interactions.len()));
            synthetic::version(saved)
        })?;
        writeln!(stdout, "saved {saved}")?;
    }
    Ok(())
}

fn save_once(cassette: &str, version: &str) -> Result<(), BoxError> {
    let version: usize = version.parse()?;
    storage::save(&PathBuf::from(cassette), &SaveOptions::default(), |_| synthetic::version(version))?;
    println!("saved {version}");
    Ok(())
}
