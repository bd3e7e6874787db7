//! Many requests at once through one recorder: nothing is lost when recording, and every
//! replayed answer is the one recorded for its request.

mod support;

use std::collections::BTreeSet;

use serde_json::{json, Value};
use support::fake_openai::FakeOpenAi;
use support::{cassette_in, scratch};
use traceforge::cassette::storage;
use traceforge::{Mode, Recorder};

const REQUESTS: usize = 100;

fn recorder(path: &std::path::Path, mode: Mode, upstream: &str) -> Recorder {
    match Recorder::builder().cassette(path).upstream("openai", upstream).force_mode(mode).start() {
        Ok(recorder) => recorder,
        Err(error) => panic!("recorder did not start: {error}"),
    }
}

fn chat_request(prompt: &str) -> Value {
    json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": prompt}]})
}

/// Sends all prompts at once (one task each) and returns (prompt, status, outcome, answer) in
/// prompt order.
async fn send_all(base: &str, prompts: Vec<String>) -> Vec<(String, u16, String, String)> {
    let client = reqwest::Client::new();
    let url = format!("{base}/chat/completions");
    let tasks: Vec<_> = prompts
        .into_iter()
        .map(|prompt| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                let response = client
                    .post(&url)
                    .json(&chat_request(&prompt))
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("request `{prompt}` failed: {e}"));
                let status = response.status().as_u16();
                let outcome = response
                    .headers()
                    .get(traceforge::OUTCOME_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let body: Value = response.json().await.unwrap_or(Value::Null);
                let answer = body["choices"][0]["message"]["content"].as_str().unwrap_or_default().to_owned();
                (prompt, status, outcome, answer)
            })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap_or_else(|e| panic!("request task panicked: {e}")));
    }
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_concurrent_requests_record_a_hundred_interactions_and_replay_exactly() {
    let dir = scratch();
    let path = cassette_in(&dir, "hundred");
    let fake = FakeOpenAi::start().await;
    let prompts: Vec<String> = (0..REQUESTS).map(|i| format!("concurrent question {i}")).collect();

    let rec = recorder(&path, Mode::Record, &fake.base_url());
    for (prompt, status, outcome, answer) in send_all(&rec.url("openai"), prompts.clone()).await {
        assert_eq!((status, outcome.as_str()), (200, "recorded"), "{prompt}");
        assert_eq!(answer, format!("You said: {prompt}"));
    }
    let report = rec.finish().await.unwrap_or_else(|e| panic!("finish failed: {e}"));
    assert_eq!((report.recorded, report.saved), (REQUESTS, true));
    assert_eq!(fake.received().await, REQUESTS);
    drop(fake);

    // The file is valid, holds one interaction per request, and every key is its request's hash.
    let file = storage::load(&path).unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|| panic!("no cassette"));
    storage::verify_keys(&path, &file, &traceforge::Matcher::default()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(file.interactions.len(), REQUESTS);
    let stored: BTreeSet<String> = file
        .interactions
        .iter()
        .map(|i| {
            assert_eq!(i.responses.len(), 1);
            match &i.request.body {
                traceforge::cassette::Body::Json { json } => {
                    json["messages"][0]["content"].as_str().unwrap_or_default().to_owned()
                }
                other => panic!("unexpected request body {other:?}"),
            }
        })
        .collect();
    assert_eq!(stored, prompts.iter().cloned().collect::<BTreeSet<_>>());

    // Replay all of them at once, strictly, with no upstream: each gets its own answer.
    let rec = recorder(&path, Mode::Strict, "http://127.0.0.1:9/v1");
    for (prompt, status, outcome, answer) in send_all(&rec.url("openai"), prompts).await {
        assert_eq!((status, outcome.as_str()), (200, "hit"), "{prompt}");
        assert_eq!(answer, format!("You said: {prompt}"));
    }
    let report = rec.finish().await.unwrap_or_else(|e| panic!("strict replay failed: {e}"));
    assert_eq!((report.hits, report.misses, report.saved), (REQUESTS, 0, false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_concurrent_identical_requests_keep_every_response() {
    let dir = scratch();
    let path = cassette_in(&dir, "identical");
    let fake = FakeOpenAi::start().await;
    // `[count]` makes the fake answer with its call number, so every response is distinct.
    let prompts = vec!["the same question [count]".to_owned(); REQUESTS];

    let rec = recorder(&path, Mode::Record, &fake.base_url());
    let recorded: BTreeSet<String> =
        send_all(&rec.url("openai"), prompts.clone()).await.into_iter().map(|r| r.3).collect();
    assert_eq!(recorded.len(), REQUESTS, "the fake gave {REQUESTS} distinct answers");
    rec.finish().await.unwrap_or_else(|e| panic!("finish failed: {e}"));
    drop(fake);

    let file = storage::load(&path).unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|| panic!("no cassette"));
    assert_eq!(file.interactions.len(), 1);
    assert_eq!(file.interactions[0].responses.len(), REQUESTS);

    let rec = recorder(&path, Mode::Strict, "http://127.0.0.1:9/v1");
    let replayed: BTreeSet<String> = send_all(&rec.url("openai"), prompts).await.into_iter().map(|r| r.3).collect();
    assert_eq!(replayed, recorded, "each recorded response is replayed exactly once");
    let report = rec.finish().await.unwrap_or_else(|e| panic!("strict replay failed: {e}"));
    assert_eq!(report.hits, REQUESTS);
}
