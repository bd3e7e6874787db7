//! Hostile requests to the recorder: huge bodies, malformed HTTP, invalid paths and clients
//! that stall. The recorder answers with an error or closes the connection, keeps serving
//! everyone else, and listens on 127.0.0.1 only.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use support::fake_openai::FakeOpenAi;
use support::{cassette_in, scratch};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use traceforge::{Mode, Recorder};

/// Upper bound on any single exchange in this file, so a hang fails instead of blocking CI.
const LIMIT: Duration = Duration::from_secs(20);

fn recorder(cassette: &Path, upstream: &str) -> Recorder {
    Recorder::builder()
        .cassette(cassette)
        .upstream("openai", upstream)
        .force_mode(Mode::Record)
        .max_body_bytes(1024 * 1024)
        .header_read_timeout(Duration::from_secs(1))
        .start()
        .unwrap_or_else(|e| panic!("recorder did not start: {e}"))
}

fn address(rec: &Recorder) -> std::net::SocketAddr {
    rec.local_addr().unwrap_or_else(|| panic!("no address"))
}

/// Writes `bytes` on a fresh connection and reads until the recorder closes it (or `LIMIT`).
async fn raw_exchange(rec: &Recorder, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(address(rec)).await.unwrap_or_else(|e| panic!("{e}"));
    let _ = stream.write_all(bytes).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(LIMIT, stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the recorder neither answered nor closed within {LIMIT:?}");
    String::from_utf8_lossy(&answer).into_owned()
}

/// A normal request still works: the recorder is unaffected by whatever came before.
async fn still_serves(rec: &Recorder, prompt: &str) {
    let response = reqwest::Client::new()
        .post(format!("{}/chat/completions", rec.url("openai")))
        .json(&json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": prompt}]}))
        .timeout(LIMIT)
        .send()
        .await
        .unwrap_or_else(|e| panic!("a normal request failed: {e}"));
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_body_over_the_limit_gets_a_413_and_nothing_is_recorded() {
    let dir = scratch();
    let cassette = cassette_in(&dir, "huge");
    let fake = FakeOpenAi::start().await;
    let rec = recorder(&cassette, &fake.base_url());

    // Declared as 64 MiB, sent as 2 MiB: the recorder stops reading at its 1 MiB limit.
    let mut stream = TcpStream::connect(address(&rec)).await.unwrap_or_else(|e| panic!("{e}"));
    let head = "POST /openai/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 67108864\r\n\r\n";
    stream.write_all(head.as_bytes()).await.unwrap_or_else(|e| panic!("{e}"));
    let (mut reader, mut writer) = stream.into_split();
    let sender = tokio::spawn(async move {
        let chunk = vec![b' '; 64 * 1024];
        for _ in 0..32 {
            if writer.write_all(&chunk).await.is_err() {
                break; // the recorder closed the connection: expected
            }
        }
        writer
    });
    let mut answer = vec![0u8; 4096];
    let read = tokio::time::timeout(LIMIT, reader.read(&mut answer)).await;
    let n = read.unwrap_or_else(|_| panic!("no answer to an oversized body")).unwrap_or(0);
    let text = String::from_utf8_lossy(&answer[..n]);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("request body over 1048576 bytes"), "{text}");
    drop(sender);

    still_serves(&rec, "after a huge body").await;
    let report = rec.finish().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.recorded, 1, "only the normal request is recorded");
    assert_eq!(fake.received().await, 1, "the huge body never reached the upstream");
}

#[tokio::test]
async fn malformed_http_gets_an_error_or_a_closed_connection() {
    let dir = scratch();
    let cassette = cassette_in(&dir, "malformed");
    let fake = FakeOpenAi::start().await;
    let rec = recorder(&cassette, &fake.base_url());
    let garbage: [&[u8]; 7] = [
        b"\x00\xff\xfe garbage \r\n\r\n",
        b"GET\r\n\r\n",
        b"POST /openai/chat/completions HTTP/1.1\r\ncontent-length: nope\r\n\r\n",
        b"POST /openai/chat/completions HTTP/1.1\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
        b"GET /openai/models HTTP/9.9\r\n\r\n",
        b"GET /openai/models HTTP/1.1\r\nbad header line without colon\r\n\r\n",
        &[b'A'; 512 * 1024],
    ];
    for bytes in garbage {
        let answer = raw_exchange(&rec, bytes).await;
        // Either an HTTP error status or a plain close; never a 2xx, never a hang.
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 4") || answer.starts_with("HTTP/1.1 5"),
            "{answer:.200}"
        );
    }
    still_serves(&rec, "after garbage").await;
    let report = rec.finish().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.recorded, 1);
    assert_eq!(fake.received().await, 1, "no garbage reached the upstream");
}

#[tokio::test]
async fn invalid_paths_get_a_404_and_never_leave_the_configured_upstream() {
    let dir = scratch();
    let cassette = cassette_in(&dir, "paths");
    let fake = FakeOpenAi::start().await;
    let rec = recorder(&cassette, &fake.base_url());
    for target in ["/", "/nope/chat/completions", "/%6fpenai/chat/completions", "/../openai/x", "*"] {
        let answer =
            raw_exchange(&rec, format!("GET {target} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes())
                .await;
        assert!(answer.starts_with("HTTP/1.1 4"), "{target}: {answer:.200}");
    }
    // An absolute-form target names another host; the recorder still only forwards to the
    // configured upstream (and the fake answers 404 for an unknown path).
    let answer = raw_exchange(
        &rec,
        b"GET http://example.invalid/openai/v1/models HTTP/1.1\r\nhost: example.invalid\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer:.300}");
    assert_eq!(fake.received().await, 1, "the absolute-form request went to the configured upstream");
    still_serves(&rec, "after bad paths").await;
    let report = rec.finish().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.recorded, 1);
}

#[tokio::test]
async fn a_stalled_client_is_cut_off_and_does_not_block_others_or_finish() {
    let dir = scratch();
    let cassette = cassette_in(&dir, "slow");
    let fake = FakeOpenAi::start().await;
    let rec = recorder(&cassette, &fake.base_url());

    // Headers that never end: the 1 s header timeout closes the connection.
    let mut slow_headers = TcpStream::connect(address(&rec)).await.unwrap_or_else(|e| panic!("{e}"));
    slow_headers
        .write_all(b"POST /openai/chat/completions HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // A body that never ends: holds its connection, but only its own.
    let mut slow_body = TcpStream::connect(address(&rec)).await.unwrap_or_else(|e| panic!("{e}"));
    slow_body
        .write_all(b"POST /openai/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{\"a\":")
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // Meanwhile, others are served.
    for i in 0..3 {
        still_serves(&rec, &format!("while someone stalls {i}")).await;
    }
    let started = Instant::now();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(LIMIT, slow_headers.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the stalled connection was not closed");
    assert!(started.elapsed() < Duration::from_secs(5), "closed after {:?}", started.elapsed());

    // Finishing does not wait for the stalled body.
    let report = tokio::time::timeout(LIMIT, rec.finish()).await;
    let report = report.unwrap_or_else(|_| panic!("finish hung on a stalled client")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.recorded, 3);
    drop(slow_body);
}

#[tokio::test]
async fn the_recorder_listens_on_loopback_only() {
    let dir = scratch();
    let rec = recorder(&cassette_in(&dir, "loopback"), "http://127.0.0.1:9/v1");
    let address = address(&rec);
    assert!(address.ip().is_loopback(), "{address}");
    assert_eq!(address.ip(), std::net::Ipv4Addr::LOCALHOST);
    // If this machine has a non-loopback address, the port is closed there. (Finding the
    // address sends no packet: connecting a UDP socket only picks a route.)
    let external = std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|socket| socket.connect("192.0.2.1:9").map(|_| socket))
        .and_then(|socket| socket.local_addr())
        .map(|a| a.ip())
        .ok()
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified());
    if let Some(ip) = external {
        let attempt = tokio::time::timeout(LIMIT, TcpStream::connect((ip, address.port()))).await;
        assert!(matches!(attempt, Ok(Err(_))), "the recorder answered on {ip}:{}", address.port());
    } else {
        println!("no non-loopback address on this machine; checked the bound address only");
    }
    drop(rec);
}
