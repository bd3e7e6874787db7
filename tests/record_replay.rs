//! End to end through the builder API: record against a fake upstream over real loopback HTTP,
//! stop the upstream, replay strictly, and check what the cassette file holds.

mod support;

use serde_json::{json, Value};
use support::fake_openai::FakeOpenAi;
use support::{cassette_in, read, scratch};
use traceforge::{Error, Mode, Outcome, Recorder};

fn recorder(path: &std::path::Path, mode: Mode, upstream: &str) -> Recorder {
    match Recorder::builder().cassette(path).upstream("openai", upstream).force_mode(mode).start() {
        Ok(recorder) => recorder,
        Err(error) => panic!("recorder did not start: {error}"),
    }
}

/// A base URL where nothing listens, for replay runs that must never reach an upstream.
const NOWHERE: &str = "http://127.0.0.1:9/v1";

fn chat_request(prompt: &str) -> Value {
    json!({"model": "gpt-4o-mini", "temperature": 0, "messages": [{"role": "user", "content": prompt}]})
}

async fn post(url: &str, body: &Value) -> (u16, Value, reqwest::header::HeaderMap) {
    let response = reqwest::Client::new()
        .post(url)
        .header("authorization", "Bearer sk-proj-SECRETSECRETSECRETSECRET1234")
        .json(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("request failed: {e}"));
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.json::<Value>().await.unwrap_or(Value::Null);
    (status, body, headers)
}

async fn finish_ok(recorder: Recorder) -> traceforge::Report {
    match recorder.finish().await {
        Ok(report) => report,
        Err(error) => panic!("finish failed: {error}"),
    }
}

#[tokio::test]
async fn records_then_replays_strictly_with_the_upstream_gone() {
    let dir = scratch();
    let path = cassette_in(&dir, "chat");
    let fake = FakeOpenAi::start().await;

    let rec = recorder(&path, Mode::Record, &fake.base_url());
    let (status, recorded, headers) =
        post(&format!("{}/chat/completions", rec.url("openai")), &chat_request("What is the capital of France?")).await;
    assert_eq!(status, 200);
    assert_eq!(headers.get(traceforge::OUTCOME_HEADER).map(|v| v.as_bytes()), Some(&b"recorded"[..]));
    let report = finish_ok(rec).await;
    assert_eq!((report.recorded, report.hits, report.saved), (1, 0, true));
    drop(fake);

    let text = read(&path);
    let file: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    assert_eq!(file["format_version"], 1);
    let interaction = &file["interactions"][0];
    assert_eq!(interaction["request"]["path"], "/chat/completions");
    assert_eq!(interaction["request"]["upstream"], "openai");
    // JSON bodies are stored as JSON, not as escaped strings.
    assert_eq!(interaction["request"]["body"]["json"]["messages"][0]["content"], "What is the capital of France?");
    assert_eq!(
        interaction["responses"][0]["body"]["json"]["choices"][0]["message"]["content"],
        "The capital of France is Paris."
    );
    assert_eq!(interaction["responses"][0]["headers"], json!({"content-type": "application/json"}));
    for forbidden in
        ["SECRETSECRET", "x-request-id", "openai-processing-ms", "org-fake", "cf-ray", "x-ratelimit", "date"]
    {
        assert!(!text.contains(forbidden), "the cassette must not hold `{forbidden}`:\n{text}");
    }

    let rec = recorder(&path, Mode::Strict, NOWHERE);
    let (status, replayed, headers) =
        post(&format!("{}/chat/completions", rec.url("openai")), &chat_request("What is the capital of France?")).await;
    assert_eq!(status, 200);
    assert_eq!(replayed, recorded);
    assert_eq!(headers.get(traceforge::OUTCOME_HEADER).map(|v| v.as_bytes()), Some(&b"hit"[..]));
    let report = finish_ok(rec).await;
    assert_eq!((report.hits, report.recorded, report.saved), (1, 0, false));
}

#[tokio::test]
async fn async_openai_records_and_replays_chat_and_embeddings() {
    use async_openai::config::OpenAIConfig;
    use async_openai::types::chat::{ChatCompletionRequestUserMessageArgs, CreateChatCompletionRequestArgs};
    use async_openai::types::embeddings::CreateEmbeddingRequestArgs;

    async fn run(base: String) -> (String, Vec<f32>) {
        let client = async_openai::Client::with_config(
            OpenAIConfig::new().with_api_base(base).with_api_key("sk-test-not-a-real-key"),
        );
        let message = ChatCompletionRequestUserMessageArgs::default()
            .content("Summarise why Rust is memory safe.")
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let request = CreateChatCompletionRequestArgs::default()
            .model("gpt-4o-mini")
            .messages(vec![message.into()])
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let chat = client.chat().create(request).await.unwrap_or_else(|e| panic!("chat failed: {e}"));
        let answer = chat.choices[0].message.content.clone().unwrap_or_default();
        let request = CreateEmbeddingRequestArgs::default()
            .model("text-embedding-3-small")
            .input("Rust ownership")
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let embedding = client.embeddings().create(request).await.unwrap_or_else(|e| panic!("embeddings failed: {e}"));
        (answer, embedding.data[0].embedding.clone())
    }

    let dir = scratch();
    let path = cassette_in(&dir, "sdk");
    let fake = FakeOpenAi::start().await;
    let rec = recorder(&path, Mode::Record, &fake.base_url());
    let recorded = run(rec.url("openai")).await;
    assert_eq!(finish_ok(rec).await.recorded, 2);
    assert_eq!(fake.received().await, 2);
    drop(fake);
    assert!(recorded.0.contains("ownership"), "{}", recorded.0);

    let rec = recorder(&path, Mode::Strict, NOWHERE);
    let replayed = run(rec.url("openai")).await;
    assert_eq!(finish_ok(rec).await.hits, 2);
    assert_eq!(replayed, recorded);
}

#[tokio::test]
async fn a_changed_prompt_fails_strict_with_a_diff_and_the_fix() {
    let dir = scratch();
    let path = cassette_in(&dir, "prompt");
    let fake = FakeOpenAi::start().await;
    let long_context = "Background: ".to_owned() + &"lorem ipsum ".repeat(40);
    let rec = recorder(&path, Mode::Record, &fake.base_url());
    post(
        &format!("{}/chat/completions", rec.url("openai")),
        &chat_request(&format!("{long_context} Answer in French.")),
    )
    .await;
    finish_ok(rec).await;

    let rec = Recorder::builder()
        .cassette(&path)
        .upstream("openai", NOWHERE)
        .force_mode(Mode::Strict)
        .test_name("prompts::french")
        .rerecord_command("TRACEFORGE_VCR_MODE=record cargo test -p app --test prompts -- french --exact")
        .start()
        .unwrap_or_else(|e| panic!("{e}"));
    let (status, body, _) = post(
        &format!("{}/chat/completions", rec.url("openai")),
        &chat_request(&format!("{long_context} Answer in German.")),
    )
    .await;
    // The client sees a non-retryable 4xx in OpenAI's error shape.
    assert_eq!(status, 404);
    assert_eq!(body["error"]["type"], "traceforge_cassette_miss");
    let error = match rec.finish().await {
        Err(Error::Verification(failure)) => failure.to_string(),
        other => panic!("expected a verification failure, got {other:?}"),
    };
    for expected in [
        "cassette check failed for `prompts::french` (mode: strict)",
        &path.display().to_string(),
        "POST openai /chat/completions",
        "nearest recorded request: interactions[0]",
        "$.body.json.messages[0].content",
        "Answer in French.\"",
        "Answer in German.\"",
        "1 recorded interaction(s) were not used",
        "TRACEFORGE_VCR_MODE=record cargo test -p app --test prompts -- french --exact",
    ] {
        assert!(error.contains(expected), "missing `{expected}` in:\n{error}");
    }
    // The long shared prefix is cut, not printed whole.
    assert!(error.matches("lorem ipsum").count() < 10, "{error}");
}

#[tokio::test]
async fn an_unused_recording_fails_strict_but_not_replay() {
    let dir = scratch();
    let path = cassette_in(&dir, "unused");
    let fake = FakeOpenAi::start().await;
    let rec = recorder(&path, Mode::Record, &fake.base_url());
    for prompt in ["first", "second", "third"] {
        post(&format!("{}/chat/completions", rec.url("openai")), &chat_request(prompt)).await;
    }
    assert_eq!(finish_ok(rec).await.recorded, 3);

    for (mode, should_fail) in [(Mode::Strict, true), (Mode::Replay, false)] {
        let rec = recorder(&path, mode, NOWHERE);
        post(&format!("{}/chat/completions", rec.url("openai")), &chat_request("first")).await;
        match rec.finish().await {
            Err(Error::Verification(failure)) if should_fail => {
                assert_eq!(failure.unused.len(), 2);
                assert!(failure.misses.is_empty());
                // Two unused calls to one endpoint: each line says which prompt it was.
                let mut excerpts: Vec<String> = failure.unused.iter().filter_map(|u| u.excerpt.clone()).collect();
                excerpts.sort();
                assert_eq!(
                    excerpts,
                    [
                        "model \"gpt-4o-mini\", last user message \"second\"",
                        "model \"gpt-4o-mini\", last user message \"third\""
                    ]
                );
                let message = failure.to_string();
                for prompt in ["second", "third"] {
                    let entry = format!(
                        "used 0 of 1 recorded response(s)\n    model \"gpt-4o-mini\", last user message \"{prompt}\"\n"
                    );
                    assert!(message.contains(&entry), "no entry for `{prompt}` in:\n{message}");
                }
                assert!(!message.contains("\"first\""), "the used recording is not listed:\n{message}");
            }
            Ok(report) if !should_fail => assert_eq!(report.unused.len(), 2),
            other => panic!("{mode}: unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn identical_requests_replay_in_order_and_then_run_out() {
    let dir = scratch();
    let path = cassette_in(&dir, "repeats");
    let fake = FakeOpenAi::start().await;
    let request = chat_request("Give me a number [count]");
    let rec = recorder(&path, Mode::Record, &fake.base_url());
    let mut recorded = Vec::new();
    for _ in 0..3 {
        recorded.push(post(&format!("{}/chat/completions", rec.url("openai")), &request).await.1);
    }
    finish_ok(rec).await;
    assert_ne!(recorded[0], recorded[1]);

    let rec = recorder(&path, Mode::Strict, NOWHERE);
    for expected in &recorded {
        assert_eq!(&post(&format!("{}/chat/completions", rec.url("openai")), &request).await.1, expected);
    }
    let (status, _, _) = post(&format!("{}/chat/completions", rec.url("openai")), &request).await;
    assert_eq!(status, 404);
    let message = rec.finish().await.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("called 4 time(s) and recorded 3 time(s)"), "{message}");
}

#[tokio::test]
async fn recording_twice_gives_a_byte_identical_file() {
    let dir = scratch();
    let path = cassette_in(&dir, "stable");
    let fake = FakeOpenAi::start().await;
    let mut versions = Vec::new();
    for _ in 0..2 {
        let rec = recorder(&path, Mode::Record, &fake.base_url());
        post(&format!("{}/chat/completions", rec.url("openai")), &chat_request("What is the capital of France?")).await;
        post(
            &format!("{}/embeddings", rec.url("openai")),
            &json!({"model": "text-embedding-3-small", "input": ["a", "b"]}),
        )
        .await;
        finish_ok(rec).await;
        versions.push(std::fs::read(&path).unwrap_or_default());
    }
    assert!(!versions[0].is_empty());
    assert_eq!(versions[0], versions[1]);
}

#[tokio::test]
async fn a_failed_test_never_touches_the_cassette() {
    let dir = scratch();
    let path = cassette_in(&dir, "keep");
    let fake = FakeOpenAi::start().await;
    let rec = recorder(&path, Mode::Record, &fake.base_url());
    post(&format!("{}/chat/completions", rec.url("openai")), &chat_request("original")).await;
    finish_ok(rec).await;
    let before = std::fs::read(&path).unwrap_or_default();

    for mode in [Mode::Record, Mode::Auto] {
        let rec = recorder(&path, mode, &fake.base_url());
        post(&format!("{}/chat/completions", rec.url("openai")), &chat_request("something new")).await;
        let report = rec.finish_with(Outcome::Failed).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((report.recorded, report.saved), (1, false));
        assert_eq!(std::fs::read(&path).unwrap_or_default(), before, "{mode} must not write after a failure");
    }
}

#[tokio::test]
async fn auto_replays_hits_and_records_only_misses() {
    let dir = scratch();
    let path = cassette_in(&dir, "auto");
    let fake = FakeOpenAi::start().await;
    let rec = recorder(&path, Mode::Auto, &fake.base_url());
    post(&format!("{}/chat/completions", rec.url("openai")), &chat_request("one")).await;
    assert_eq!(finish_ok(rec).await.recorded, 1);

    let rec = recorder(&path, Mode::Auto, &fake.base_url());
    post(&format!("{}/chat/completions", rec.url("openai")), &chat_request("one")).await;
    post(&format!("{}/chat/completions", rec.url("openai")), &chat_request("two")).await;
    let report = finish_ok(rec).await;
    assert_eq!((report.hits, report.recorded), (1, 1));
    assert_eq!(fake.received().await, 2, "the hit must not reach the upstream");

    let file: Value = serde_json::from_str(&read(&path)).unwrap_or(Value::Null);
    assert_eq!(file["interactions"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn secrets_in_headers_query_and_body_are_never_written_and_still_match() {
    let dir = scratch();
    let path = cassette_in(&dir, "secrets");
    let fake = FakeOpenAi::start().await;
    let body = json!({"model": "gpt-4o-mini", "api_key": "sk-proj-BODYSECRETBODYSECRET123456", "max_tokens": 7,
                      "messages": [{"role": "user", "content": "hello"}]});
    let send = |base: String, secret: &'static str| {
        let body = body.clone();
        async move {
            reqwest::Client::new()
                .post(format!("{base}/chat/completions?key={secret}&api_key={secret}"))
                .header("authorization", format!("Bearer {secret}"))
                .header("api-key", secret)
                .header("x-api-key", secret)
                .header("openai-organization", "org-SECRETORG")
                .json(&body)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }
    };
    let rec = recorder(&path, Mode::Record, &fake.base_url());
    assert_eq!(send(rec.url("openai"), "sk-proj-HEADERSECRETHEADERSECRET1").await, 200);
    finish_ok(rec).await;
    let text = read(&path);
    for secret in ["HEADERSECRET", "BODYSECRET", "SECRETORG"] {
        assert!(!text.contains(secret), "`{secret}` leaked:\n{text}");
    }
    assert!(text.contains("\"max_tokens\": 7"), "max_tokens must survive scrubbing:\n{text}");

    // Other credentials at replay time still match the scrubbed recording.
    let rec = recorder(&path, Mode::Strict, NOWHERE);
    assert_eq!(send(rec.url("openai"), "sk-proj-ANOTHERKEYANOTHERKEY12").await, 200);
    finish_ok(rec).await;
}

#[tokio::test]
async fn a_secret_in_a_response_refuses_the_write() {
    use wiremock::{matchers::any, Mock, MockServer, ResponseTemplate};
    let upstream = MockServer::start().await;
    Mock::given(any())
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"created_key": "sk-proj-LEAKEDLEAKEDLEAKEDLEAKED99"})),
        )
        .mount(&upstream)
        .await;
    let dir = scratch();
    let path = cassette_in(&dir, "leak");
    let rec = recorder(&path, Mode::Record, &upstream.uri());
    post(&format!("{}/keys", rec.url("openai")), &json!({})).await;
    match rec.finish().await {
        Err(Error::SecretDetected { findings, .. }) => {
            assert_eq!(findings[0].json_path, "$.interactions[0].responses[0].body.json.created_key");
            assert!(!format!("{findings:?}").contains("LEAKEDLEAKED"));
        }
        other => panic!("expected the secret scan to refuse, got {other:?}"),
    }
    assert!(!path.exists());
}

#[tokio::test]
async fn a_corrupt_cassette_is_reported_with_its_position_and_never_overwritten() {
    let dir = scratch();
    for (name, content, expected) in [
        ("truncated", "{\n  \"format_version\": 1,\n  \"interactions\": [\n", "line 4"),
        ("future", "{\"format_version\": 99, \"interactions\": []}", "format_version 99"),
        ("shape", "{\"format_version\": 1, \"interactions\": [{\"key\": 5}]}", "corrupt at line 1"),
    ] {
        let path = cassette_in(&dir, name);
        std::fs::write(&path, content).unwrap_or_else(|e| panic!("{e}"));
        for mode in [Mode::Record, Mode::Auto, Mode::Strict] {
            let message = match Recorder::builder().cassette(&path).force_mode(mode).start() {
                Err(error) => error.to_string(),
                Ok(_) => panic!("{name}: a corrupt cassette must not load in {mode}"),
            };
            assert!(message.contains(&path.display().to_string()) && message.contains(expected), "{name}: {message}");
        }
        assert_eq!(read(&path), content);
    }
}

#[test]
fn recorders_in_parallel_threads_keep_their_own_cassettes() {
    let dir = scratch();
    let runtime = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("{e}"));
    let fake = runtime.block_on(FakeOpenAi::start());
    let base = fake.base_url();
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let path = cassette_in(&dir, &format!("thread-{i}"));
            let base = base.clone();
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap_or_else(|e| panic!("{e}"));
                runtime.block_on(async {
                    let prompt = format!("thread {i}");
                    let rec = recorder(&path, Mode::Record, &base);
                    let recorded =
                        post(&format!("{}/chat/completions", rec.url("openai")), &chat_request(&prompt)).await.1;
                    finish_ok(rec).await;
                    let rec = recorder(&path, Mode::Strict, NOWHERE);
                    let replayed =
                        post(&format!("{}/chat/completions", rec.url("openai")), &chat_request(&prompt)).await.1;
                    finish_ok(rec).await;
                    assert_eq!(recorded, replayed);
                    assert_eq!(replayed["choices"][0]["message"]["content"], format!("You said: {prompt}"));
                })
            })
        })
        .collect();
    for thread in threads {
        assert!(thread.join().is_ok());
    }
}

#[tokio::test]
async fn concurrent_savers_of_one_cassette_merge_instead_of_losing_work() {
    let dir = scratch();
    let path = cassette_in(&dir, "shared");
    let fake = FakeOpenAi::start().await;
    // Both load the (missing) cassette before either saves: the second save must merge.
    let first = recorder(&path, Mode::Auto, &fake.base_url());
    let second = recorder(&path, Mode::Auto, &fake.base_url());
    for (rec, prompt) in [(&first, "from the first"), (&second, "from the second")] {
        post(&format!("{}/chat/completions", rec.url("openai")), &chat_request(prompt)).await;
    }
    finish_ok(first).await;
    finish_ok(second).await;
    let rec = recorder(&path, Mode::Strict, NOWHERE);
    for prompt in ["from the first", "from the second"] {
        assert_eq!(post(&format!("{}/chat/completions", rec.url("openai")), &chat_request(prompt)).await.0, 200);
    }
    finish_ok(rec).await;
}

#[tokio::test]
async fn record_mode_drops_recordings_the_test_no_longer_makes() {
    let dir = scratch();
    let path = cassette_in(&dir, "rerecord");
    let fake = FakeOpenAi::start().await;
    let rec = recorder(&path, Mode::Record, &fake.base_url());
    post(&format!("{}/chat/completions", rec.url("openai")), &chat_request("old question")).await;
    finish_ok(rec).await;

    // The test changed and now makes no call: re-recording leaves an empty cassette, not a stale one.
    let report = finish_ok(recorder(&path, Mode::Record, &fake.base_url())).await;
    assert!(report.saved);
    let file: Value = serde_json::from_str(&read(&path)).unwrap_or(Value::Null);
    assert_eq!(file["interactions"], json!([]));
    finish_ok(recorder(&path, Mode::Strict, NOWHERE)).await;
}

#[tokio::test]
async fn sdks_surface_a_miss_as_an_api_error_and_do_not_retry_it() {
    use async_openai::config::OpenAIConfig;
    use async_openai::types::embeddings::CreateEmbeddingRequestArgs;

    let dir = scratch();
    let path = cassette_in(&dir, "empty");
    std::fs::write(&path, "{\"format_version\": 1, \"interactions\": []}\n").unwrap_or_else(|e| panic!("{e}"));
    let rec = recorder(&path, Mode::Strict, NOWHERE);
    let client =
        async_openai::Client::with_config(OpenAIConfig::new().with_api_base(rec.url("openai")).with_api_key("k"));
    let request = CreateEmbeddingRequestArgs::default().model("m").input("x").build().unwrap_or_else(|e| panic!("{e}"));
    match client.embeddings().create(request).await {
        Err(async_openai::error::OpenAIError::ApiError(error)) => {
            assert_eq!(error.status_code.as_u16(), 404);
            let error = error.api_error;
            assert_eq!(error.r#type.as_deref(), Some("traceforge_cassette_miss"));
            assert!(error.message.contains("no recorded request matches it"), "{}", error.message);
        }
        other => panic!("expected an API error, got {other:?}"),
    }
    match rec.finish().await {
        Err(Error::Verification(failure)) => assert_eq!(failure.misses.len(), 1, "the SDK must not have retried"),
        other => panic!("expected a verification failure, got {other:?}"),
    }

    // Anthropic's SDKs expect their own error shape. The message says how to re-record.
    let command = "TRACEFORGE_VCR_MODE=record cargo test -p app --test chat -- asks_claude --exact";
    let rec = Recorder::builder()
        .cassette(&path)
        .force_mode(Mode::Strict)
        .rerecord_command(command)
        .start()
        .unwrap_or_else(|e| panic!("{e}"));
    let response = reqwest::Client::new()
        .post(format!("{}/v1/messages", rec.url("anthropic")))
        .json(&json!({"model": "claude", "messages": []}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status(), 404);
    assert_eq!(response.headers().get("x-should-retry").map(|v| v.as_bytes()), Some(&b"false"[..]));
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(
        (body["type"].as_str(), body["error"]["type"].as_str()),
        (Some("error"), Some("traceforge_cassette_miss"))
    );
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.ends_with(&format!("re-record with: {command}")), "{message}");
    assert!(rec.finish().await.is_err());
}
