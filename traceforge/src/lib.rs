//! # traceforge
//!
//! Record the LLM API calls a test makes once, commit them as a readable cassette, and replay
//! them offline, deterministically and strictly in CI.
//!
//! ```no_run
//! #[traceforge::cassette]
//! async fn answers_in_french(tf: traceforge::Cassette) {
//!     // Point any client at the recorder instead of the provider:
//!     let base_url = tf.url("openai"); // http://127.0.0.1:<port>/openai
//!     # let _ = base_url;
//! }
//! ```
//!
//! The attribute starts an in-process recorder on loopback for the test, runs the test body on
//! a tokio runtime, and finishes the recorder afterwards: in `strict` mode a request that is not
//! in the cassette, or a recording the test no longer uses, fails the test with a diff and the
//! command that re-records it. `TRACEFORGE_VCR_MODE` selects the [`Mode`]; see the README for
//! the mode table and `docs/` for the cassette format.
//!
//! Without the attribute, [`Recorder::builder`] gives the same with an explicit `finish()`.
//!
//! With the `semantic` feature, `assert_semantic!`, `assert_not_semantic!` and
//! `assert_semantic_snapshot!` compare answers by meaning, with a local embedding model and a
//! committed embedding cache (see the `semantic` module and `docs/semantic.md`).
#![warn(missing_docs, rust_2018_idioms, unreachable_pub)]

pub mod cassette;
pub mod config;
mod error;
pub mod jsonpath;
pub mod matching;
pub mod miss;
mod mode;
pub mod provider;
pub mod redact;
mod secret_scan;
#[cfg(feature = "semantic")]
pub mod semantic;
mod server;
pub mod stream;
pub mod usage;
mod verify;

pub use config::{RecordErrors, Upstream};
pub use error::{Error, Result};
pub use matching::{Exhausted, Matcher, Normaliser, Strategy};
pub use mode::{is_ci, Mode, MODE_ENV};
pub use provider::{Answer, Provider};
pub use server::{Cassette, Outcome, Recorder, RecorderBuilder, OUTCOME_HEADER};
pub use verify::{Miss, MissKind, Report, Unused, UpstreamFailure, VerificationFailure};

#[doc = include_str!("../../docs/attribute.md")]
pub use traceforge_macros::cassette;

/// Support for the code `#[traceforge::cassette]` generates. Not a public API.
#[doc(hidden)]
pub mod __private;
