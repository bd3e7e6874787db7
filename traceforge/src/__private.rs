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

    /// The command that re-records exactly this test.
    pub fn rerecord_command(&self) -> String {
        cargo_test_command("record", self.package, self.crate_name, Some(&self.test_path()))
    }
}

/// `TRACEFORGE_VCR_MODE=<mode> cargo test` for one test target, and one test when its path is known.
pub fn cargo_test_command(mode: &str, package: &str, crate_name: &str, test_path: Option<&str>) -> String {
    let target =
        if crate_name == package.replace('-', "_") { "--lib".to_owned() } else { format!("--test {crate_name}") };
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
    let result = AssertUnwindSafe(body(recorder.cassette())).catch_unwind().await;
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
