//! The five modes, and how the mode of a test is chosen from the environment.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// The environment variable that selects the mode of every traceforge test.
pub const MODE_ENV: &str = "TRACEFORGE_VCR_MODE";

/// How a recorder treats requests: whether it may reach the network, replay, or write.
///
/// | mode     | on a hit              | on a miss              | writes     | network        |
/// |----------|-----------------------|------------------------|------------|----------------|
/// | `off`    | —                     | forwards               | never      | yes            |
/// | `record` | forwards, re-records  | forwards and records   | on success | yes            |
/// | `replay` | replays               | error                  | never      | never          |
/// | `auto`   | replays               | forwards and records   | on success | only on a miss |
/// | `strict` | replays               | test fails             | never      | never          |
///
/// `strict` additionally fails the test when a recorded interaction goes unused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Pass every request through; read and write nothing.
    Off,
    /// Forward every request and rewrite the cassette with what this run saw.
    Record,
    /// Answer from the cassette; a miss is an error. Never touches the network, never writes.
    Replay,
    /// Answer from the cassette, record what is missing.
    Auto,
    /// The CI mode: like `replay`, and an unused recording also fails the test.
    Strict,
}

impl Mode {
    /// All modes, in the order they are documented.
    pub const ALL: [Mode; 5] = [Mode::Off, Mode::Record, Mode::Replay, Mode::Auto, Mode::Strict];

    /// The lowercase name used in `TRACEFORGE_VCR_MODE` and in the attribute.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Record => "record",
            Mode::Replay => "replay",
            Mode::Auto => "auto",
            Mode::Strict => "strict",
        }
    }

    /// Whether a request that is not in the cassette goes to the real upstream.
    pub fn forwards_misses(self) -> bool {
        matches!(self, Mode::Off | Mode::Record | Mode::Auto)
    }

    /// Whether recorded interactions are answered from the cassette.
    pub fn replays(self) -> bool {
        matches!(self, Mode::Replay | Mode::Auto | Mode::Strict)
    }

    /// Whether a successful test may write its cassette.
    pub fn writes(self) -> bool {
        matches!(self, Mode::Record | Mode::Auto)
    }

    /// The mode named by `TRACEFORGE_VCR_MODE`, if it is set and not empty.
    pub fn from_env() -> Result<Option<Mode>> {
        match std::env::var(MODE_ENV) {
            Ok(value) if !value.trim().is_empty() => parse(&value, MODE_ENV).map(Some),
            _ => Ok(None),
        }
    }

    /// The mode a test runs in: `TRACEFORGE_VCR_MODE` if set, else `configured` (the attribute's
    /// or builder's choice), else `strict` on CI and `auto` elsewhere.
    pub fn resolve(configured: Option<Mode>) -> Result<Mode> {
        Ok(Mode::from_env()?.or(configured).unwrap_or_else(|| if is_ci() { Mode::Strict } else { Mode::Auto }))
    }
}

fn parse(value: &str, source_name: &str) -> Result<Mode> {
    let wanted = value.trim().to_ascii_lowercase();
    Mode::ALL
        .into_iter()
        .find(|mode| mode.as_str() == wanted)
        .ok_or_else(|| Error::InvalidMode { value: value.to_owned(), source_name: source_name.to_owned() })
}

impl FromStr for Mode {
    type Err = Error;

    fn from_str(value: &str) -> Result<Mode> {
        parse(value, "a mode string")
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

tokio::task_local! {
    /// The mode of the `#[traceforge::cassette]` test whose body is running, so that what the
    /// body calls (the semantic assertions) follows the test's mode, attribute included.
    static TEST_MODE: Mode;
}

/// Runs `body` as the body of a test in `mode`.
pub(crate) async fn in_test<F: std::future::Future>(mode: Mode, body: F) -> F::Output {
    TEST_MODE.scope(mode, body).await
}

/// The mode of the test whose body is running on this task, if any.
#[cfg(feature = "semantic")]
pub(crate) fn of_running_test() -> Option<Mode> {
    TEST_MODE.try_with(|mode| *mode).ok()
}

/// Whether we run on CI: `CI` is set to anything but empty, `0` or `false` (as insta decides).
pub fn is_ci() -> bool {
    match std::env::var("CI") {
        Ok(value) => !matches!(value.trim().to_ascii_lowercase().as_str(), "" | "0" | "false"),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_mode_case_insensitively() {
        for mode in Mode::ALL {
            assert_eq!(mode.as_str().to_uppercase().parse::<Mode>().ok(), Some(mode));
        }
    }

    #[test]
    fn unknown_mode_lists_the_valid_ones() {
        let message = "recrod".parse::<Mode>().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("`recrod`"), "{message}");
        assert!(message.contains("off, record, replay, auto, strict"), "{message}");
    }
}
