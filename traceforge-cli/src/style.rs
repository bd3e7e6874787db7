//! Terminal output: colour only on a terminal (and never with NO_COLOR), human-readable sizes,
//! and a progress line on stderr for operations over many files.

use std::io::{IsTerminal as _, Write as _};
use std::time::{Duration, Instant};

use crate::args::ColorChoice;

/// ANSI styling, or none.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Style {
    enabled: bool,
}

impl Style {
    /// Colours stdout when asked to, or when it is a terminal and NO_COLOR is unset or empty.
    pub(crate) fn for_stdout(choice: ColorChoice) -> Style {
        let enabled = match choice {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            }
        };
        Style { enabled }
    }

    fn paint(self, code: &str, text: &str) -> String {
        if self.enabled {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    pub(crate) fn bold(self, text: &str) -> String {
        self.paint("1", text)
    }

    pub(crate) fn dim(self, text: &str) -> String {
        self.paint("2", text)
    }

    pub(crate) fn red(self, text: &str) -> String {
        self.paint("31", text)
    }

    pub(crate) fn green(self, text: &str) -> String {
        self.paint("32", text)
    }

    pub(crate) fn yellow(self, text: &str) -> String {
        self.paint("33", text)
    }

    pub(crate) fn cyan(self, text: &str) -> String {
        self.paint("36", text)
    }
}

/// `1.2 KB`, `3.4 MB`: sizes for people.
pub(crate) fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KB", "MB", "GB", "TB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut size = bytes as f64 / 1024.0;
    let mut unit = 0;
    while size >= 1024.0 && unit < UNITS.len() - 1 {
        size /= 1024.0;
        unit += 1;
    }
    format!("{size:.1} {}", UNITS[unit])
}

/// Cuts `text` to `limit` characters (with an ellipsis and the full length), on one line.
pub(crate) fn excerpt(text: &str, limit: Option<usize>) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match limit {
        Some(limit) if one_line.chars().count() > limit => {
            let cut: String = one_line.chars().take(limit).collect();
            format!("{cut}… ({} chars)", one_line.chars().count())
        }
        _ => one_line,
    }
}

/// `[12/480] checking cassettes/chat.json` on stderr, redrawn in place, only when stderr is a
/// terminal (so logs and pipes stay clean) and at most every 50 ms.
pub(crate) struct Progress {
    total: usize,
    verb: &'static str,
    active: bool,
    last: Option<Instant>,
    drawn: bool,
}

impl Progress {
    pub(crate) fn new(verb: &'static str, total: usize) -> Progress {
        Progress { total, verb, active: total > 1 && std::io::stderr().is_terminal(), last: None, drawn: false }
    }

    pub(crate) fn step(&mut self, done: usize, item: &str) {
        if !self.active || self.last.is_some_and(|at| at.elapsed() < Duration::from_millis(50)) {
            return;
        }
        self.last = Some(Instant::now());
        self.drawn = true;
        let mut stderr = std::io::stderr().lock();
        let _ = write!(stderr, "\r\x1b[2K[{}/{}] {} {item}", done + 1, self.total, self.verb);
        let _ = stderr.flush();
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if self.drawn {
            let mut stderr = std::io::stderr().lock();
            let _ = write!(stderr, "\r\x1b[2K");
            let _ = stderr.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_excerpts() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(1536), "1.5 KB");
        assert_eq!(human_size(3 * 1024 * 1024), "3.0 MB");
        assert_eq!(excerpt("a\n  b", None), "a b");
        assert_eq!(excerpt("abcdef", Some(3)), "abc… (6 chars)");
    }

    #[test]
    fn colour_only_when_enabled() {
        assert_eq!(Style::for_stdout(ColorChoice::Never).red("x"), "x");
        assert_eq!(Style::for_stdout(ColorChoice::Always).red("x"), "\x1b[31mx\x1b[0m");
    }
}
