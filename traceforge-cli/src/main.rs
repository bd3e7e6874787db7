//! The `traceforge` command: inspect (`list`, `show`), keep healthy (`check`, `prune`) and
//! serve (`serve`) traceforge cassettes. See `docs/cli.md`.

mod args;
mod cassettes;
mod check;
mod evidence;
mod failure;
mod list;
mod prune;
mod report;
mod serve;
mod shell;
mod show;
mod style;

use std::process::ExitCode;

use clap::Parser as _;

use crate::args::{Cli, Command};
use crate::style::Style;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve(_)) {
        quit_quietly_on_closed_pipe();
    }
    let style = Style::for_stdout(cli.color);
    let result = match &cli.command {
        Command::List(args) => list::run(args, style),
        Command::Show(args) => show::run(args, style),
        Command::Check(args) => check::run(args, style),
        Command::Prune(args) => prune::run(args, style),
        Command::Serve(args) => serve::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            if failure.message.starts_with("traceforge") {
                eprintln!("{failure}"); // the library's own messages already say who speaks
            } else if !failure.message.is_empty() {
                eprintln!("traceforge: {failure}");
            }
            ExitCode::from(failure.exit)
        }
    }
}

/// `traceforge show big.json | head` should stop quietly when `head` has seen enough, as other
/// command-line tools do, instead of panicking on the failed write. Not for `serve`: there a
/// client closing its connection must not end the server.
fn quit_quietly_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: called once at startup, before any thread exists; SIG_DFL is a valid disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
