//! Test support shared by the top-level test binaries: a fake OpenAI-compatible upstream that
//! speaks the real wire format, and small helpers around the recorder.
#![allow(dead_code)] // each test binary uses a different part of this module

pub mod fake_llm;
pub mod fake_openai;
pub mod synthetic;

use std::path::{Path, PathBuf};

/// A fresh directory for one test's cassettes, removed when dropped.
pub fn scratch() -> tempfile::TempDir {
    match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(error) => panic!("cannot create a temp dir: {error}"),
    }
}

/// Reads a file the test expects to exist.
pub fn read(path: &Path) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) => panic!("cannot read {}: {error}", path.display()),
    }
}

/// `dir/name.json`.
pub fn cassette_in(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(format!("{name}.json"))
}
