//! No secret ever on disk: a corpus of requests and responses with secrets in every position,
//! recorded through the real recorder; the test reads every byte written. Replay still matches.

mod support;

use serde_json::{json, Value};
use support::{cassette_in, read, scratch};
use traceforge::{Error, Mode, Recorder, RecorderBuilder};
use wiremock::{matchers::any, Mock, MockServer, Request, ResponseTemplate};

/// An upstream that echoes the request body back inside an answer that itself carries secrets
/// in a header, a cookie and JSON fields.
async fn echo_upstream() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(|request: &Request| {
            let echoed: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
            ResponseTemplate::new(200)
                .insert_header("set-cookie", "session=RESPCOOKIESECRET; HttpOnly")
                .insert_header("openai-organization", "org-RESPORGSECRET")
                .insert_header("x-api-key", "RESPHEADERSECRET")
                .set_body_json(json!({
                    "echo": echoed,
                    "credentials": {"access_token": "RESPACCESSSECRET", "refresh_token": "RESPREFRESHSECRET"},
                    "usage": {"total_tokens": 12, "prompt_tokens": 5, "max_tokens": 7},
                }))
        })
        .mount(&server)
        .await;
    server
}

const SECRETS: [&str; 18] = [
    "HDRAUTHSECRET",
    "HDRPROXYSECRET",
    "HDRXAPISECRET",
    "HDRAPIKEYSECRET",
    "HDRGOOGSECRET",
    "HDRCOOKIESECRET",
    "HDRORGSECRET",
    "HDRPROJSECRET",
    "QKEYSECRET",
    "QAPIKEYSECRET",
    "QACCESSSECRET",
    "BODYAPIKEYSECRET",
    "BODYCAMELSECRET",
    "BODYNESTEDSECRET",
    "BODYPASSWORDSECRET",
    "BODYREFRESHSECRET",
    "RESPACCESSSECRET",
    "RESPCOOKIESECRET",
];

/// Every byte the recorder left in `dir`, lock files included, as text.
fn written(dir: &std::path::Path) -> String {
    let mut written = String::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{e}")).flatten() {
        written.push_str(&String::from_utf8_lossy(&std::fs::read(entry.path()).unwrap_or_default()));
    }
    written
}

async fn send_corpus(recorder: &Recorder, variant: &str) -> Vec<u16> {
    let client = reqwest::Client::new();
    let base = recorder.url("openai");
    let body = json!({
        "model": "gpt-4o-mini",
        "api_key": format!("BODYAPIKEYSECRET{variant}"),
        "apiKey": format!("BODYCAMELSECRET{variant}"),
        "max_tokens": 7,
        "tools": [{"auth": {
            "client_secret": format!("BODYNESTEDSECRET{variant}"),
            "password": format!("BODYPASSWORDSECRET{variant}"),
            "refresh_token": format!("BODYREFRESHSECRET{variant}"),
        }}],
        "messages": [{"role": "user", "content": "hello"}],
    });
    let mut statuses = Vec::new();
    let requests = [
        client.post(format!("{base}/chat/completions")).header("authorization", format!("Bearer sk-HDRAUTHSECRET{variant}")),
        client.post(format!("{base}/chat/completions?key=QKEYSECRET{variant}&api_key=QAPIKEYSECRET{variant}&access_token=QACCESSSECRET{variant}&alt=sse")),
        client
            .post(format!("{base}/messages"))
            .header("proxy-authorization", format!("Basic HDRPROXYSECRET{variant}"))
            .header("x-api-key", format!("HDRXAPISECRET{variant}"))
            .header("anthropic-version", "2023-06-01"),
        client
            .post(format!("{base}/deployments/gpt/chat/completions?api-version=2024-06-01"))
            .header("api-key", format!("HDRAPIKEYSECRET{variant}"))
            .header("cookie", format!("sid=HDRCOOKIESECRET{variant}")),
        client
            .post(format!("{base}/models/gemini:generateContent"))
            .header("x-goog-api-key", format!("HDRGOOGSECRET{variant}"))
            .header("openai-organization", format!("HDRORGSECRET{variant}"))
            .header("openai-project", format!("HDRPROJSECRET{variant}")),
    ];
    for request in requests {
        let status = request.json(&body).send().await.map(|r| r.status().as_u16()).unwrap_or(0);
        statuses.push(status);
    }
    statuses
}

#[tokio::test]
async fn no_secret_in_any_byte_written_and_replay_still_matches() {
    let upstream = echo_upstream().await;
    let dir = scratch();
    let path = cassette_in(&dir, "corpus");
    let rec = Recorder::builder().cassette(&path).upstream("openai", &upstream.uri()).force_mode(Mode::Record).start();
    let rec = rec.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(send_corpus(&rec, "-recorded").await, vec![200; 5]);
    let report = rec.finish().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.recorded, 5);

    let written = written(dir.path());
    for secret in SECRETS.iter().chain(&["RESPORGSECRET", "RESPHEADERSECRET", "RESPREFRESHSECRET"]) {
        assert!(!written.contains(secret), "`{secret}` reached the disk:\n{written}");
    }
    // Exact names only: token counts survive, and the redaction is visible.
    let text = read(&path);
    assert!(text.contains("\"max_tokens\": 7") && text.contains("\"total_tokens\": 12"), "{text}");
    assert!(text.contains("<REDACTED>"));
    assert!(text.contains("\"anthropic-version\": \"2023-06-01\""), "provider headers are kept for matching");

    // Other credentials at replay time still find every recording.
    let rec =
        Recorder::builder().cassette(&path).upstream("openai", "http://127.0.0.1:9").force_mode(Mode::Strict).start();
    let rec = rec.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(send_corpus(&rec, "-other").await, vec![200; 5]);
    assert_eq!(rec.finish().await.map(|r| r.hits).ok(), Some(5));
}

async fn record_one(
    builder: RecorderBuilder,
    body: Value,
) -> (std::path::PathBuf, tempfile::TempDir, traceforge::Result<traceforge::Report>) {
    let upstream = echo_upstream().await;
    let dir = scratch();
    let path = cassette_in(&dir, "one");
    let rec = builder.cassette(&path).upstream("openai", &upstream.uri()).force_mode(Mode::Record).start();
    let rec = rec.unwrap_or_else(|e| panic!("{e}"));
    let status = reqwest::Client::new()
        .post(format!("{}/chat/completions", rec.url("openai")))
        .json(&body)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0);
    assert_eq!(status, 200);
    let result = rec.finish().await;
    (path, dir, result)
}

#[tokio::test]
async fn user_redactions_apply_to_requests_and_responses_and_still_match() {
    let configure = || {
        Recorder::builder()
            .redact_json_path("$.customer.email")
            .redact_json_path("$.echo.customer.email")
            .redact_pattern(r"acct_[0-9]+", "<ACCOUNT>")
            // The hook sees the whole interaction: drop the trace id from the request and from
            // the echo in each response.
            .before_save(|interaction| {
                let bodies = std::iter::once(&mut interaction.request.body)
                    .chain(interaction.responses.iter_mut().map(|response| &mut response.body));
                for body in bodies {
                    if let traceforge::cassette::Body::Json { json } = body {
                        if let Some(echo) = json.get_mut("echo").and_then(Value::as_object_mut) {
                            echo.remove("trace");
                        }
                        if let Some(object) = json.as_object_mut() {
                            object.remove("trace");
                        }
                    }
                }
            })
    };
    let body = |trace: &str| json!({"customer": {"email": "jane@corp.example", "name": "Jane"}, "note": "bill acct_12345 today", "trace": trace});
    let (path, _dir, result) = record_one(configure(), body("t-1")).await;
    result.unwrap_or_else(|e| panic!("{e}"));
    let text = read(&path);
    for gone in ["jane@corp.example", "acct_12345", "t-1"] {
        assert!(!text.contains(gone), "`{gone}` was kept:\n{text}");
    }
    assert!(text.contains("bill <ACCOUNT> today") && text.contains("\"name\": \"Jane\""), "{text}");

    let rec = configure().cassette(&path).upstream("openai", "http://127.0.0.1:9").force_mode(Mode::Strict).start();
    let rec = rec.unwrap_or_else(|e| panic!("{e}"));
    let status = reqwest::Client::new()
        .post(format!("{}/chat/completions", rec.url("openai")))
        .json(&body("t-2"))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0);
    assert_eq!(status, 200, "a redacted request must find its recording");
    rec.finish().await.unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn pii_redaction_is_opt_in_and_precise() {
    let body = json!({"messages": [{"role": "user", "content":
        "Mail jane.doe@example.com or call +1 415-555-0132; card 4111 1111 1111 1111; order 1234567890123456"}]});
    let (path, _dir, result) = record_one(Recorder::builder().redact_pii(), body.clone()).await;
    result.unwrap_or_else(|e| panic!("{e}"));
    let text = read(&path);
    for gone in ["jane.doe@example.com", "415-555-0132", "4111 1111 1111 1111"] {
        assert!(!text.contains(gone), "`{gone}` was kept:\n{text}");
    }
    for placeholder in traceforge::redact::PII_PLACEHOLDERS {
        assert!(text.contains(placeholder), "{placeholder} missing:\n{text}");
    }
    assert!(text.contains("order 1234567890123456"), "a number failing the Luhn check is not a card:\n{text}");

    let (path, _dir, result) = record_one(Recorder::builder(), body).await;
    result.unwrap_or_else(|e| panic!("{e}"));
    assert!(read(&path).contains("jane.doe@example.com"), "PII redaction is opt-in");
}

#[tokio::test]
async fn a_token_shaped_value_in_a_prompt_refuses_the_write_unless_allowed() {
    let body = json!({"messages": [{"role": "user", "content": "my key is sk-proj-abcdefghijklmnopqrstuvwxyz123456"}]});
    let (path, _dir, result) = record_one(Recorder::builder(), body.clone()).await;
    match result {
        Err(Error::SecretDetected { findings, .. }) => {
            let paths: Vec<&str> = findings.iter().map(|f| f.json_path.as_str()).collect();
            assert!(paths.contains(&"$.interactions[0].request.body.json.messages[0].content"), "{paths:?}");
            let message = Error::SecretDetected { path: path.clone(), findings }.to_string();
            assert!(message.contains("OpenAI API key") && !message.contains("abcdefghijklmnop"), "{message}");
            assert!(message.contains("allow_secret_path"), "{message}");
        }
        other => panic!("expected the scan to refuse the write, got {other:?}"),
    }
    assert!(!path.exists());

    let (path, _dir, result) = record_one(Recorder::builder().allow_secret_path("$.interactions*"), body).await;
    result.unwrap_or_else(|e| panic!("{e}"));
    assert!(path.exists());
}

/// An upstream whose answers carry two custom secret headers and an ordinary one.
async fn header_upstream() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("x-session-token", "RESPSESSIONSECRET")
                .insert_header("x-upstream-key", "RESPUPSTREAMSECRET")
                .insert_header("x-vendor-note", "kept-note")
                .set_body_json(json!({"ok": true})),
        )
        .mount(&server)
        .await;
    server
}

/// Sends one chat request with custom headers; returns the status and the response headers.
async fn send_with_headers(recorder: &Recorder, headers: &[(&str, &str)]) -> (u16, reqwest::header::HeaderMap) {
    let mut request = reqwest::Client::new()
        .post(format!("{}/chat/completions", recorder.url("openai")))
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap_or_else(|e| panic!("{e}"));
    (response.status().as_u16(), response.headers().clone())
}

#[tokio::test]
async fn custom_secret_headers_from_the_builder_and_traceforge_toml_are_never_written() {
    const SECRETS: [&str; 4] = ["REQINTERNALSECRET", "REQTEAMSECRET", "RESPSESSIONSECRET", "RESPUPSTREAMSECRET"];
    let upstream = header_upstream().await;
    // The two secret request headers are match headers too: without the redaction they would
    // be stored in the request, as the control run below shows.
    let headers = |internal: &'static str, team: &'static str, tenant: &'static str| {
        [("x-internal-token", internal), ("x-team-token", team), ("x-tenant", tenant)]
    };
    let recorded = headers("REQINTERNALSECRET", "REQTEAMSECRET", "acme");
    let builder = |config: &std::path::Path| {
        Recorder::builder().config_file(config).match_header("x-internal-token").match_header("x-tenant")
    };
    let record = |builder: RecorderBuilder, path: std::path::PathBuf| {
        let upstream = upstream.uri();
        async move {
            let rec = builder.cassette(path).upstream("openai", &upstream).force_mode(Mode::Record).start();
            let rec = rec.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(send_with_headers(&rec, &recorded).await.0, 200);
            rec.finish().await.unwrap_or_else(|e| panic!("{e}"));
        }
    };

    // Control: the same headers, matched but not redacted, reach the disk.
    let configs = scratch(); // kept apart from the cassettes, whose every byte is read
    let control = scratch();
    let config = configs.path().join("control.toml");
    std::fs::write(&config, "[matching]\nmatch_headers = [\"x-team-token\"]\n").unwrap_or_else(|e| panic!("{e}"));
    record(builder(&config), cassette_in(&control, "control")).await;
    let text = written(control.path());
    for secret in SECRETS {
        assert!(text.contains(secret), "the control run must store `{secret}`:\n{text}");
    }

    // Redacted: two headers by the builder, two by traceforge.toml, one of each kind per source.
    let dir = scratch();
    let config = configs.path().join("traceforge.toml");
    std::fs::write(
        &config,
        "[matching]\nmatch_headers = [\"x-team-token\"]\n\n[redaction]\nheaders = [\"X-Team-Token\", \"x-upstream-key\"]\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let redacting = || builder(&config).redact_header("x-internal-token").redact_header("X-Session-Token");
    let path = cassette_in(&dir, "redacted");
    record(redacting(), path.clone()).await;
    let text = written(dir.path());
    for secret in SECRETS.iter().chain(&["x-internal-token", "x-team-token", "x-session-token", "x-upstream-key"]) {
        assert!(!text.contains(secret), "`{secret}` reached the disk:\n{text}");
    }
    let file = read(&path);
    assert!(file.contains("\"x-tenant\": \"acme\"") && file.contains("\"x-vendor-note\": \"kept-note\""), "{file}");

    // Replay with other secret values: the redacted headers take no part in the key, and the
    // match header that was not redacted still does.
    let rec = redacting().cassette(&path).upstream("openai", "http://127.0.0.1:9").force_mode(Mode::Strict).start();
    let rec = rec.unwrap_or_else(|e| panic!("{e}"));
    let (status, replayed) = send_with_headers(&rec, &headers("OTHERINTERNAL", "OTHERTEAM", "acme")).await;
    assert_eq!(status, 200, "a request must find its recording whatever its secret headers hold");
    assert_eq!(replayed.get("x-vendor-note").map(|v| v.as_bytes()), Some(&b"kept-note"[..]));
    assert!(replayed.get("x-session-token").is_none() && replayed.get("x-upstream-key").is_none());
    assert_eq!(send_with_headers(&rec, &headers("OTHERINTERNAL", "OTHERTEAM", "globex")).await.0, 404);
    match rec.finish().await {
        Err(Error::Verification(failure)) => {
            let message = failure.to_string();
            assert!(message.contains("$.headers.x-tenant") && !message.contains("OTHER"), "{message}");
        }
        other => panic!("expected the other tenant to miss, got {other:?}"),
    }
}
