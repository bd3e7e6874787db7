//! The command line, as clap parses it. Every option is documented here; `docs/cli.md` says
//! the same with examples.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use traceforge::{Mode, Strategy};

/// Inspect, check and prune traceforge cassettes, and serve the recorder to tests in any language.
#[derive(Debug, Parser)]
#[command(name = "traceforge", version, propagate_version = true)]
pub(crate) struct Cli {
    /// When to colour the output: `auto` colours a terminal unless NO_COLOR is set.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, global = true)]
    pub(crate) color: ColorChoice,

    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// List cassettes with their interaction counts, providers, sizes and format version.
    List(ListArgs),
    /// Show each request (model, last messages) and answer (streamed text assembled) of a cassette.
    Show(ShowArgs),
    /// Check cassettes: format and integrity, secrets, orphans and unused interactions.
    ///
    /// Exit status: 0 when no problem was found (warnings allowed), 1 when problems were found,
    /// 2 when the check could not run (no such directory, unreadable configuration).
    Check(CheckArgs),
    /// Remove the interactions the last strict run did not use (and, if asked, orphan cassettes).
    ///
    /// A dry run unless --write is given. Never prunes without a usage record, and deletes a
    /// cassette only with --delete-orphans and proof that no test uses it.
    Prune(PruneArgs),
    /// Run the recorder/replayer as a standalone HTTP server, for tests in any language.
    ///
    /// Prints one `NAME: URL` line per upstream, then `listening on URL`. Stops on SIGINT or
    /// SIGTERM: stops accepting, lets responses in flight complete, saves (in modes that write)
    /// and exits 0; in strict mode a miss or an unused recording exits 1 with the report on stderr,
    /// and so does a failed upstream call (after saving the other recordings). A second SIGINT
    /// quits without saving; a SIGTERM while finishing is ignored.
    Serve(ServeArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// A cassette directory (searched recursively) or one cassette file.
    #[arg(default_value = "cassettes")]
    pub(crate) dir: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    /// The cassette file.
    pub(crate) file: PathBuf,
    /// Print JSON (every message, every answer) instead of the readable view.
    #[arg(long)]
    pub(crate) json: bool,
    /// How many of the last messages of each request to show (0 for all).
    #[arg(long, default_value_t = 2)]
    pub(crate) messages: usize,
    /// Show texts whole instead of cutting them at 400 characters.
    #[arg(long)]
    pub(crate) full: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum CheckFormat {
    /// Readable text.
    Text,
    /// One JSON document.
    Json,
    /// JUnit XML, one test case per cassette, for CI test reports.
    Junit,
}

#[derive(Debug, Args)]
pub(crate) struct UsageArgs {
    /// The target directory whose usage records to read (`<DIR>/traceforge/usage/`). Default:
    /// CARGO_TARGET_DIR, else `target/` at the root of the workspace (or git repository) around
    /// the cassettes.
    #[arg(long, value_name = "DIR")]
    pub(crate) target_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// A cassette directory (searched recursively) or one cassette file.
    #[arg(default_value = "cassettes")]
    pub(crate) dir: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
    pub(crate) format: CheckFormat,
    /// The `traceforge.toml` whose `allow_secret_paths` the secret scan honours. Default: the
    /// one at the root of the crate that holds the cassettes, if any.
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) usage: UsageArgs,
}

#[derive(Debug, Args)]
pub(crate) struct PruneArgs {
    /// A cassette directory (searched recursively) or one cassette file.
    #[arg(default_value = "cassettes")]
    pub(crate) dir: PathBuf,
    /// Apply the changes (through traceforge's locked, atomic save). Without it, only says what
    /// would change.
    #[arg(long)]
    pub(crate) write: bool,
    /// Also delete cassettes proven unused: whose test is gone from its rebuilt test binary, or
    /// whose passing strict run used none of their interactions. A cassette without a usage
    /// record is never deleted (examples, ignored tests and filtered runs leave none).
    #[arg(long)]
    pub(crate) delete_orphans: bool,
    #[command(flatten)]
    pub(crate) usage: UsageArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// off, record, replay, auto or strict. Default: TRACEFORGE_VCR_MODE, else strict when CI
    /// is set, else auto. Given here, it wins over TRACEFORGE_VCR_MODE.
    #[arg(long, value_parser = parse_mode)]
    pub(crate) mode: Option<Mode>,
    /// The cassette file to replay and record into.
    #[arg(long, value_name = "FILE")]
    pub(crate) cassette: PathBuf,
    /// An upstream as NAME=URL, e.g. openai=https://api.openai.com/v1 (repeatable). The built-in
    /// openai, anthropic, gemini and ollama are always there; TRACEFORGE_UPSTREAM_<NAME> still
    /// overrides a URL.
    #[arg(long, value_name = "NAME=URL", value_parser = parse_upstream)]
    pub(crate) upstream: Vec<(String, String)>,
    /// The port to listen on; 0 picks a free one (printed on startup).
    #[arg(long, default_value_t = 0)]
    pub(crate) port: u16,
    /// The address to listen on. Only loopback addresses unless --allow-remote.
    #[arg(long, default_value = "127.0.0.1")]
    pub(crate) host: IpAddr,
    /// Allow --host to be an address other machines can reach. They could then read the
    /// cassette's answers and, in modes that forward, call the upstreams through this server.
    #[arg(long)]
    pub(crate) allow_remote: bool,
    /// Matching and redaction settings. Default: `traceforge.toml` in the working directory, if any.
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// A request body path left out of matching, e.g. `$.user` (repeatable).
    #[arg(long, value_name = "JSONPATH")]
    pub(crate) ignore: Vec<String>,
    /// The matching strategy: content or sequence.
    #[arg(long, value_parser = parse_strategy)]
    pub(crate) strategy: Option<Strategy>,
    /// Where the usage record of a strict or replay run goes (`<DIR>/traceforge/usage/`).
    /// Default: where `traceforge check` looks for the cassette's directory (CARGO_TARGET_DIR,
    /// else `target/` at the root of the workspace, or git repository, around it).
    #[arg(long, value_name = "DIR")]
    pub(crate) target_dir: Option<PathBuf>,
}

fn parse_mode(text: &str) -> Result<Mode, String> {
    text.parse::<Mode>().map_err(|_| {
        let names: Vec<&str> = Mode::ALL.iter().map(|mode| mode.as_str()).collect();
        format!("unknown mode `{text}`: expected one of {}", names.join(", "))
    })
}

fn parse_strategy(text: &str) -> Result<Strategy, String> {
    text.parse::<Strategy>()
}

fn parse_upstream(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, url)) if !name.trim().is_empty() && !url.trim().is_empty() => {
            Ok((name.trim().to_owned(), url.trim().to_owned()))
        }
        _ => Err(format!("expected NAME=URL, e.g. openai=https://api.openai.com/v1; got `{text}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn upstreams_and_modes_parse_with_helpful_errors() {
        assert_eq!(
            parse_upstream("openai=http://127.0.0.1:1/v1"),
            Ok(("openai".into(), "http://127.0.0.1:1/v1".into()))
        );
        assert!(parse_upstream("openai").is_err_and(|e| e.contains("NAME=URL")));
        assert!(parse_mode("recrod").is_err_and(|e| e.contains("off, record, replay, auto, strict")));
        assert_eq!(parse_mode("Strict"), Ok(Mode::Strict));
    }
}
