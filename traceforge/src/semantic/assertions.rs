//! The assertion macros and what they call. The macros capture the caller's crate (for the
//! cache location and the command that fills it) and panic with a message that shows both
//! texts, the score, the threshold, the metric and the model.

use super::{Expectation, Semantic, SemanticComparator};

/// Where an assertion is, captured by the macro in the caller's crate.
#[doc(hidden)]
#[derive(Clone, Copy, Debug)]
pub struct CallSite {
    /// `env!("CARGO_MANIFEST_DIR")`.
    pub manifest_dir: &'static str,
    /// `env!("CARGO_PKG_NAME")`.
    pub package: &'static str,
    /// `env!("CARGO_CRATE_NAME")`.
    pub crate_name: &'static str,
    /// `option_env!("CARGO_BIN_NAME")`.
    pub bin_name: Option<&'static str>,
    /// `option_env!("CARGO_TARGET_TMPDIR").is_some()`.
    pub integration_test: bool,
}

impl CallSite {
    /// The crate's semantic settings, with a fill command that names the running test.
    pub fn semantic(&self) -> Semantic {
        // libtest names each test's thread after the test's path.
        let current = std::thread::current();
        let test = current.name().filter(|name| *name != "main");
        let target = crate::__private::target_flag(self.crate_name, self.integration_test, self.bin_name);
        let command = crate::__private::cargo_test_command("auto", self.package, &target, test);
        Semantic::for_crate(self.manifest_dir).fill_command(&format!("{command}   # with the model provisioned"))
    }
}

/// What `assert_semantic!` runs.
#[doc(hidden)]
#[track_caller]
pub fn assert_semantic(site: CallSite, actual: &str, expected: impl Into<Expectation>, threshold: Option<f32>) {
    let mut semantic = site.semantic();
    if let Some(threshold) = threshold {
        semantic = semantic.threshold(threshold);
    }
    match semantic.compare(actual, expected) {
        Ok(comparison) if comparison.passed() => {}
        Ok(comparison) => panic!("{}", comparison.describe_mismatch()),
        Err(error) => panic!("semantic assertion could not run: {error}"),
    }
}

/// What `assert_not_semantic!` runs.
#[doc(hidden)]
#[track_caller]
pub fn assert_not_semantic(site: CallSite, actual: &str, forbidden: &[&str], threshold: Option<f32>) {
    let mut semantic = site.semantic();
    if let Some(threshold) = threshold {
        semantic = semantic.threshold(threshold);
    }
    match semantic.compare_forbidden(actual, forbidden) {
        Ok(comparisons) => {
            let failures: Vec<String> =
                comparisons.iter().filter(|c| c.is_similar()).map(|c| c.describe_forbidden_match()).collect();
            if !failures.is_empty() {
                panic!("{}", failures.join(""));
            }
        }
        Err(error) => panic!("semantic assertion could not run: {error}"),
    }
}

/// The insta settings `assert_semantic_snapshot!` binds: the caller's, plus the comparator.
#[doc(hidden)]
pub fn snapshot_settings(site: CallSite, threshold: Option<f32>) -> insta::Settings {
    let mut semantic = site.semantic();
    if let Some(threshold) = threshold {
        semantic = semantic.threshold(threshold);
    }
    let mut settings = insta::Settings::clone_current();
    settings.set_description(format!(
        "semantic snapshot: passes while the answer stays within {} similarity {:.2} of this approved text (model {})",
        super::METRIC,
        semantic.current_threshold(),
        semantic.model_name()
    ));
    settings.set_omit_expression(true);
    settings.set_comparator(Box::new(SemanticComparator::new(semantic)));
    settings
}

/// The caller's [`CallSite`].
#[doc(hidden)]
#[macro_export]
macro_rules! __semantic_call_site {
    () => {
        $crate::__private::semantic::CallSite {
            manifest_dir: env!("CARGO_MANIFEST_DIR"),
            package: env!("CARGO_PKG_NAME"),
            crate_name: env!("CARGO_CRATE_NAME"),
            bin_name: ::core::option_env!("CARGO_BIN_NAME"),
            integration_test: ::core::option_env!("CARGO_TARGET_TMPDIR").is_some(),
        }
    };
}

/// Asserts that an answer means what is expected: the cosine similarity of their embeddings
/// reaches the threshold (default [`semantic::DEFAULT_THRESHOLD`](crate::semantic::DEFAULT_THRESHOLD)),
/// and every guard of the expectation holds.
///
/// ```no_run
/// use traceforge::semantic::means;
/// # let answer = String::new();
/// traceforge::assert_semantic!(answer, "Paris is the capital of France");
/// traceforge::assert_semantic!(answer, "Paris is the capital of France", 0.8);
/// traceforge::assert_semantic!(answer, means("The invoice total is 42 euros").same_numbers());
/// ```
///
/// The actual value is anything that is `AsRef<str>`; the expectation a `&str`, a `String` or
/// an [`Expectation`](crate::semantic::Expectation). Embeddings come from the committed cache
/// (see [`semantic`](crate::semantic) for the modes).
#[macro_export]
macro_rules! assert_semantic {
    ($actual:expr, $expected:expr $(,)?) => {
        $crate::__private::semantic::assert_semantic(
            $crate::__semantic_call_site!(),
            ::core::convert::AsRef::<str>::as_ref(&$actual),
            $expected,
            ::core::option::Option::None,
        )
    };
    ($actual:expr, $expected:expr, $threshold:expr $(,)?) => {
        $crate::__private::semantic::assert_semantic(
            $crate::__semantic_call_site!(),
            ::core::convert::AsRef::<str>::as_ref(&$actual),
            $expected,
            ::core::option::Option::Some($threshold),
        )
    };
}

/// Asserts that an answer means none of the forbidden texts: it fails if any of them reaches
/// the threshold.
///
/// ```no_run
/// # let answer = String::new();
/// traceforge::assert_not_semantic!(answer, "I cannot help with that", "As an AI language model");
/// // With a threshold, the forbidden texts go in brackets:
/// traceforge::assert_not_semantic!(answer, ["I cannot help with that"], 0.6);
/// ```
#[macro_export]
macro_rules! assert_not_semantic {
    ($actual:expr, [$($forbidden:expr),+ $(,)?], $threshold:expr $(,)?) => {
        $crate::__private::semantic::assert_not_semantic(
            $crate::__semantic_call_site!(),
            ::core::convert::AsRef::<str>::as_ref(&$actual),
            &[$(::core::convert::AsRef::<str>::as_ref(&$forbidden)),+],
            ::core::option::Option::Some($threshold),
        )
    };
    ($actual:expr, [$($forbidden:expr),+ $(,)?] $(,)?) => {
        $crate::__private::semantic::assert_not_semantic(
            $crate::__semantic_call_site!(),
            ::core::convert::AsRef::<str>::as_ref(&$actual),
            &[$(::core::convert::AsRef::<str>::as_ref(&$forbidden)),+],
            ::core::option::Option::None,
        )
    };
    ($actual:expr, $($forbidden:expr),+ $(,)?) => {
        $crate::__private::semantic::assert_not_semantic(
            $crate::__semantic_call_site!(),
            ::core::convert::AsRef::<str>::as_ref(&$actual),
            &[$(::core::convert::AsRef::<str>::as_ref(&$forbidden)),+],
            ::core::option::Option::None,
        )
    };
}

/// A semantic snapshot: the approved answer lives in an insta `.snap` file beside the test, and
/// the assertion passes while the new answer stays within the threshold of it. A first or a
/// changed answer fails like any insta snapshot and is accepted with `cargo insta review`.
///
/// ```no_run
/// # let answer = String::new();
/// traceforge::assert_semantic_snapshot!(answer);                     // named after the test
/// traceforge::assert_semantic_snapshot!("capital", answer);          // named
/// traceforge::assert_semantic_snapshot!("capital", answer, 0.85);    // with a threshold
/// ```
#[macro_export]
macro_rules! assert_semantic_snapshot {
    ($actual:expr $(,)?) => {
        $crate::__private::semantic::snapshot_settings($crate::__semantic_call_site!(), ::core::option::Option::None)
            .bind(|| {
                $crate::__private::insta::assert_snapshot!(::core::convert::AsRef::<str>::as_ref(&$actual));
            })
    };
    ($name:expr, $actual:expr $(,)?) => {
        $crate::__private::semantic::snapshot_settings($crate::__semantic_call_site!(), ::core::option::Option::None)
            .bind(|| {
                $crate::__private::insta::assert_snapshot!($name, ::core::convert::AsRef::<str>::as_ref(&$actual));
            })
    };
    ($name:expr, $actual:expr, $threshold:expr $(,)?) => {
        $crate::__private::semantic::snapshot_settings(
            $crate::__semantic_call_site!(),
            ::core::option::Option::Some($threshold),
        )
        .bind(|| {
            $crate::__private::insta::assert_snapshot!($name, ::core::convert::AsRef::<str>::as_ref(&$actual));
        })
    };
}
