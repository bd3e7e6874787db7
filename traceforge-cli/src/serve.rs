//! `traceforge serve`: the library's recorder (same handler, matching, redaction and saving)
//! as a standalone server, so that tests in any language can record and replay through it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use traceforge::config::CONFIG_FILE;
use traceforge::{usage, Error, Recorder};

use crate::args::ServeArgs;
use crate::failure::Failure;
use crate::shell;

pub(crate) fn run(args: &ServeArgs) -> Result<(), Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::usage(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(serve(args))
}

async fn serve(args: &ServeArgs) -> Result<(), Failure> {
    // Before anything is printed: a script that reads the port and signals at once must find
    // the handlers in place, not the default action that kills the process without saving.
    let mut signals = Signals::install()?;
    let recorder = builder(args).start().map_err(|error| match error {
        Error::Server { .. } if args.port != 0 => {
            Failure::usage(format!("{error}. Choose another --port, or --port 0 for a free one"))
        }
        other => Failure::usage(other.to_string()),
    })?;
    print_banner(&recorder);

    let first = signals.next().await;
    let writes = recorder.mode().writes();
    eprintln!(
        "traceforge serve: {}: no new connections; finishing the responses in flight, then {} ({} to quit at once{})",
        first.name(),
        if writes { "saving" } else { "checking the run" },
        if first == Signal::Interrupt { "Ctrl-C again" } else { "Ctrl-C twice" },
        if writes { ", without saving" } else { "" }
    );
    // Ctrl-C signals the whole process group, so a test runner's own SIGTERM to this server
    // (pytest's `terminate()`) often follows the first SIGINT: only the user's second Ctrl-C
    // quits without finishing.
    tokio::spawn(async move {
        let mut interrupts = usize::from(first == Signal::Interrupt);
        loop {
            match signals.next().await {
                Signal::Interrupt => interrupts += 1,
                Signal::Terminate => {
                    eprintln!("traceforge serve: SIGTERM while finishing: ignored (Ctrl-C twice quits at once)")
                }
            }
            if interrupts >= 2 {
                eprintln!(
                    "traceforge serve: second SIGINT: quitting without {}",
                    if writes { "saving" } else { "checking" }
                );
                std::process::exit(130);
            }
        }
    });

    let cassette = recorder.path().to_path_buf();
    match recorder.finish().await {
        Ok(report) => {
            let outcome = if report.saved {
                format!("saved {}", report.cassette.display())
            } else {
                format!("{} not written", report.cassette.display())
            };
            eprintln!(
                "traceforge serve: {} hit(s), {} recorded, {} passed through, {} miss(es); {outcome}",
                report.hits, report.recorded, report.passed_through, report.misses
            );
            Ok(())
        }
        Err(Error::Verification(failure)) => {
            let outcome = match (writes, failure.saved) {
                (_, true) => format!("\ntraceforge serve: saved {} with the calls that succeeded", cassette.display()),
                (true, false) => format!("\ntraceforge serve: nothing saved; {} not written", cassette.display()),
                (false, false) => String::new(),
            };
            Err(Failure::problems(format!("{failure}{outcome}")))
        }
        Err(other) => Err(Failure::usage(other.to_string())),
    }
}

fn builder(args: &ServeArgs) -> traceforge::RecorderBuilder {
    let mut builder = Recorder::builder()
        .cassette(&args.cassette)
        .bind(SocketAddr::new(args.host, args.port))
        .allow_remote(args.allow_remote)
        .test_name(&format!("traceforge serve --cassette {}", args.cassette.display()))
        .rerecord_command(&rerecord_command(args, config_file(args)))
        // One failed call must not discard a whole suite's recordings; the run still fails.
        .save_despite_upstream_failures(true)
        // Where `check` and `prune` look for the cassette's record by default.
        .target_dir(args.target_dir.clone().unwrap_or_else(|| usage::target_dir_for(&cassette_dir(&args.cassette))));
    if let Some(mode) = args.mode {
        builder = builder.force_mode(mode);
    }
    if let Some(path) = config_file(args) {
        builder = builder.config_file(path);
    }
    for (name, url) in &args.upstream {
        builder = builder.upstream(name, url);
    }
    for path in &args.ignore {
        builder = builder.ignore_path(path);
    }
    if let Some(strategy) = args.strategy {
        builder = builder.strategy(strategy);
    }
    builder
}

/// `--config`, else `traceforge.toml` in the working directory if there is one.
fn config_file(args: &ServeArgs) -> Option<&Path> {
    match &args.config {
        Some(path) => Some(path),
        None => Some(Path::new(CONFIG_FILE)).filter(|path| path.is_file()),
    }
}

/// The directory of the cassette, absolute, which `usage::target_dir_for` starts from.
fn cassette_dir(cassette: &Path) -> PathBuf {
    let absolute = std::path::absolute(cassette).unwrap_or_else(|_| cassette.to_path_buf());
    absolute.parent().map_or_else(|| absolute.clone(), Path::to_path_buf)
}

/// The same server in record mode, to print after a strict failure: every option that decides
/// matching, redaction and where things go, so the re-recording redacts and matches the same.
fn rerecord_command(args: &ServeArgs, config: Option<&Path>) -> String {
    let mut words = vec!["traceforge serve --mode record --cassette".to_owned(), shell::quote_path(&args.cassette)];
    for (name, url) in &args.upstream {
        words.extend(["--upstream".to_owned(), shell::quote(&format!("{name}={url}"))]);
    }
    if let Some(config) = config {
        words.extend(["--config".to_owned(), shell::quote_path(config)]);
    }
    for path in &args.ignore {
        words.extend(["--ignore".to_owned(), shell::quote(path)]);
    }
    if let Some(strategy) = args.strategy {
        words.extend(["--strategy".to_owned(), shell::quote(strategy.as_str())]);
    }
    if args.host != IpAddr::from(Ipv4Addr::LOCALHOST) {
        words.extend(["--host".to_owned(), shell::quote(&args.host.to_string())]);
    }
    if args.allow_remote {
        words.push("--allow-remote".to_owned());
    }
    if args.port != 0 {
        words.extend(["--port".to_owned(), args.port.to_string()]);
    }
    if let Some(dir) = &args.target_dir {
        words.extend(["--target-dir".to_owned(), shell::quote_path(dir)]);
    }
    format!("{}   # then run the client tests against it, stop it, and commit the cassette", words.join(" "))
}

/// One `NAME: URL` line per upstream, then the control endpoints, then `listening on URL`
/// last, so a script can wait for that line and read the port from it.
fn print_banner(recorder: &Recorder) {
    let mode = recorder.mode();
    println!("traceforge serve: {mode} mode, cassette {}", recorder.path().display());
    let forwards = mode.forwards_misses();
    for upstream in recorder.upstreams() {
        let url = format!("{}/{}", recorder.base_url(), upstream.name);
        if forwards {
            println!("{}: {url} -> {}", upstream.name, upstream.base_url);
        } else {
            println!("{}: {url}", upstream.name);
        }
    }
    println!("health: {}/_traceforge/health", recorder.base_url());
    println!("metrics: {}/_traceforge/metrics", recorder.base_url());
    println!("listening on {} (SIGINT or SIGTERM to stop)", recorder.base_url());
}

/// SIGINT and SIGTERM (Ctrl-C elsewhere).
struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Signals, Failure> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let failed = |e: std::io::Error| Failure::usage(format!("cannot install the signal handlers: {e}"));
            Ok(Signals {
                interrupt: signal(SignalKind::interrupt()).map_err(failed)?,
                terminate: signal(SignalKind::terminate()).map_err(failed)?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    async fn next(&mut self) -> Signal {
        #[cfg(unix)]
        {
            tokio::select! {
                // Both pending (Ctrl-C, then a runner's SIGTERM): the user's comes first.
                biased;
                _ = self.interrupt.recv() => Signal::Interrupt,
                _ = self.terminate.recv() => Signal::Terminate,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            Signal::Interrupt
        }
    }
}

/// A stop request: the user's Ctrl-C, or a supervisor's SIGTERM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Signal {
    Interrupt,
    Terminate,
}

impl Signal {
    fn name(self) -> &'static str {
        match self {
            Signal::Interrupt if cfg!(unix) => "SIGINT",
            Signal::Interrupt => "Ctrl-C",
            Signal::Terminate => "SIGTERM",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    fn parsed(args: &[&str]) -> ServeArgs {
        let cli = crate::args::Cli::try_parse_from([&["traceforge", "serve"], args].concat())
            .unwrap_or_else(|e| panic!("{e}"));
        match cli.command {
            crate::args::Command::Serve(args) => args,
            other => panic!("not serve: {other:?}"),
        }
    }

    #[test]
    fn the_rerecord_command_repeats_every_option_that_shapes_the_cassette_quoted() {
        let args = parsed(&[
            "--mode",
            "strict",
            "--cassette",
            "my cassettes/it's.json",
            "--upstream",
            "openai=http://127.0.0.1:8080/v1",
            "--config",
            "conf/team rules.toml",
            "--ignore",
            "$.user",
            "--ignore",
            "$.messages[*].tool_call_id",
            "--strategy",
            "sequence",
            "--host",
            "::1",
            "--port",
            "8123",
            "--target-dir",
            "/tmp/build dir",
        ]);
        let command = rerecord_command(&args, config_file(&args));
        let expected = concat!(
            "traceforge serve --mode record --cassette 'my cassettes/it'\\''s.json'",
            " --upstream openai=http://127.0.0.1:8080/v1 --config 'conf/team rules.toml'",
            " --ignore '$.user' --ignore '$.messages[*].tool_call_id' --strategy sequence",
            " --host ::1 --port 8123 --target-dir '/tmp/build dir'   # then run"
        );
        assert!(command.starts_with(expected), "{command}");

        // Defaults are left out; --allow-remote goes with the host it allows.
        let args = parsed(&["--cassette", "c.json", "--host", "0.0.0.0", "--allow-remote"]);
        let command = rerecord_command(&args, None);
        assert!(
            command.starts_with("traceforge serve --mode record --cassette c.json --host 0.0.0.0 --allow-remote   #"),
            "{command}"
        );
    }
}
