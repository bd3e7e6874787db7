//! Semantic assertions: cache-hit latency (target: at most 20 µs) against a bare `HashMap`
//! lookup, model load time against reading its files, single-sentence and batch-of-32 embedding
//! latency against a cache hit, and peak memory against the process before the model loaded.
//!
//! ```sh
//! scripts/provision
//! cargo bench -p traceforge --features semantic --bench semantic
//! ```
//!
//! It needs the model (TRACEFORGE_EMBED_MODEL_DIR and ORT_DYLIB_PATH, which .cargo/config.toml
//! points at what scripts/provision fetched). Figures are printed, never asserted.

use std::collections::HashMap;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use traceforge::semantic::{Semantic, MODEL_DIR_ENV};
use traceforge::Mode;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let model_dir = std::env::var_os(MODEL_DIR_ENV)
        .map(PathBuf::from)
        .ok_or("set TRACEFORGE_EMBED_MODEL_DIR and ORT_DYLIB_PATH (scripts/provision fetches both)")?;
    let scratch = tempfile::tempdir()?;
    let rss_before = peak_rss_kib();

    // Model load, against reading the same files.
    let started = Instant::now();
    for file in ["model.onnx", "tokenizer.json", "config.json", "special_tokens_map.json", "tokenizer_config.json"] {
        black_box(std::fs::read(model_dir.join(file))?);
    }
    let read_files = started.elapsed();
    // Off: the model's own latency (vectors kept in memory, nothing written).
    let semantic = Semantic::in_dir(scratch.path()).mode(Mode::Off).model_dir(&model_dir);
    let started = Instant::now();
    semantic.load_model()?;
    let load = started.elapsed();

    // One sentence at a time, each new (so each is a model call), then a batch of 32.
    let singles: Vec<String> =
        (0..50).map(|n| format!("Sentence number {n} is about the capital of France.")).collect();
    let started = Instant::now();
    for text in &singles {
        black_box(semantic.embed(&[text.as_str()])?);
    }
    let single = started.elapsed() / singles.len() as u32;
    let batch: Vec<String> = (0..32).map(|n| format!("Batch sentence {n}: the cat sits on the mat.")).collect();
    let batch_refs: Vec<&str> = batch.iter().map(String::as_str).collect();
    let started = Instant::now();
    black_box(semantic.embed(&batch_refs)?);
    let batch_time = started.elapsed();

    // Cache hits, against a bare map holding the same vectors.
    let hits = 200_000u32;
    let text = singles[7].as_str();
    let started = Instant::now();
    for _ in 0..hits {
        black_box(semantic.embed(black_box(&[text]))?);
    }
    let hit = started.elapsed() / hits;
    let vector = semantic.embed(&[text])?.remove(0);
    let map: HashMap<String, Vec<f32>> = singles.iter().map(|t| (t.clone(), vector.to_vec())).collect();
    let started = Instant::now();
    for _ in 0..hits {
        black_box(map.get(black_box(text)).map(|v| v.len()));
    }
    let bare = started.elapsed() / hits;
    let started = Instant::now();
    for _ in 0..hits / 10 {
        black_box(semantic.similarity(black_box(singles[1].as_str()), black_box(singles[2].as_str()))?);
    }
    let similarity = started.elapsed() / (hits / 10);
    // Auto: a miss that embeds and saves to the cache file (lock, merge, fsync, rename).
    let filling = Semantic::in_dir(scratch.path()).mode(Mode::Auto).model_dir(&model_dir);
    let fills: Vec<String> = (0..20).map(|n| format!("Filled sentence {n} goes to the cache file.")).collect();
    let started = Instant::now();
    for text in &fills {
        black_box(filling.embed(&[text.as_str()])?);
    }
    let fill = started.elapsed() / fills.len() as u32;
    let rss_after = peak_rss_kib();

    println!("semantic benchmark ({} profile)", if cfg!(debug_assertions) { "debug" } else { "release" });
    println!(
        "  cache hit (one text):        {:>10}   bare HashMap lookup {:>8}   ratio {:.1}x   target <= 20 µs: {}",
        us(hit),
        us(bare),
        ratio(hit, bare),
        verdict(hit <= Duration::from_micros(20))
    );
    println!("  similarity, both cached:     {:>10}", us(similarity));
    println!(
        "  model load:                  {:>10}   reading its files   {:>8}   ratio {:.1}x",
        ms(load),
        ms(read_files),
        ratio(load, read_files)
    );
    println!("  one sentence (avg of 50):    {:>10}   = {:.0}x a cache hit", ms(single), ratio(single, hit));
    println!("  cache fill (embed + save):   {:>10}   = {:.2}x one sentence", ms(fill), ratio(fill, single));
    println!(
        "  batch of 32:                 {:>10}   ({} a sentence, {:.1}x faster than one by one)",
        ms(batch_time),
        ms(batch_time / 32),
        ratio(single * 32, batch_time)
    );
    println!(
        "  peak memory:                 {:>7} MiB   before loading {:>5} MiB   ratio {:.1}x",
        rss_after / 1024,
        rss_before / 1024,
        rss_after as f64 / rss_before.max(1) as f64
    );
    Ok(())
}

/// The process's peak resident set (VmHWM), in KiB; 0 where /proc is unavailable.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-12)
}

fn us(d: Duration) -> String {
    format!("{:.2} µs", d.as_secs_f64() * 1e6)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}
