//! Answering one request: route it to its upstream, canonicalise it, then replay it from the
//! cassette, or forward it (streaming the answer through while recording it), or refuse it.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt as _;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt as _, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};

use super::Shared;
use crate::cassette::binary::{DecodedPieces, Encoder};
use crate::cassette::body::ReplayBody;
use crate::cassette::canonical::{canonical_request, RawRequest};
use crate::cassette::{Body, RecordedRequest, RecordedResponse};
use crate::config::Upstream;
use crate::matching::Exhausted;
use crate::mode::Mode;
use crate::server::session::Lookup;
use crate::stream::Pacing;
use crate::verify::{MissKind, UpstreamFailure};

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub(crate) type ResponseBody = UnsyncBoxBody<Bytes, BoxError>;

/// Tells clients and people what happened to a request: `hit`, `recorded`, `passthrough`,
/// `miss`, `error` (the recorder's own error, e.g. an unreachable upstream), `health` or
/// `metrics`.
pub const OUTCOME_HEADER: &str = "x-traceforge";

/// Response headers never stored: they change on every call, describe the connection, or
/// identify the account. `cf-` and `x-ratelimit-` prefixes are dropped too.
const VOLATILE_RESPONSE_HEADERS: [&str; 22] = [
    "date",
    "set-cookie",
    "server",
    "via",
    "alt-svc",
    "age",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "content-encoding",
    "x-request-id",
    "request-id",
    "openai-processing-ms",
    "openai-organization",
    "openai-project",
    "anthropic-organization-id",
    "x-envoy-upstream-service-time",
    "strict-transport-security",
    "server-timing",
    "x-amzn-requestid",
    "x-cloud-trace-context",
];

/// Request headers not passed on to the upstream (hop-by-hop, or recomputed by the client).
const UNFORWARDED_REQUEST_HEADERS: [&str; 9] = [
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "upgrade",
    "content-length",
    "accept-encoding",
];

pub(crate) async fn handle(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    Ok(answer(&shared, request).await)
}

async fn answer(shared: &Arc<Shared>, request: Request<Incoming>) -> Response<ResponseBody> {
    let (parts, body) = request.into_parts();
    let full_path = parts.uri.path();
    if full_path == "/_traceforge/health" {
        return json_response(
            StatusCode::OK,
            &serde_json::json!({"status": "ok", "mode": shared.mode.as_str()}),
            "health",
        );
    }
    if full_path == "/_traceforge/metrics" {
        let mut response = Response::new(full(Bytes::from(shared.metrics_text())));
        response
            .headers_mut()
            .insert(http::header::CONTENT_TYPE, HeaderValue::from_static(super::metrics::CONTENT_TYPE));
        response.headers_mut().insert(OUTCOME_HEADER, HeaderValue::from_static("metrics"));
        return response;
    }
    let trimmed = full_path.trim_start_matches('/');
    let (name, rest) = trimmed.split_once('/').map_or((trimmed, ""), |(n, r)| (n, r));
    let found = match shared.upstreams.get(name) {
        Some(upstream) => Some(upstream),
        None => shared.upstreams.get(&name.to_ascii_lowercase()),
    };
    let Some(upstream) = found else {
        let known: Vec<&str> = shared.upstreams.keys().map(String::as_str).collect();
        let message = format!(
            "traceforge: no upstream named `{name}` (configured: {}); point the client at Cassette::url(name)",
            known.join(", ")
        );
        return error_response(
            crate::provider::Provider::OpenAi,
            StatusCode::NOT_FOUND,
            "traceforge_unknown_upstream",
            &message,
        );
    };
    if shared.is_finished() {
        return finished_response(shared, upstream);
    }
    let rest_path = format!("/{rest}");

    let body = match Limited::new(body, shared.settings.max_body_bytes).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            let too_large = error.downcast_ref::<http_body_util::LengthLimitError>().is_some();
            let (status, message) = if too_large {
                (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("traceforge: request body over {} bytes", shared.settings.max_body_bytes),
                )
            } else {
                (StatusCode::BAD_REQUEST, format!("traceforge: could not read the request body: {error}"))
            };
            return error_response(upstream.provider, status, "traceforge_bad_request", &message);
        }
    };
    // From here the request is whole: `finish` waits for its response to be sent. (A request
    // whose body never arrives is not waited for.)
    let in_flight = shared.enter_in_flight();
    let response = respond(shared, &parts, upstream, &rest_path, body).await;
    response.map(|body| {
        UnsyncBoxBody::new(body.map_frame(move |frame| {
            let _sending = &in_flight; // dropped with the body, once hyper is done with it
            frame
        }))
    })
}

/// Answers a whole request: replays it, forwards it (recording it when the mode says so), or
/// refuses it.
async fn respond(
    shared: &Arc<Shared>,
    parts: &http::request::Parts,
    upstream: &Upstream,
    rest_path: &str,
    body: Bytes,
) -> Response<ResponseBody> {
    let canonical = canonical_request(
        &RawRequest {
            method: parts.method.as_str(),
            upstream: &upstream.name,
            path: rest_path,
            query: parts.uri.query(),
            headers: &parts.headers,
            body: &body,
        },
        &shared.settings.match_headers,
        &shared.settings.scrubber,
    );
    let key = shared.settings.matcher.key(&canonical);

    let forward_and_record = match shared.mode {
        Mode::Off => false,
        Mode::Record => true,
        Mode::Replay | Mode::Strict | Mode::Auto => {
            let Some(mut session) = shared.open_session() else { return finished_response(shared, upstream) };
            match session.lookup(&key, &canonical, shared.mode) {
                Lookup::Hit(response) => {
                    return replay_response(response, &shared.settings.scrubber, shared.settings.stream.pacing)
                }
                // `auto` records what is missing, unless repeats were told to fail.
                Lookup::Miss(kind, _) if shared.mode == Mode::Auto && !refuses_repeat(shared, &kind) => true,
                Lookup::Miss(kind, nearest) => {
                    let message = miss_message(shared, &canonical, &kind);
                    session.add_miss(key, canonical, kind, nearest);
                    return error_response(
                        upstream.provider,
                        StatusCode::NOT_FOUND,
                        "traceforge_cassette_miss",
                        &message,
                    );
                }
            }
        }
    };
    let recording = forward_and_record.then_some((key, canonical));
    forward(shared, upstream, parts, rest_path, body, recording).await
}

/// The answer to a request that arrives after the test finished its recorder.
fn finished_response(shared: &Shared, upstream: &Upstream) -> Response<ResponseBody> {
    let message =
        format!("traceforge: the recorder for {} has finished; start a new one", shared.cassette_path.display());
    error_response(upstream.provider, StatusCode::SERVICE_UNAVAILABLE, "traceforge_finished", &message)
}

/// Whether a call beyond the recording must fail even in `auto` (`on_exhausted(Error)`).
fn refuses_repeat(shared: &Shared, kind: &MissKind) -> bool {
    matches!(kind, MissKind::Exhausted { .. } | MissKind::BeyondSequence { .. })
        && shared.settings.matcher.exhausted == Some(Exhausted::Error)
}

fn miss_message(shared: &Shared, request: &RecordedRequest, kind: &MissKind) -> String {
    let why = match kind {
        MissKind::NoCassette => "the cassette file does not exist".to_owned(),
        MissKind::NotRecorded => "no recorded request matches it".to_owned(),
        MissKind::Exhausted { calls, recorded } => {
            format!("it was recorded {recorded} time(s) and this is call {calls}")
        }
        MissKind::BeyondSequence { call, recorded } => format!("call {call} is beyond the {recorded} recorded call(s)"),
        MissKind::OutOfSequence { call } => format!("call {call} differs from the request recorded at that position"),
    };
    format!(
        "traceforge ({} mode): no recording for {} in {}: {why}. The test will fail with a diff; re-record with: {}",
        shared.mode,
        request.summary(),
        shared.cassette_path.display(),
        shared.rerecord
    )
}

fn replay_response(
    recorded: &RecordedResponse,
    scrubber: &crate::redact::Scrubber,
    pacing: Pacing,
) -> Response<ResponseBody> {
    // Secrets kept out of the cassette as placeholders go back in, from the environment.
    let restored = scrubber.restore(&recorded.body);
    let body = restored.as_ref().unwrap_or(&recorded.body);
    let mut response = Response::new(match body.replay() {
        ReplayBody::Full(bytes) => full(bytes),
        ReplayBody::Pieces(pieces) => UnsyncBoxBody::new(Pieces(pieces)),
        ReplayBody::Chunks { chunks, complete, offsets_ms } => {
            // One frame per event. After each frame the stream yields once, so that hyper writes
            // and flushes it before it polls the next. Without this, the client still reads one
            // chunk per event (HTTP/1.1 chunks and HTTP/2 DATA frames keep their boundaries), but
            // hyper batches a ready stream into few writes, and a cut-off stream's error reached
            // hyper before the headers were flushed: the client saw a failed request instead of
            // the recorded events followed by a broken body.
            let state = (chunks.into_iter().enumerate(), offsets_ms, false);
            let frames = futures_util::stream::unfold(state, move |(mut chunks, offsets, mut yielded)| async move {
                if yielded {
                    tokio::task::yield_now().await;
                }
                yielded = true;
                let (index, chunk) = chunks.next()?;
                let delay = pacing.delay(index, offsets.as_deref());
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                Some((Ok::<_, BoxError>(Frame::data(chunk)), (chunks, offsets, yielded)))
            });
            if complete {
                UnsyncBoxBody::new(StreamBody::new(frames))
            } else {
                // Reproduce a stream the upstream cut off: the client sees the same failure.
                let cut = futures_util::stream::once(async {
                    Err::<Frame<Bytes>, BoxError>("stream cut off by the upstream when it was recorded".into())
                });
                UnsyncBoxBody::new(StreamBody::new(frames.chain(cut)))
            }
        }
    });
    *response.status_mut() = StatusCode::from_u16(recorded.status).unwrap_or(StatusCode::OK);
    let headers = response.headers_mut();
    for (name, value) in &recorded.headers {
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
            headers.insert(name, value);
        }
    }
    headers.insert(OUTCOME_HEADER, HeaderValue::from_static("hit"));
    response
}

/// Calls the upstream and streams its answer to the client chunk by chunk. When `recording`
/// is set, a copy is kept and stored in the session *before* the client's body ends, so a
/// test that stops right after reading the response never loses the recording.
async fn forward(
    shared: &Arc<Shared>,
    upstream: &Upstream,
    parts: &http::request::Parts,
    rest_path: &str,
    body: Bytes,
    recording: Option<(String, RecordedRequest)>,
) -> Response<ResponseBody> {
    let summary = recording
        .as_ref()
        .map_or_else(|| format!("{} {} {}", parts.method, upstream.name, rest_path), |(_, r)| r.summary());
    let url = format!("{}{}", upstream.base_url, rest_path);
    let target = match parts.uri.query() {
        Some(query) => format!("{url}?{query}"),
        None => url.clone(),
    };
    let fail = |shared: &Shared, error: String| {
        if let Some(mut session) = shared.open_session() {
            session.upstream_failures.push(UpstreamFailure {
                summary: summary.clone(),
                url: url.clone(),
                error: error.clone(),
            });
        }
        let message = format!("traceforge: upstream `{}` failed for {summary}: {error}", upstream.name);
        error_response(upstream.provider, StatusCode::BAD_GATEWAY, "traceforge_upstream_error", &message)
    };
    let client = match shared.client() {
        Ok(client) => client,
        Err(error) => return fail(shared, format!("cannot build the HTTP client: {error}")),
    };
    let mut outgoing = HeaderMap::new();
    for (name, value) in &parts.headers {
        if !UNFORWARDED_REQUEST_HEADERS.contains(&name.as_str()) {
            outgoing.append(name.clone(), value.clone());
        }
    }
    // Ask for an uncompressed body, so that nothing is buffered in a decoder on the way to the
    // client; an upstream that compresses anyway is decoded (gzip, deflate, br, zstd), stored
    // decoded and passed on as identity, without `content-encoding`.
    outgoing.insert(http::header::ACCEPT_ENCODING, HeaderValue::from_static("identity"));
    let in_flight = shared.enter_in_flight();
    let started = std::time::Instant::now();
    let sent = client.request(parts.method.clone(), &target).headers(outgoing).body(body).send().await;
    let upstream_response = match sent {
        Ok(response) => {
            shared.metrics.observe_upstream(&upstream.name, started.elapsed());
            response
        }
        Err(error) => return fail(shared, describe_reqwest_error(&error)),
    };

    let status = upstream_response.status();
    let mut client_headers = HeaderMap::new();
    let mut stored_headers = std::collections::BTreeMap::new();
    for (name, value) in upstream_response.headers() {
        let lower = name.as_str();
        if ["transfer-encoding", "connection", "keep-alive", "content-length"].contains(&lower) {
            continue;
        }
        client_headers.append(name.clone(), value.clone());
        let volatile = VOLATILE_RESPONSE_HEADERS.contains(&lower)
            || lower.starts_with("cf-")
            || lower.starts_with("x-ratelimit-")
            || lower.starts_with("anthropic-ratelimit-")
            || lower.starts_with("x-envoy-")
            || lower == "retry-after"
            || shared.settings.scrubber.is_secret_header(lower);
        if !volatile {
            if let Ok(text) = value.to_str() {
                stored_headers
                    .entry(lower.to_owned())
                    .and_modify(|v: &mut String| {
                        v.push_str(", ");
                        v.push_str(text);
                    })
                    .or_insert_with(|| text.to_owned());
            }
        }
    }
    let content_type = stored_headers.get("content-type").cloned();
    let recording = match recording {
        Some(_) if !shared.settings.record_errors.records(status.as_u16()) => {
            if let Some(mut session) = shared.open_session() {
                session.not_recorded.push(format!("{summary}: {status}"));
            }
            None
        }
        other => other,
    };
    let outcome = if recording.is_some() { "recorded" } else { "passthrough" };

    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(16);
    let task_shared = Arc::clone(shared);
    let record_offsets = shared.settings.stream.record_offsets;
    tokio::spawn(async move {
        let _in_flight = in_flight;
        let started = std::time::Instant::now();
        // A binary body is base64-encoded as it arrives, each chunk freed once encoded: the
        // recording is never the raw bytes and their base64 at once.
        let mut encoder = recording
            .as_ref()
            .filter(|_| Body::is_binary_media(content_type.as_deref()))
            .map(|_| Encoder::new(upstream_response.content_length()));
        let mut chunks = upstream_response.bytes_stream();
        // Any other copy is the upstream's own chunks (reference-counted, not copied), with the
        // total length and arrival time after each: joined once at the end.
        let mut copy: Vec<Bytes> = Vec::new();
        let mut arrivals: Vec<(usize, u64)> = Vec::new();
        let mut length = 0;
        let mut client_gone = false;
        let mut failure = None;
        while let Some(next) = chunks.next().await {
            match next {
                Ok(chunk) => {
                    let kept = recording.is_some().then(|| chunk.clone());
                    // The client gets each chunk before it is recorded.
                    if !client_gone && sender.send(Ok(Frame::data(chunk))).await.is_err() {
                        client_gone = true;
                        if recording.is_none() {
                            break;
                        }
                    }
                    if let Some(chunk) = kept {
                        length += chunk.len();
                        if record_offsets {
                            arrivals.push((length, started.elapsed().as_millis() as u64));
                        }
                        match &mut encoder {
                            Some(encoder) => encoder.push(&chunk),
                            None => copy.push(chunk),
                        }
                    }
                }
                Err(error) => {
                    // Passed on to the client only once the recording is stored, below.
                    failure = Some((describe_reqwest_error(&error), error));
                    break;
                }
            }
        }
        let (failure, broken) = match failure {
            Some((message, error)) => (Some(message), Some(error)),
            None => (None, None),
        };
        let recorded = recording.map(|(key, request)| {
            if let Some(encoder) = encoder.take().filter(|_| length > 0) {
                return (key, request, Body::Binary { base64: encoder.finish() });
            }
            let bytes = join(copy, length);
            let mut body = Body::from_bytes(content_type.as_deref(), &bytes, failure.is_none());
            if record_offsets {
                body.set_offsets(offsets(&body, &bytes, &arrivals));
            }
            // The raw bytes go before the answer is assembled: a large stream's text is as large.
            drop(bytes);
            body.assemble();
            (key, request, body)
        });
        // After `finish` (its grace for in-flight calls ran out) the recording is dropped.
        if let Some(mut session) = task_shared.open_session() {
            match recorded {
                Some((key, request, body)) => {
                    let streamed = matches!(body, Body::Sse { .. } | Body::Ndjson { .. });
                    match failure {
                        Some(error) if !streamed => {
                            session.upstream_failures.push(UpstreamFailure { summary, url, error })
                        }
                        _ => {
                            let response = RecordedResponse { status: status.as_u16(), headers: stored_headers, body };
                            match prepare_recording(&task_shared, key, request, response) {
                                Some((key, request, response)) => session.record(key, request, response),
                                None => session.passed_through += 1,
                            }
                        }
                    }
                }
                None => session.passed_through += 1,
            }
        }
        // Only now does the client see the end of the body, or the upstream's failure.
        if let Some(error) = broken {
            let _ = sender.send(Err(Box::new(error))).await;
        }
        drop(sender);
    });

    let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    });
    let mut response = Response::new(UnsyncBoxBody::new(StreamBody::new(stream)));
    *response.status_mut() = status;
    *response.headers_mut() = client_headers;
    response.headers_mut().insert(OUTCOME_HEADER, HeaderValue::from_static(outcome));
    response
}

/// Scrubs a response and runs the user's hook on the whole interaction before it is kept. The
/// hook may change the request, so the key is recomputed; a hook that removes the response
/// means "do not record this one".
fn prepare_recording(
    shared: &Shared,
    key: String,
    request: RecordedRequest,
    mut response: RecordedResponse,
) -> Option<(String, RecordedRequest, RecordedResponse)> {
    let scrubber = &shared.settings.scrubber;
    scrubber.scrub_response(&mut response);
    let mut interaction = crate::cassette::Interaction { key, request, responses: vec![response] };
    scrubber.apply_hook(&mut interaction);
    let key = shared.settings.matcher.key(&interaction.request);
    let response = interaction.responses.pop()?;
    Some((key, interaction.request, response))
}

/// The chunks as one buffer: no copy for a body that came in one chunk, one copy otherwise.
fn join(chunks: Vec<Bytes>, length: usize) -> Bytes {
    if chunks.len() == 1 {
        return chunks.into_iter().next().unwrap_or_default();
    }
    let mut joined = bytes::BytesMut::with_capacity(length);
    for chunk in chunks {
        joined.extend_from_slice(&chunk);
    }
    joined.freeze()
}

/// When each stored event or line arrived: the arrival time of the chunk that completed it.
fn offsets(body: &Body, bytes: &[u8], arrivals: &[(usize, u64)]) -> Vec<u64> {
    let ends = match body {
        Body::Sse { .. } => crate::stream::parse_sse_with_ends(bytes).1,
        Body::Ndjson { .. } => crate::stream::ndjson_ends(bytes),
        _ => return Vec::new(),
    };
    ends.iter()
        .map(|end| {
            let at = arrivals.partition_point(|(length, _)| length < end);
            arrivals.get(at).or(arrivals.last()).map_or(0, |(_, ms)| *ms)
        })
        .collect()
}

fn describe_reqwest_error(error: &reqwest::Error) -> String {
    let kind = if error.is_connect() {
        "connection failed"
    } else if error.is_timeout() {
        "timed out"
    } else if error.is_body() || error.is_decode() {
        "the response body broke off"
    } else {
        "request failed"
    };
    let mut message = format!("{kind}: {error}");
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    message
}

/// A binary body decoded as it is sent, with its exact length (so it goes out with a
/// `content-length`, as a body in one piece would).
struct Pieces(DecodedPieces);

impl hyper::body::Body for Pieces {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        std::task::Poll::Ready(self.0.next().map(|piece| Ok(Frame::data(piece))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.remaining() == 0
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.0.remaining())
    }
}

fn full(bytes: Bytes) -> ResponseBody {
    UnsyncBoxBody::new(Full::new(bytes).map_err(|never: Infallible| match never {}))
}

fn json_response(status: StatusCode, body: &serde_json::Value, outcome: &'static str) -> Response<ResponseBody> {
    let mut response = Response::new(full(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response.headers_mut().insert(OUTCOME_HEADER, HeaderValue::from_static(outcome));
    response
}

/// An error in the provider's own shape, with `x-should-retry: false` so SDKs report it at
/// once instead of retrying.
pub(crate) fn error_response(
    provider: crate::provider::Provider,
    status: StatusCode,
    kind: &str,
    message: &str,
) -> Response<ResponseBody> {
    let body = provider.error_body(status.as_u16(), kind, message);
    let outcome = if kind == "traceforge_cassette_miss" { "miss" } else { "error" };
    let mut response = json_response(status, &body, outcome);
    response.headers_mut().insert("x-should-retry", HeaderValue::from_static("false"));
    response
}
