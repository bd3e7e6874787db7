//! Upstream faults while recording: a refused connection, a connection reset mid-body, a
//! timeout, 429 and 5xx answers. Each is reported clearly, to the client and in the test's
//! result; error statuses are not recorded unless the test asks for it; a request retried after
//! a 429 leaves only the success in the cassette.

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use support::{cassette_in, scratch};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use traceforge::cassette::storage;
use traceforge::{Error, Mode, RecordErrors, Recorder, RecorderBuilder};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn builder(cassette: &Path, upstream: &str) -> RecorderBuilder {
    Recorder::builder().cassette(cassette).upstream("openai", upstream).force_mode(Mode::Record)
}

fn start(builder: RecorderBuilder) -> Recorder {
    builder.start().unwrap_or_else(|e| panic!("recorder did not start: {e}"))
}

/// Posts a chat request; returns the status, the outcome header and the body, or the client's
/// error when the body broke off.
async fn post(base: &str) -> Result<(u16, String, Value), String> {
    let response = reqwest::Client::new()
        .post(format!("{base}/chat/completions"))
        .json(&json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let outcome =
        response.headers().get(traceforge::OUTCOME_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let bytes = response.bytes().await.map_err(|e| format!("body: {e}"))?;
    Ok((status, outcome, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
}

/// Finishes a run that must fail because of its upstream; returns the failure text.
async fn upstream_failure(rec: Recorder) -> String {
    match rec.finish().await {
        Err(Error::Verification(failure)) => {
            assert_eq!(failure.upstream_failures.len(), 1, "{failure}");
            failure.to_string()
        }
        other => panic!("expected an upstream failure, got {other:?}"),
    }
}

/// A raw upstream that accepts one connection, reads the request, and then does `then`.
async fn raw_upstream<F, Fut>(then: F) -> String
where
    F: FnOnce(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
    let address = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    tokio::spawn(async move {
        if let Ok((mut stream, _)) = listener.accept().await {
            let mut buffer = vec![0u8; 64 * 1024];
            let mut seen = Vec::new();
            // Read until the end of the headers and the (small) JSON body: bounded by the buffer.
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") || !seen.ends_with(b"}") {
                match stream.read(&mut buffer).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => seen.extend_from_slice(&buffer[..n]),
                }
            }
            then(stream).await;
        }
    });
    format!("http://{address}/v1")
}

#[tokio::test]
async fn a_refused_connection_is_a_502_and_a_clear_test_failure() {
    let dir = scratch();
    let cassette = cassette_in(&dir, "refused");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("{e}"));
    let rec = start(builder(&cassette, &format!("http://127.0.0.1:{port}/v1")));
    let (status, outcome, body) = post(&rec.url("openai")).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((status, outcome.as_str()), (502, "error"));
    assert_eq!(body["error"]["type"], "traceforge_upstream_error");
    let message = upstream_failure(rec).await;
    assert!(message.contains("connection failed"), "{message}");
    assert!(message.contains(&format!("127.0.0.1:{port}/v1/chat/completions")), "{message}");
    assert!(!cassette.exists(), "nothing is written after a failed upstream call");
}

#[tokio::test]
async fn one_failed_upstream_call_discards_a_tests_recordings_unless_asked_to_save_the_rest() {
    let refused = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("{e}"));
    let server = MockServer::start().await;
    mock_status(&server, 200, None).await;
    for save_anyway in [false, true] {
        let dir = scratch();
        let cassette = cassette_in(&dir, "mixed");
        let rec = start(
            builder(&cassette, &format!("{}/v1", server.uri()))
                .upstream("refused", &format!("http://127.0.0.1:{refused}/v1"))
                .save_despite_upstream_failures(save_anyway),
        );
        assert_eq!(post(&rec.url("openai")).await.map(|r| r.0), Ok(200));
        assert_eq!(post(&rec.url("refused")).await.map(|r| r.0), Ok(502));
        let failure = match rec.finish().await {
            Err(Error::Verification(failure)) => failure,
            other => panic!("an upstream failure must fail the run (save_anyway {save_anyway}): {other:?}"),
        };
        assert_eq!((failure.upstream_failures.len(), failure.saved), (1, save_anyway), "{failure}");
        let saved = storage::load(&cassette).unwrap_or_else(|e| panic!("{e}"));
        if save_anyway {
            assert_eq!(saved.map(|f| f.interactions.len()), Some(1), "the good call was not saved");
            assert!(failure.to_string().contains("The calls that succeeded were saved"), "{failure}");
        } else {
            assert!(saved.is_none(), "a test whose upstream failed saved its cassette");
            assert!(!failure.to_string().contains("were saved"), "{failure}");
        }
    }
}

#[tokio::test]
async fn a_connection_reset_mid_body_is_reported_and_not_recorded() {
    let dir = scratch();
    let cassette = cassette_in(&dir, "reset");
    let upstream = raw_upstream(|mut stream| async move {
        let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"partial\": ";
        let _ = stream.write_all(head.as_bytes()).await;
        let _ = stream.flush().await;
        let _ = stream.set_zero_linger(); // close with RST, not FIN
        drop(stream);
    })
    .await;
    let rec = start(builder(&cassette, &upstream));
    let result = post(&rec.url("openai")).await;
    assert!(result.is_err(), "the client must see the body break off, got {result:?}");
    let message = upstream_failure(rec).await;
    assert!(message.contains("the response body broke off"), "{message}");
    assert!(!cassette.exists());
}

#[tokio::test]
async fn an_upstream_that_never_answers_times_out_with_a_clear_error() {
    let dir = scratch();
    let cassette = cassette_in(&dir, "timeout");
    let (hold, held) = tokio::sync::oneshot::channel::<()>();
    let upstream = raw_upstream(|stream| async move {
        let _ = held.await; // keep the connection open, silent, until the test ends
        drop(stream);
    })
    .await;
    let rec = start(builder(&cassette, &upstream).read_timeout(Duration::from_millis(300)));
    let started = std::time::Instant::now();
    let (status, _, body) = post(&rec.url("openai")).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, 502);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(body["error"]["message"].as_str().unwrap_or_default().contains("timed out"), "{body}");
    let message = upstream_failure(rec).await;
    assert!(message.contains("timed out"), "{message}");
    assert!(!cassette.exists());
    drop(hold);
}

async fn mock_status(server: &MockServer, status: u16, times: Option<u64>) {
    let mut mock = Mock::given(method("POST")).and(path("/v1/chat/completions")).respond_with(
        ResponseTemplate::new(status).set_body_json(json!({"error": {"message": format!("status {status}")}})),
    );
    if let Some(times) = times {
        mock = mock.up_to_n_times(times);
    }
    mock.mount(server).await;
}

#[tokio::test]
async fn error_statuses_reach_the_client_and_are_not_recorded_by_default() {
    for (status, reason) in
        [(429, "429 Too Many Requests"), (500, "500 Internal Server Error"), (503, "503 Service Unavailable")]
    {
        let dir = scratch();
        let cassette = cassette_in(&dir, "errors");
        let server = MockServer::start().await;
        mock_status(&server, status, None).await;
        let rec = start(builder(&cassette, &format!("{}/v1", server.uri())));
        let (got, outcome, body) = post(&rec.url("openai")).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((got, outcome.as_str()), (status, "passthrough"));
        assert_eq!(body["error"]["message"], format!("status {status}"), "the upstream's own error body");
        let report = rec.finish().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((report.recorded, report.passed_through, report.saved), (0, 1, false));
        assert_eq!(report.not_recorded, vec![format!("POST openai /chat/completions: {reason}")]);
        assert!(!cassette.exists(), "{status} must not create a cassette");
    }
}

#[tokio::test]
async fn a_request_retried_after_a_429_records_only_the_success() {
    let dir = scratch();
    let cassette = cassette_in(&dir, "retry");
    let server = MockServer::start().await;
    mock_status(&server, 429, Some(1)).await;
    mock_status(&server, 200, None).await;
    let rec = start(builder(&cassette, &format!("{}/v1", server.uri())));
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let (status, _, _) = post(&rec.url("openai")).await.unwrap_or_else(|e| panic!("{e}"));
        statuses.push(status);
        if status != 429 {
            break;
        }
    }
    assert_eq!(statuses, [429, 200]);
    let report = rec.finish().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((report.recorded, report.not_recorded.len(), report.saved), (1, 1, true));
    let file = storage::load(&cassette).unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|| panic!("no cassette"));
    assert_eq!(file.interactions.len(), 1);
    let statuses: Vec<u16> = file.interactions[0].responses.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200]);

    // Strict replay: one call, answered 200 at once, and nothing left unused.
    let rec = start(builder(&cassette, "http://127.0.0.1:9/v1").force_mode(Mode::Strict));
    assert_eq!(post(&rec.url("openai")).await.map(|r| r.0), Ok(200));
    rec.finish().await.unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn recording_error_statuses_is_configurable() {
    for (policy, status, recorded) in [
        (RecordErrors::ClientErrors, 400, true),
        (RecordErrors::ClientErrors, 429, false),
        (RecordErrors::ClientErrors, 500, false),
        (RecordErrors::All, 500, true),
        (RecordErrors::Never, 400, false),
    ] {
        let dir = scratch();
        let cassette = cassette_in(&dir, "policy");
        let server = MockServer::start().await;
        mock_status(&server, status, None).await;
        let rec = start(builder(&cassette, &format!("{}/v1", server.uri())).record_errors(policy));
        let (got, outcome, _) = post(&rec.url("openai")).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got, status);
        assert_eq!(outcome, if recorded { "recorded" } else { "passthrough" }, "{policy:?} {status}");
        let report = rec.finish().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(report.saved, recorded, "{policy:?} {status}");
        if recorded {
            // The recorded error replays as recorded.
            let rec = start(builder(&cassette, "http://127.0.0.1:9/v1").force_mode(Mode::Strict));
            let (got, outcome, body) = post(&rec.url("openai")).await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!((got, outcome.as_str()), (status, "hit"));
            assert_eq!(body["error"]["message"], format!("status {status}"));
            rec.finish().await.unwrap_or_else(|e| panic!("{e}"));
        }
    }
}
