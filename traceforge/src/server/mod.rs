//! The in-process recorder/replayer: a loopback HTTP server on its own thread and runtime (so
//! it never depends on the test's runtime flavour), started per test and finished explicitly.

mod handler;
mod metrics;
mod pool;
pub(crate) mod session;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::sync::{oneshot, watch};

pub use handler::OUTCOME_HEADER;

use crate::cassette::storage::{self, SaveOptions};
use crate::cassette::Interaction;
use crate::config::{self, Choices, RecordErrors, Upstream};
use crate::error::{Error, Result};
use crate::matching::{Exhausted, Matcher, Normaliser, Strategy};
use crate::mode::Mode;
use crate::redact::Scrubber;
use crate::usage::{self, UsageRecord, USAGE_FORMAT_VERSION};
use crate::verify::{Report, VerificationFailure};
use session::Session;

/// How long `finish` waits for responses still being sent (or streaming from an upstream).
const IN_FLIGHT_GRACE: Duration = Duration::from_secs(60);
/// Once no response is in flight, how long connections get to flush and close before the
/// server stops; a client stalled mid-request does not hold `finish` longer than this.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Settings that shape matching and recording.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) match_headers: Vec<String>,
    pub(crate) scrubber: Scrubber,
    pub(crate) matcher: Matcher,
    pub(crate) record_errors: RecordErrors,
    pub(crate) max_body_bytes: usize,
    pub(crate) allowed_secret_paths: Vec<String>,
    pub(crate) connect_timeout: Duration,
    pub(crate) read_timeout: Option<Duration>,
    pub(crate) header_read_timeout: Duration,
    pub(crate) stream: crate::stream::StreamOptions,
}

/// What the request handlers share with the test.
pub(crate) struct Shared {
    /// The command that re-records this cassette, for failure messages and miss responses.
    pub(crate) rerecord: String,
    pub(crate) mode: Mode,
    pub(crate) cassette_path: PathBuf,
    pub(crate) upstreams: BTreeMap<String, Upstream>,
    pub(crate) settings: Settings,
    pub(crate) base_url: String,
    pub(crate) metrics: metrics::Metrics,
    /// The cassette as loaded in `replay` and `strict`, for the usage record.
    loaded: Option<Loaded>,
    target_dir: Option<PathBuf>,
    session: Mutex<Session>,
    client: OnceLock<std::result::Result<reqwest::Client, String>>,
    in_flight: watch::Sender<usize>,
    /// Set by `finish` (under the session lock) once it reads the run's results: from then on
    /// requests are refused and nothing changes the session.
    finished: AtomicBool,
    /// Set when the server thread stops serving, for whatever reason.
    stopped: AtomicBool,
}

/// Which file a `replay` or `strict` run loaded, and which version of it: worked out on the
/// server's thread while the test runs, since hashing the cassette and resolving its path cost
/// more than the rest of starting a recorder.
struct Loaded {
    path: PathBuf,
    bytes: Mutex<Option<bytes::Bytes>>,
    identity: OnceLock<Option<(PathBuf, String)>>,
}

impl Loaded {
    /// The file with symbolic links resolved and the sha256 of the bytes the run loaded; `None`
    /// when the path cannot be resolved (the file is gone), so no record describes it.
    fn identity(&self) -> Option<&(PathBuf, String)> {
        self.identity
            .get_or_init(|| {
                let bytes = self.bytes.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take()?;
                let canonical = std::fs::canonicalize(&self.path).ok()?;
                Some((canonical, storage::digest(&bytes)))
            })
            .as_ref()
    }
}

impl Shared {
    /// The counters of `/_traceforge/metrics`.
    pub(crate) fn metrics_text(&self) -> String {
        let counts = {
            let session = self.lock_session();
            metrics::Counts {
                hits: session.hits,
                misses: session.misses.len(),
                recorded: session.recorded.len(),
                passed_through: session.passed_through,
                upstream_failures: session.upstream_failures.len(),
            }
        };
        self.metrics.render(self.mode.as_str(), &counts)
    }

    /// The session, even if a handler panicked while holding it (its data stays consistent:
    /// every update is a single push or increment).
    pub(crate) fn lock_session(&self) -> MutexGuard<'_, Session> {
        self.session.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The session, for a request handler to change: `None` once the recorder has finished.
    pub(crate) fn open_session(&self) -> Option<MutexGuard<'_, Session>> {
        let session = self.lock_session();
        (!self.is_finished()).then_some(session)
    }

    /// Whether `finish` has read the run's results.
    pub(crate) fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }

    /// The upstream client, built on first use so replay-only runs never touch TLS or the network.
    pub(crate) fn client(&self) -> std::result::Result<&reqwest::Client, String> {
        self.client
            .get_or_init(|| {
                let mut builder = reqwest::Client::builder().connect_timeout(self.settings.connect_timeout).no_proxy();
                if let Some(timeout) = self.settings.read_timeout {
                    builder = builder.read_timeout(timeout);
                }
                builder.build().map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Counts a response (or a forward) in progress until the returned guard is dropped.
    pub(crate) fn enter_in_flight(&self) -> InFlight {
        self.in_flight.send_modify(|n| *n += 1);
        InFlight(self.in_flight.clone())
    }
}

pub(crate) struct InFlight(watch::Sender<usize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// Configures and starts a [`Recorder`]. The `#[traceforge::cassette]` attribute is sugar over this.
///
/// ```no_run
/// # async fn demo() -> Result<(), traceforge::Error> {
/// let recorder = traceforge::Recorder::builder()
///     .cassette("cassettes/manual/summary.json")
///     .upstream("openai", "https://api.openai.com/v1")
///     .mode(traceforge::Mode::Auto)
///     .start()?;
/// let base_url = recorder.url("openai"); // give this to the client
/// // ... make calls ...
/// let report = recorder.finish().await?;
/// println!("{} hits, {} recorded", report.hits, report.recorded);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until `.start()` is called"]
pub struct RecorderBuilder {
    cassette: Option<PathBuf>,
    upstreams: Vec<(String, String)>,
    mode: Option<Mode>,
    forced_mode: Option<Mode>,
    choices: Choices,
    record_errors: RecordErrors,
    max_body_bytes: usize,
    connect_timeout: Duration,
    read_timeout: Option<Duration>,
    header_read_timeout: Duration,
    stream: crate::stream::StreamOptions,
    test: Option<String>,
    rerecord: Option<String>,
    bind: SocketAddr,
    allow_remote: bool,
    target_dir: Option<PathBuf>,
    save_despite_upstream_failures: bool,
}

impl Default for RecorderBuilder {
    fn default() -> Self {
        RecorderBuilder {
            cassette: None,
            upstreams: Vec::new(),
            mode: None,
            forced_mode: None,
            choices: Choices::default(),
            record_errors: RecordErrors::default(),
            max_body_bytes: 64 * 1024 * 1024,
            connect_timeout: Duration::from_secs(30),
            read_timeout: None,
            header_read_timeout: Duration::from_secs(30),
            stream: crate::stream::StreamOptions::default(),
            test: None,
            rerecord: None,
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            allow_remote: false,
            target_dir: None,
            save_despite_upstream_failures: false,
        }
    }
}

impl RecorderBuilder {
    /// The cassette file (default: `cassettes/traceforge.json` in the working directory).
    pub fn cassette(mut self, path: impl Into<PathBuf>) -> Self {
        self.cassette = Some(path.into());
        self
    }

    /// Adds or replaces an upstream. `TRACEFORGE_UPSTREAM_<NAME>` still overrides it.
    pub fn upstream(mut self, name: &str, base_url: &str) -> Self {
        self.upstreams.push((name.to_owned(), base_url.to_owned()));
        self
    }

    /// The mode when `TRACEFORGE_VCR_MODE` is not set (which would override it).
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = Some(mode);
        self
    }

    /// A mode that ignores `TRACEFORGE_VCR_MODE`: for harnesses that must test one mode.
    pub fn force_mode(mut self, mode: Mode) -> Self {
        self.forced_mode = Some(mode);
        self
    }

    /// Makes a request header part of the request key (in addition to `anthropic-version` and
    /// `openai-beta`). Secret headers are never matched on.
    pub fn match_header(mut self, name: &str) -> Self {
        self.choices.match_headers.push(name.to_ascii_lowercase());
        self
    }

    /// Which error statuses get recorded (none by default).
    pub fn record_errors(mut self, policy: RecordErrors) -> Self {
        self.record_errors = policy;
        self
    }

    /// Treats one more header as a secret: never stored, never matched on.
    pub fn redact_header(mut self, name: &str) -> Self {
        self.choices.redact_headers.push(name.to_owned());
        self
    }

    /// Accepts secret-shaped values at this JSON path of the cassette (exact, or a prefix
    /// ending in `*`), e.g. `$.interactions[*]` is not supported but `$.interactions*` is.
    pub fn allow_secret_path(mut self, json_path: &str) -> Self {
        self.choices.allow_secret_paths.push(json_path.to_owned());
        self
    }

    /// Largest request body accepted (64 MiB by default); larger ones get a 413.
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// How long to wait for an upstream connection (30 s by default).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Reads team-wide matching and redaction settings from a `traceforge.toml` (the attribute
    /// uses the one at the crate root). A missing file is fine; an invalid one is an error.
    pub fn config_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.choices.config_file = Some(path.into());
        self
    }

    /// Leaves a body field out of the request key, e.g. `$.user`, `$.metadata` or
    /// `$.messages[*].tool_call_id`. Checked when the recorder starts.
    pub fn ignore_path(mut self, json_path: &str) -> Self {
        self.choices.ignore_paths.push(json_path.to_owned());
        self
    }

    /// The matching strategy (`TRACEFORGE_MATCH_STRATEGY` overrides it).
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.choices.strategy = Some(strategy);
        self
    }

    /// Turns on an opt-in normaliser.
    pub fn normaliser(mut self, normaliser: Normaliser) -> Self {
        if !self.choices.normalisers.contains(&normaliser) {
            self.choices.normalisers.push(normaliser);
        }
        self
    }

    /// What a call beyond the recorded ones gets (never anything but a miss in `strict`).
    pub fn on_exhausted(mut self, policy: Exhausted) -> Self {
        self.choices.exhausted = Some(policy);
        self
    }

    /// In `sequence`, how many fields may differ before a call no longer counts as the
    /// recorded one (10 by default).
    pub fn sequence_tolerance(mut self, fields: usize) -> Self {
        self.choices.sequence_tolerance = Some(fields);
        self
    }

    /// Replaces the value at this body path (requests and responses) with `<REDACTED>`.
    pub fn redact_json_path(mut self, json_path: &str) -> Self {
        self.choices.redact_json_paths.push(json_path.to_owned());
        self
    }

    /// Replaces every match of `regex` in bodies and query values with `placeholder`.
    pub fn redact_pattern(mut self, regex: &str, placeholder: &str) -> Self {
        self.choices.patterns.push((regex.to_owned(), placeholder.to_owned()));
        self
    }

    /// Keeps the value of environment variable `env` out of the cassette as `placeholder`,
    /// and puts it back into replayed responses when the variable is set.
    pub fn env_placeholder(mut self, env: &str, placeholder: &str) -> Self {
        self.choices.env_placeholders.push((env.to_owned(), placeholder.to_owned()));
        self
    }

    /// Redacts e-mail addresses, phone numbers and card numbers.
    pub fn redact_pii(mut self) -> Self {
        self.choices.pii = true;
        self
    }

    /// Runs `hook` on each interaction before it is stored (and on each incoming request, with
    /// no responses, so that matching sees the same form).
    pub fn before_save(mut self, hook: impl Fn(&mut Interaction) + Send + Sync + 'static) -> Self {
        self.choices.hook = Some(std::sync::Arc::new(hook));
        self
    }

    /// How long to wait for the upstream's next bytes (response headers or the next body chunk)
    /// before the call fails as timed out. None by default: a model may think for minutes.
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = Some(timeout);
        self
    }

    /// How long a client may take to send a request's headers before the recorder closes its
    /// connection (30 s by default), so a stalled client cannot hold a connection forever.
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// Stores when each streamed event arrived (`offsets_ms`, in milliseconds from the response
    /// headers), for [`crate::stream::Pacing::Recorded`]. Off by default: timings change on every
    /// recording and would churn the cassette diff.
    pub fn record_offsets(mut self, record: bool) -> Self {
        self.stream.record_offsets = record;
        self
    }

    /// How replayed streams are paced: not at all by default, or by the recorded offsets
    /// (scaled), or with a fixed delay before each event.
    pub fn replay_pacing(mut self, pacing: crate::stream::Pacing) -> Self {
        self.stream.pacing = pacing;
        self
    }

    /// Names the test in failure messages.
    pub fn test_name(mut self, name: &str) -> Self {
        self.test = Some(name.to_owned());
        self
    }

    /// The command printed after a failure to re-record this test.
    pub fn rerecord_command(mut self, command: &str) -> Self {
        self.rerecord = Some(command.to_owned());
        self
    }

    /// The address to listen on: `127.0.0.1:0` (a free port) by default. An address other
    /// machines can reach is refused unless [`RecorderBuilder::allow_remote`] says otherwise.
    pub fn bind(mut self, address: SocketAddr) -> Self {
        self.bind = address;
        self
    }

    /// Allows [`RecorderBuilder::bind`] to a non-loopback address. Anyone who can reach it can
    /// read the cassette's answers and, in modes that forward, call the upstreams through it.
    pub fn allow_remote(mut self, allow: bool) -> Self {
        self.allow_remote = allow;
        self
    }

    /// Where the usage record of a `strict` or `replay` run goes: `<dir>/traceforge/usage/`.
    /// By default the target directory found as [`crate::usage`] describes.
    pub fn target_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.target_dir = Some(dir.into());
        self
    }

    /// Saves what was recorded even when some upstream calls failed (the run still fails, and
    /// [`VerificationFailure::saved`] says the cassette was written). Off by default: a test
    /// whose upstream failed saves nothing. For a recorder shared by a whole suite, such as
    /// `traceforge serve`, where one failed call must not discard every other recording.
    pub fn save_despite_upstream_failures(mut self, save: bool) -> Self {
        self.save_despite_upstream_failures = save;
        self
    }

    /// Resolves the mode and upstreams, loads the cassette and starts the loopback server.
    ///
    /// Fails on an invalid mode or upstream, and on a cassette that exists but cannot be read:
    /// a corrupt cassette is reported and never overwritten.
    pub fn start(self) -> Result<Recorder> {
        let mode = match self.forced_mode {
            Some(mode) => mode,
            None => Mode::resolve(self.mode)?,
        };
        let cassette_path = self.cassette.unwrap_or_else(|| PathBuf::from("cassettes/traceforge.json"));
        let upstreams = config::resolve_upstreams(&self.upstreams)?;
        let rules = config::resolve_rules(&self.choices)?;
        let settings = Settings {
            match_headers: rules.match_headers,
            scrubber: rules.scrubber,
            matcher: rules.matcher,
            record_errors: self.record_errors,
            max_body_bytes: self.max_body_bytes,
            allowed_secret_paths: rules.allowed_secret_paths,
            connect_timeout: self.connect_timeout,
            read_timeout: self.read_timeout,
            header_read_timeout: self.header_read_timeout,
            stream: self.stream,
        };
        let (baseline, loaded) = match mode {
            Mode::Off => (None, None),
            // The runs a usage record describes: remember which version of the file they read.
            Mode::Replay | Mode::Strict => match storage::read_bytes(&cassette_path)? {
                Some(bytes) => {
                    let bytes = bytes::Bytes::from(bytes);
                    let file = storage::parse_shared(&cassette_path, &bytes)?;
                    let loaded = Loaded {
                        path: cassette_path.clone(),
                        bytes: Mutex::new(Some(bytes)),
                        identity: OnceLock::new(),
                    };
                    (Some(file), Some(loaded))
                }
                None => (None, None),
            },
            Mode::Record | Mode::Auto => (storage::load(&cassette_path)?, None),
        };

        if !self.bind.ip().is_loopback() && !self.allow_remote {
            return Err(Error::RemoteBind { address: self.bind });
        }
        let bind = self.bind;
        let server_error = |source| Error::Server { address: bind, source };
        let listener = std::net::TcpListener::bind(bind).map_err(server_error)?;
        listener.set_nonblocking(true).map_err(server_error)?;
        let address = listener.local_addr().map_err(server_error)?;

        let (in_flight, _) = watch::channel(0);
        let rerecord = self.rerecord.unwrap_or_else(|| {
            format!("TRACEFORGE_VCR_MODE=record cargo test   # then commit {}", cassette_path.display())
        });
        let shared = Arc::new(Shared {
            rerecord,
            mode,
            cassette_path,
            upstreams,
            session: Mutex::new(Session::new(baseline, settings.matcher.clone())),
            settings,
            base_url: format!("http://{address}"),
            metrics: metrics::Metrics::default(),
            loaded,
            target_dir: self.target_dir,
            client: OnceLock::new(),
            in_flight,
            finished: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
        });
        let (shutdown, shutdown_signal) = oneshot::channel();
        let server_shared = Arc::clone(&shared);
        let job: pool::Job = Box::new(move || {
            // Marks the server stopped however the job ends, a panic included.
            let stopped = Stopped(Arc::clone(&server_shared));
            if let Some(loaded) = &server_shared.loaded {
                loaded.identity();
            }
            if let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                runtime.block_on(serve(listener, server_shared, shutdown_signal));
                // Dropping the runtime closes every connection and ends every task it ran.
            }
            drop(stopped);
        });
        pool::run("traceforge-server", job).map_err(server_error)?;

        Ok(Recorder {
            cassette: Cassette { shared },
            shutdown: Some(shutdown),
            test: self.test,
            save_despite_upstream_failures: self.save_despite_upstream_failures,
        })
    }
}

/// Sets [`Shared::stopped`] when dropped.
struct Stopped(Arc<Shared>);

impl Drop for Stopped {
    fn drop(&mut self) {
        self.0.stopped.store(true, Ordering::Release);
    }
}

/// Accepts connections until told to stop; then stops accepting, lets the responses in flight
/// complete (and forwards finish recording), and gives connections a moment to flush and close.
async fn serve(listener: std::net::TcpListener, shared: Arc<Shared>, mut shutdown: oneshot::Receiver<()>) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return };
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // A client that never finishes its headers must not hold a connection forever.
    builder.http1().timer(TokioTimer::new()).header_read_timeout(shared.settings.header_read_timeout);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    // Out of file descriptors and the like: back off rather than spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let shared = Arc::clone(&shared);
                let builder = builder.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let service = service_fn(move |request| handler::handle(Arc::clone(&shared), request));
                    let _ = watcher.watch(builder.serve_connection(TokioIo::new(stream), service)).await;
                });
            }
        }
    }
    drop(listener);
    let mut in_flight = shared.in_flight.subscribe();
    let _ = tokio::time::timeout(IN_FLIGHT_GRACE, in_flight.wait_for(|n| *n == 0)).await;
    let _ = tokio::time::timeout(CLOSE_GRACE, graceful.shutdown()).await;
}

/// How the test body ended, which decides whether the cassette may be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The body returned normally (or `Ok`): the cassette may be saved.
    Passed,
    /// The body panicked or returned `Err`: nothing is written.
    Failed,
}

/// The handle a test uses: where to point its clients, and what the recorder is doing.
/// Cheap to clone.
#[derive(Clone)]
pub struct Cassette {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Cassette {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cassette")
            .field("path", &self.shared.cassette_path)
            .field("mode", &self.shared.mode)
            .field("base_url", &self.shared.base_url)
            .finish()
    }
}

impl Cassette {
    /// The base URL to give a client for upstream `name`, e.g. `http://127.0.0.1:41234/openai`.
    ///
    /// # Panics
    /// When `name` is not a configured upstream: a mistake in the test itself, reported with
    /// the list of configured names. Use [`Cassette::try_url`] to handle it instead.
    pub fn url(&self, name: &str) -> String {
        match self.try_url(name) {
            Ok(url) => url,
            Err(error) => panic!("{error}"),
        }
    }

    /// The base URL for upstream `name`, or an error naming the configured upstreams.
    pub fn try_url(&self, name: &str) -> Result<String> {
        let lower = name.to_ascii_lowercase();
        if self.shared.upstreams.contains_key(&lower) {
            Ok(format!("{}/{lower}", self.shared.base_url))
        } else {
            Err(Error::UnknownUpstream {
                name: name.to_owned(),
                known: self.shared.upstreams.keys().cloned().collect::<Vec<_>>().join(", "),
            })
        }
    }

    /// The upstreams this recorder serves, by name, with the base URLs it forwards to.
    pub fn upstreams(&self) -> Vec<Upstream> {
        self.shared.upstreams.values().cloned().collect()
    }

    /// The recorder's own address, `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> &str {
        &self.shared.base_url
    }

    /// The cassette file.
    pub fn path(&self) -> &Path {
        &self.shared.cassette_path
    }

    /// The mode in force.
    pub fn mode(&self) -> Mode {
        self.shared.mode
    }

    /// What the model answered in each response this recorder replayed or recorded so far, one
    /// per response, in the order they were sent: the assembled text, tool calls, finish reason
    /// and token usage (see [`crate::provider::Answer`]). A response that holds no answer (a
    /// binary body, JSON in no provider's shape) gives an empty answer whose `format` is
    /// [`crate::provider::WireFormat::Unknown`]. A recorded response counts when its body has
    /// been stored, which is before the client reads the end of it. Passed-through responses
    /// (`off` mode) are not kept.
    pub fn answers(&self) -> Vec<crate::provider::Answer> {
        self.shared.lock_session().answers()
    }

    /// The last of [`Cassette::answers`].
    pub fn last_answer(&self) -> Option<crate::provider::Answer> {
        self.answers().pop()
    }
}

/// A running recorder. Finish it with [`Recorder::finish`] to verify and save; dropping it
/// without finishing stops the server and writes nothing.
#[must_use = "a recorder must be finished with `.finish().await` to verify and save its cassette"]
pub struct Recorder {
    cassette: Cassette,
    shutdown: Option<oneshot::Sender<()>>,
    test: Option<String>,
    save_despite_upstream_failures: bool,
}

impl std::ops::Deref for Recorder {
    type Target = Cassette;

    fn deref(&self) -> &Cassette {
        &self.cassette
    }
}

impl Recorder {
    /// A builder with the built-in upstreams and default settings.
    pub fn builder() -> RecorderBuilder {
        RecorderBuilder::default()
    }

    /// A handle for the test body.
    pub fn cassette(&self) -> Cassette {
        self.cassette.clone()
    }

    /// Finishes a run whose test passed: see [`Recorder::finish_with`].
    pub async fn finish(self) -> Result<Report> {
        self.finish_with(Outcome::Passed).await
    }

    /// Stops the server, checks the run against its mode and, if the test passed and the mode
    /// writes, saves the cassette. Returns the report, or the failure to show the test's author.
    ///
    /// The server stops accepting connections at once; responses being sent and recordings
    /// still streaming from an upstream get up to a minute to complete first, and a request that
    /// arrives on an open connection after that gets a 503 in the provider's error shape. In
    /// `replay` and `strict`, a [usage record](crate::usage) of the run is written under the
    /// target directory.
    pub async fn finish_with(mut self, outcome: Outcome) -> Result<Report> {
        let shared = Arc::clone(&self.cassette.shared);
        // A server that stopped before it was told to could not answer the test's calls.
        let died = shared.stopped.load(Ordering::Acquire);
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if died {
            return Err(Error::RecorderStopped { path: shared.cassette_path.clone() });
        }
        // Let responses still being sent, and recordings still streaming from an upstream, land
        // in the session first. The server thread winds down on its own; it is not waited for.
        let mut in_flight = shared.in_flight.subscribe();
        let _ = tokio::time::timeout(IN_FLIGHT_GRACE, in_flight.wait_for(|n| *n == 0)).await;

        let mode = shared.mode;
        let (mut report, mut failure) = {
            let mut session = shared.lock_session();
            // No handler changes the session after this; the server winds down on its own
            // thread (it need not be waited for: requests that still come in are refused).
            shared.finished.store(true, Ordering::Release);
            session.explain_misses();
            let unused = if mode == Mode::Strict && outcome == Outcome::Passed { session.unused() } else { Vec::new() };
            // Only refused requests are misses: `replay` and `strict` ones, and repeats that
            // `on_exhausted(Error)` refuses in `auto`.
            let misses = session.misses.clone();
            let failure = VerificationFailure {
                cassette: shared.cassette_path.clone(),
                mode,
                test: self.test.clone(),
                misses,
                unused: unused.clone(),
                upstream_failures: session.upstream_failures.clone(),
                rerecord: shared.rerecord.clone(),
                saved: false,
            };
            let report = Report {
                cassette: shared.cassette_path.clone(),
                mode,
                hits: session.hits,
                misses: session.misses.len(),
                recorded: session.recorded.len(),
                passed_through: session.passed_through,
                not_recorded: session.not_recorded.clone(),
                unused: if mode == Mode::Strict { unused } else { session.unused() },
                saved: false,
            };
            if let Some((cassette, sha256)) = shared.loaded.as_ref().and_then(Loaded::identity) {
                let (executable, executable_modified_ms) = usage::executable_identity();
                let record = UsageRecord {
                    format_version: USAGE_FORMAT_VERSION,
                    cassette: cassette.clone(),
                    cassette_sha256: sha256.clone(),
                    mode: mode.as_str().to_owned(),
                    test: self.test.clone(),
                    libtest_name: usage::on_test_thread(self.test.as_deref()),
                    test_passed: outcome == Outcome::Passed,
                    misses: report.misses,
                    interactions: session.usage(),
                    executable,
                    executable_modified_ms,
                };
                let target_dir = shared.target_dir.clone().unwrap_or_else(usage::target_dir);
                usage::write_or_warn(&record, &target_dir);
            }
            (report, failure)
        };
        let broke_rules = !failure.misses.is_empty() || !failure.unused.is_empty();
        let upstream_failed = !failure.upstream_failures.is_empty();
        if broke_rules || (upstream_failed && !self.save_despite_upstream_failures) {
            return Err(Error::Verification(Box::new(failure)));
        }
        // `record` rewrites an existing cassette even when this run recorded nothing (so stale
        // recordings go); `auto` writes only what it added. Neither creates an empty file.
        let has_cassette = shared.lock_session().has_cassette();
        let worth_saving = report.recorded > 0 || (mode == Mode::Record && has_cassette);
        if outcome == Outcome::Passed && mode.writes() && worth_saving {
            let save_shared = Arc::clone(&shared);
            let save = move || {
                let options = SaveOptions { allowed_secret_paths: save_shared.settings.allowed_secret_paths.clone() };
                let session = save_shared.lock_session();
                storage::save(&save_shared.cassette_path, &options, |on_disk| session.merge(mode, on_disk)).map(|_| ())
            };
            // Saving blocks on a file lock; keep it off the async worker when we can.
            match tokio::runtime::Handle::try_current() {
                Ok(handle) => handle
                    .spawn_blocking(save)
                    .await
                    .map_err(|_| Error::RecorderStopped { path: shared.cassette_path.clone() })??,
                Err(_) => save()?,
            }
            report.saved = true;
        }
        if upstream_failed {
            failure.saved = report.saved;
            return Err(Error::Verification(Box::new(failure)));
        }
        Ok(report)
    }

    /// The recorder's address, for logging.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.cassette.shared.base_url.trim_start_matches("http://").parse().ok()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        // Stop the server; never write from here (a failing test must not save).
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}
