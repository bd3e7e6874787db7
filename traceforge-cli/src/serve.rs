//! `traceforge serve`: the library's recorder (same handler, matching, redaction and saving)
//! as a standalone server, so that tests in any language can record and replay through it.

use std::net::SocketAddr;
use std::path::Path;

use traceforge::config::CONFIG_FILE;
use traceforge::{Error, Mode, Recorder};

use crate::args::ServeArgs;
use crate::failure::Failure;

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

    let signal = signals.next().await;
    eprintln!(
        "traceforge serve: {signal}: no new connections; finishing the responses in flight, then {} (send it again to quit at once)",
        if recorder.mode().writes() { "saving" } else { "checking the run" }
    );
    tokio::spawn(async move {
        let signal = signals.next().await;
        eprintln!("traceforge serve: second {signal}: quitting without saving");
        std::process::exit(130);
    });

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
        Err(Error::Verification(failure)) => Err(Failure::problems(failure.to_string())),
        Err(other) => Err(Failure::usage(other.to_string())),
    }
}

fn builder(args: &ServeArgs) -> traceforge::RecorderBuilder {
    let mut builder = Recorder::builder()
        .cassette(&args.cassette)
        .bind(SocketAddr::new(args.host, args.port))
        .allow_remote(args.allow_remote)
        .test_name(&format!("traceforge serve --cassette {}", args.cassette.display()))
        .rerecord_command(&rerecord_command(args));
    if let Some(mode) = args.mode {
        builder = builder.force_mode(mode);
    }
    match &args.config {
        Some(path) => builder = builder.config_file(path),
        None if Path::new(CONFIG_FILE).is_file() => builder = builder.config_file(CONFIG_FILE),
        None => {}
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
    if let Some(dir) = &args.target_dir {
        builder = builder.target_dir(dir);
    }
    builder
}

/// The same server in record mode, to print after a strict failure.
fn rerecord_command(args: &ServeArgs) -> String {
    let mut command = format!("traceforge serve --mode record --cassette {}", args.cassette.display());
    for (name, url) in &args.upstream {
        command.push_str(&format!(" --upstream {name}={url}"));
    }
    command.push_str("   # then run the client tests against it, stop it, and commit the cassette");
    command
}

/// One `NAME: URL` line per upstream, then the control endpoints, then `listening on URL`
/// last, so a script can wait for that line and read the port from it.
fn print_banner(recorder: &Recorder) {
    let mode = recorder.mode();
    println!("traceforge serve: {mode} mode, cassette {}", recorder.path().display());
    let forwards = matches!(mode, Mode::Off | Mode::Record | Mode::Auto);
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

    async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.interrupt.recv() => "SIGINT",
                _ = self.terminate.recv() => "SIGTERM",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}
