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

/// Keeps a string for the rest of the process, as the attribute's `&'static str` options need.
pub fn leak(text: String) -> &'static str {
    Box::leak(text.into_boxed_str())
}

/// What `#[traceforge::cassette]` captures for a test named `test_name` in module `module_path`
/// (pass `module_path!()`), with the values cargo really set for this test binary.
pub fn test_meta(module_path: &'static str, test_name: &'static str) -> traceforge::__private::TestMeta {
    traceforge::__private::TestMeta {
        manifest_dir: env!("CARGO_MANIFEST_DIR"),
        module_path,
        test_name,
        package: env!("CARGO_PKG_NAME"),
        crate_name: env!("CARGO_CRATE_NAME"),
        bin_name: option_env!("CARGO_BIN_NAME"),
        integration_test: option_env!("CARGO_TARGET_TMPDIR").is_some(),
    }
}
