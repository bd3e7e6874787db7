//! What a finished test is told: the report of a recorder's run, and, when the run broke the
//! rules of its mode, a failure message that says what differed and how to fix it.

use std::fmt::{self, Write as _};
use std::path::PathBuf;

use serde_json::Value;

use crate::cassette::{Body, RecordedRequest};
use crate::miss::{quoted_start, render_differences, Nearest};
use crate::mode::Mode;
use crate::provider::prompt::asked;

/// What a recorder did during one test.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Report {
    /// The cassette file.
    pub cassette: PathBuf,
    /// The mode the recorder ran in.
    pub mode: Mode,
    /// Requests answered from the cassette.
    pub hits: usize,
    /// Requests that found no recording (served an error in replay and strict).
    pub misses: usize,
    /// Responses recorded from the upstream in this run.
    pub recorded: usize,
    /// Requests passed to the upstream without recording (mode `off`, or an error status).
    pub passed_through: usize,
    /// Error responses passed to the client but not recorded under the [`crate::RecordErrors`]
    /// policy, e.g. `POST openai /chat/completions: 429 Too Many Requests`, in arrival order.
    pub not_recorded: Vec<String>,
    /// Recorded interactions this run did not use up.
    pub unused: Vec<Unused>,
    /// Whether the cassette file was written.
    pub saved: bool,
}

/// A recorded interaction with responses the test did not ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unused {
    /// `POST openai /embeddings`.
    pub summary: String,
    /// The interaction's key.
    pub key: String,
    /// What the request asks, to tell requests to one endpoint apart, e.g.
    /// `model "gpt-4o-mini", last user message "What is the capital of France?"`; `None` when
    /// the body names neither.
    pub excerpt: Option<String>,
    /// How many responses were recorded for it.
    pub recorded: usize,
    /// How many of them this run used.
    pub used: usize,
}

/// Strings in a request excerpt are cut after this many characters.
const EXCERPT_CHARS: usize = 60;

/// The excerpt of [`Unused::excerpt`]: the model and what the user wrote last, in a JSON body.
pub(crate) fn request_excerpt(request: &RecordedRequest) -> Option<String> {
    let Body::Json { json } = &request.body else { return None };
    let model = json.get("model").and_then(Value::as_str).map(|m| format!("model {}", quoted_start(m, EXCERPT_CHARS)));
    let question = asked(json).map(|(label, text)| format!("{label} {}", quoted_start(&text, EXCERPT_CHARS)));
    let parts: Vec<String> = model.into_iter().chain(question).collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// Why a request found nothing to replay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MissKind {
    /// The cassette file does not exist.
    NoCassette,
    /// No recorded request has this key.
    NotRecorded,
    /// The request is recorded, but the test called it more often than it was recorded.
    Exhausted {
        /// How often this run made the request (including this call).
        calls: usize,
        /// How many responses the cassette holds for it.
        recorded: usize,
    },
    /// `sequence` strategy: more calls than the cassette recorded.
    BeyondSequence {
        /// The position of the call (1-based).
        call: usize,
        /// How many calls the cassette recorded.
        recorded: usize,
    },
    /// `sequence` strategy: the request differs too much from the one recorded at its position.
    OutOfSequence {
        /// The position of the call (1-based).
        call: usize,
    },
}

/// A request that found nothing to replay.
#[derive(Clone, Debug, PartialEq)]
pub struct Miss {
    /// The request, in canonical form.
    pub request: RecordedRequest,
    /// Its key.
    pub key: String,
    /// Why it missed.
    pub kind: MissKind,
    /// The closest recorded request, when there is one.
    pub nearest: Option<Nearest>,
}

/// An upstream that could not be reached or broke off while recording.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamFailure {
    /// `POST openai /chat/completions`.
    pub summary: String,
    /// The URL that was called (without its query, which may hold a key).
    pub url: String,
    /// What went wrong.
    pub error: String,
}

/// The failure of a run that broke its mode's rules: misses in `replay` or `strict`, unused
/// recordings in `strict`, or upstream failures while recording.
#[derive(Clone, Debug, PartialEq)]
pub struct VerificationFailure {
    /// The cassette file.
    pub cassette: PathBuf,
    /// The mode of the run.
    pub mode: Mode,
    /// The test, when known (`module::name`).
    pub test: Option<String>,
    /// Requests that found no recording.
    pub misses: Vec<Miss>,
    /// Recorded interactions left unused (strict only).
    pub unused: Vec<Unused>,
    /// Upstream calls that failed.
    pub upstream_failures: Vec<UpstreamFailure>,
    /// The command that re-records this test.
    pub rerecord: String,
    /// Whether the cassette was written anyway, with what the calls that succeeded recorded:
    /// only under [`crate::RecorderBuilder::save_despite_upstream_failures`], when upstream
    /// failures were the only failures.
    pub saved: bool,
}

impl fmt::Display for VerificationFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        let test = self.test.as_deref().map(|t| format!(" for `{t}`")).unwrap_or_default();
        let _ = writeln!(out, "traceforge: cassette check failed{test} (mode: {})", self.mode);
        let _ = writeln!(out, "cassette: {}", self.cassette.display());
        if !self.misses.is_empty() {
            let _ = writeln!(out, "\n{} request(s) had no recording:", self.misses.len());
            for miss in &self.misses {
                let _ = writeln!(out, "  {} (key {})", miss.request.summary(), short(&miss.key));
                match &miss.kind {
                    MissKind::NoCassette => {
                        let _ = writeln!(out, "    the cassette file does not exist: record it first");
                    }
                    MissKind::Exhausted { calls, recorded } => {
                        let _ = writeln!(
                            out,
                            "    matched a recording, but it was called {calls} time(s) and recorded {recorded} time(s)"
                        );
                    }
                    MissKind::BeyondSequence { call, recorded } => {
                        let _ = writeln!(out, "    call {call} is beyond the {recorded} call(s) the cassette recorded");
                    }
                    MissKind::OutOfSequence { call } => {
                        let _ = writeln!(out, "    call {call} does not match the request recorded at that position:");
                        if let Some(nearest) = &miss.nearest {
                            let _ = writeln!(
                                out,
                                "    recorded: interactions[{}] {} (key {})",
                                nearest.index,
                                nearest.summary,
                                short(&nearest.key)
                            );
                            out.push_str(&render_differences(&nearest.differences, "      "));
                        }
                    }
                    MissKind::NotRecorded => match &miss.nearest {
                        Some(nearest) => {
                            let _ = writeln!(
                                out,
                                "    nearest recorded request: interactions[{}] {} (key {}), which differs in:",
                                nearest.index,
                                nearest.summary,
                                short(&nearest.key)
                            );
                            out.push_str(&render_differences(&nearest.differences, "      "));
                        }
                        None => {
                            let _ = writeln!(out, "    the cassette holds no recorded requests");
                        }
                    },
                }
            }
        }
        if !self.unused.is_empty() {
            let _ = writeln!(out, "\n{} recorded interaction(s) were not used:", self.unused.len());
            for unused in &self.unused {
                let _ = writeln!(
                    out,
                    "  {} (key {}): used {} of {} recorded response(s)",
                    unused.summary,
                    short(&unused.key),
                    unused.used,
                    unused.recorded
                );
                if let Some(excerpt) = &unused.excerpt {
                    let _ = writeln!(out, "    {excerpt}");
                }
            }
        }
        if !self.upstream_failures.is_empty() {
            let _ = writeln!(out, "\n{} upstream call(s) failed:", self.upstream_failures.len());
            for failure in &self.upstream_failures {
                let _ = writeln!(out, "  {} -> {}: {}", failure.summary, failure.url, failure.error);
            }
            if self.saved {
                let _ = writeln!(
                    out,
                    "\nThe calls that succeeded were saved to {}; the failed ones were not recorded.",
                    self.cassette.display()
                );
            }
        }
        let _ = writeln!(out, "\nTo re-record this test, run:\n  {}", self.rerecord);
        f.write_str(out.trim_end())
    }
}

fn short(key: &str) -> &str {
    key.get(..12).unwrap_or(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(body: Body) -> RecordedRequest {
        RecordedRequest::new("POST", "openai", "/chat/completions", body)
    }

    #[test]
    fn an_excerpt_names_the_model_and_the_last_user_message_cut_short() {
        let long = format!("Summarise this: {}", "lorem ipsum ".repeat(20));
        let json = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": long}]});
        let excerpt = request_excerpt(&request(Body::Json { json: json.into() })).unwrap_or_default();
        assert!(excerpt.starts_with("model \"gpt-4o-mini\", last user message \"Summarise this: lorem"), "{excerpt}");
        assert!(excerpt.ends_with("\"…") && excerpt.chars().count() < 110, "{excerpt}");
        let json = json!({"input": "ownership"});
        assert_eq!(request_excerpt(&request(Body::Json { json: json.into() })).as_deref(), Some("input \"ownership\""));
        assert_eq!(request_excerpt(&request(Body::Json { json: json!({"n": 1}).into() })), None);
        assert_eq!(request_excerpt(&request(Body::Empty)), None);
    }
}
