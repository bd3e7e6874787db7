//! What `#[traceforge::cassette]` expands to calls into: building the recorder from the
//! attribute's options, running the body, and turning the outcome into a test result.

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures_util::FutureExt as _;

use crate::{config, Cassette, Mode, Outcome, Recorder, Strategy};

/// Where the test lives, captured by the macro in the caller's crate.
pub struct TestMeta {
    /// `env!("CARGO_MANIFEST_DIR")` of the crate holding the test.
    pub manifest_dir: &'static str,
    /// `module_path!()` at the test.
    pub module_path: &'static str,
    /// The test function's name.
    pub test_name: &'static str,
    /// `env!("CARGO_PKG_NAME")`.
    pub package: &'static str,
    /// `env!("CARGO_CRATE_NAME")`: the test target's crate.
    pub crate_name: &'static str,
    /// `option_env!("CARGO_BIN_NAME")`: cargo sets it only when compiling a binary (or an
    /// example), so it tells a test inside `src/main.rs` or `src/bin/` from a library unit test.
    pub bin_name: Option<&'static str>,
    /// `option_env!("CARGO_TARGET_TMPDIR").is_some()`: cargo sets it only when compiling an
    /// integration test (or a benchmark).
    pub integration_test: bool,
}

/// The attribute's options, already validated at compile time.
#[derive(Default)]
pub struct TestOptions {
    /// `upstream(name = "url", ...)`.
    pub upstreams: &'static [(&'static str, &'static str)],
    /// `name = "..."`: the cassette's file name (without `.json`) in the default directory.
    pub name: Option<&'static str>,
    /// `path = "..."`: the cassette file, relative to the crate root.
    pub path: Option<&'static str>,
    /// `mode = "..."`.
    pub mode: Option<Mode>,
    /// `flavor = "multi_thread"`.
    pub multi_thread: bool,
    /// `ignore("$.user", ...)`.
    pub ignore_paths: &'static [&'static str],
    /// `strategy = "..."`.
    pub strategy: Option<Strategy>,
}

/// Test functions may return `()` or a `Result`; a returned `Err` fails the test like a panic.
pub trait TestResult {
    /// Whether the body succeeded.
    fn is_success(&self) -> bool;
}

impl TestResult for () {
    fn is_success(&self) -> bool {
        true
    }
}

impl<T, E> TestResult for Result<T, E> {
    fn is_success(&self) -> bool {
        self.is_ok()
    }
}

impl TestMeta {
    /// The test's path as libtest names it: the module path without the crate, then the name.
    pub fn test_path(&self) -> String {
        match self.module_path.split_once("::") {
            Some((_, rest)) => format!("{rest}::{}", self.test_name),
            None => self.test_name.to_owned(),
        }
    }

    /// The command that re-records exactly this test. The target flag selects the test's own
    /// target: `--test <crate>`, `--bin <name>` or `--lib`.
    pub fn rerecord_command(&self) -> String {
        let target = target_flag(self.crate_name, self.integration_test, self.bin_name);
        cargo_test_command("record", self.package, &target, Some(&self.test_path()))
    }
}

/// The `cargo test` flag that selects a test's own target, from what cargo sets while compiling
/// it: `--test <crate>` for an integration test, `--bin <name>` for a binary, else `--lib`.
pub fn target_flag(crate_name: &str, integration_test: bool, bin_name: Option<&str>) -> String {
    match (integration_test, bin_name) {
        (true, _) => format!("--test {crate_name}"),
        (false, Some(bin)) => format!("--bin {bin}"),
        (false, None) => "--lib".to_owned(),
    }
}

/// `TRACEFORGE_VCR_MODE=<mode> cargo test` for one target, and one test when its path is known.
pub fn cargo_test_command(mode: &str, package: &str, target: &str, test_path: Option<&str>) -> String {
    match test_path {
        Some(test) => format!("TRACEFORGE_VCR_MODE={mode} cargo test -p {package} {target} -- {test} --exact"),
        None => format!("TRACEFORGE_VCR_MODE={mode} cargo test -p {package} {target}"),
    }
}

/// What the semantic assertion macros expand to.
#[cfg(feature = "semantic")]
pub use crate::semantic::assertions as semantic;
/// insta, for `assert_semantic_snapshot!` in crates that do not depend on it themselves.
#[cfg(feature = "semantic")]
pub use insta;

fn start(meta: &TestMeta, options: &TestOptions) -> Recorder {
    let path = match (options.path, options.name) {
        (Some(path), _) => std::path::Path::new(meta.manifest_dir).join(path),
        (None, name) => {
            config::default_cassette_path(meta.manifest_dir, meta.module_path, name.unwrap_or(meta.test_name))
        }
    };
    let mut builder = Recorder::builder()
        .cassette(path)
        .config_file(std::path::Path::new(meta.manifest_dir).join(config::CONFIG_FILE))
        .test_name(&meta.test_path())
        .rerecord_command(&meta.rerecord_command());
    for (name, url) in options.upstreams {
        builder = builder.upstream(name, url);
    }
    if let Some(mode) = options.mode {
        builder = builder.mode(mode);
    }
    for path in options.ignore_paths {
        builder = builder.ignore_path(path);
    }
    if let Some(strategy) = options.strategy {
        builder = builder.strategy(strategy);
    }
    match builder.start() {
        Ok(recorder) => recorder,
        Err(error) => panic!("traceforge could not start for `{}`: {error}", meta.test_path()),
    }
}

/// Runs an async test body with a recorder, on a runtime of its own.
pub fn run_test<F, Fut>(meta: TestMeta, options: TestOptions, body: F) -> Fut::Output
where
    F: FnOnce(Cassette) -> Fut,
    Fut: Future,
    Fut::Output: TestResult,
{
    let mut builder = if options.multi_thread {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => panic!("traceforge could not build a tokio runtime for `{}`: {error}", meta.test_path()),
    };
    runtime.block_on(run_async(meta, options, body))
}

/// Runs an async test body with a recorder on the caller's runtime (used under `#[tokio::test]`).
pub async fn run_async<F, Fut>(meta: TestMeta, options: TestOptions, body: F) -> Fut::Output
where
    F: FnOnce(Cassette) -> Fut,
    Fut: Future,
    Fut::Output: TestResult,
{
    let recorder = start(&meta, &options);
    let mode = recorder.mode();
    let result = crate::mode::in_test(mode, AssertUnwindSafe(body(recorder.cassette())).catch_unwind()).await;
    match result {
        Err(panic) => {
            // The test already fails; say what the recorder saw, since it often explains why.
            if let Err(error) = recorder.finish_with(Outcome::Failed).await {
                eprintln!("{error}");
            }
            std::panic::resume_unwind(panic)
        }
        Ok(output) if !output.is_success() => {
            if let Err(error) = recorder.finish_with(Outcome::Failed).await {
                eprintln!("{error}");
            }
            output
        }
        Ok(output) => match recorder.finish_with(Outcome::Passed).await {
            Ok(_) => output,
            Err(error) => panic!("{error}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(crate_name: &'static str, bin_name: Option<&'static str>, integration_test: bool) -> TestMeta {
        TestMeta {
            manifest_dir: "/work/app",
            module_path: if integration_test { "chat::french" } else { "my_app::chat::french" },
            test_name: "asks",
            package: "my-app",
            crate_name,
            bin_name,
            integration_test,
        }
    }

    #[test]
    fn the_rerecord_command_selects_the_tests_own_target() {
        let command = |meta: TestMeta| meta.rerecord_command();
        // tests/chat.rs: the module path starts with the test crate, which libtest leaves out.
        assert_eq!(
            command(meta("chat", None, true)),
            "TRACEFORGE_VCR_MODE=record cargo test -p my-app --test chat -- french::asks --exact"
        );
        // A unit test in the library, also when the library is named differently from the package.
        for lib in ["my_app", "core_lib"] {
            assert_eq!(
                command(meta(lib, None, false)),
                "TRACEFORGE_VCR_MODE=record cargo test -p my-app --lib -- chat::french::asks --exact"
            );
        }
        // src/main.rs shares the package's crate name with the library; src/bin/ keeps its dashes.
        assert_eq!(
            command(meta("my_app", Some("my-app"), false)),
            "TRACEFORGE_VCR_MODE=record cargo test -p my-app --bin my-app -- chat::french::asks --exact"
        );
        assert_eq!(
            command(meta("export_tool", Some("export-tool"), false)),
            "TRACEFORGE_VCR_MODE=record cargo test -p my-app --bin export-tool -- chat::french::asks --exact"
        );
    }

    #[test]
    fn the_test_path_leaves_out_the_crate() {
        assert_eq!(meta("chat", None, true).test_path(), "french::asks");
        let at_the_root = TestMeta { module_path: "chat", ..meta("chat", None, true) };
        assert_eq!(at_the_root.test_path(), "asks");
    }

    /// What cargo really sets for this library's own unit tests.
    #[test]
    fn a_unit_test_of_this_library_is_told_to_use_lib() {
        let meta = TestMeta {
            manifest_dir: env!("CARGO_MANIFEST_DIR"),
            module_path: module_path!(),
            test_name: "a_unit_test_of_this_library_is_told_to_use_lib",
            package: env!("CARGO_PKG_NAME"),
            crate_name: env!("CARGO_CRATE_NAME"),
            bin_name: option_env!("CARGO_BIN_NAME"),
            integration_test: option_env!("CARGO_TARGET_TMPDIR").is_some(),
        };
        assert_eq!(
            meta.rerecord_command(),
            "TRACEFORGE_VCR_MODE=record cargo test -p traceforge --lib -- \
             __private::tests::a_unit_test_of_this_library_is_told_to_use_lib --exact"
        );
    }
}
