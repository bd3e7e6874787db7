//! How the command fails: a message that names the file and says what to do, and the exit
//! status it ends with.

use std::fmt;
use std::path::Path;

/// Exit status: problems found (check), a run that broke its mode's rules (serve), or changes
/// that could not all be applied (prune).
pub(crate) const EXIT_PROBLEMS: u8 = 1;
/// Exit status: the command could not do its job (bad arguments, unreadable files, I/O).
pub(crate) const EXIT_USAGE: u8 = 2;

#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) exit: u8,
    pub(crate) message: String,
}

impl Failure {
    /// The command could not run.
    pub(crate) fn usage(message: impl Into<String>) -> Failure {
        Failure { exit: EXIT_USAGE, message: message.into() }
    }

    /// The command ran and found (or left) problems; `message` says which.
    pub(crate) fn problems(message: impl Into<String>) -> Failure {
        Failure { exit: EXIT_PROBLEMS, message: message.into() }
    }

    /// An I/O error on `path` while trying to `what`.
    pub(crate) fn io(path: &Path, what: &str, error: &std::io::Error) -> Failure {
        Failure::usage(format!("cannot {what} {}: {error}", path.display()))
    }
}

impl From<traceforge::Error> for Failure {
    fn from(error: traceforge::Error) -> Failure {
        Failure::usage(error.to_string())
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Failure {
    /// An exit status whose explanation was already printed (e.g. a check report).
    pub(crate) fn silent(exit: u8) -> Failure {
        Failure { exit, message: String::new() }
    }
}
