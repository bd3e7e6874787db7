//! Matching people can trust: ignored paths, headers, strategies, normalisers, repeats, and
//! misses that explain themselves. Each test records through the real recorder against a fake
//! upstream, then replays with the upstream gone.

mod support;

use serde_json::{json, Value};
use support::fake_openai::FakeOpenAi;
use support::{cassette_in, scratch};
use traceforge::{Error, Exhausted, Mode, Normaliser, Recorder, RecorderBuilder, Strategy};

const NOWHERE: &str = "http://127.0.0.1:9/v1";

fn start(builder: RecorderBuilder) -> Recorder {
    builder.start().unwrap_or_else(|e| panic!("recorder did not start: {e}"))
}

async fn post(recorder: &Recorder, body: &Value, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut request = reqwest::Client::new().post(format!("{}/chat/completions", recorder.url("openai"))).json(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap_or_else(|e| panic!("{e}"));
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn chat(content: Value, extra: Value) -> Value {
    let mut body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}]});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    body
}

async fn record(path: &std::path::Path, configure: impl Fn(RecorderBuilder) -> RecorderBuilder, bodies: &[Value]) {
    let fake = FakeOpenAi::start().await;
    let rec = start(configure(
        Recorder::builder().cassette(path).upstream("openai", &fake.base_url()).force_mode(Mode::Record),
    ));
    for body in bodies {
        assert_eq!(post(&rec, body, &[]).await.0, 200);
    }
    rec.finish().await.unwrap_or_else(|e| panic!("{e}"));
}

fn strict(path: &std::path::Path, configure: impl Fn(RecorderBuilder) -> RecorderBuilder) -> Recorder {
    start(configure(Recorder::builder().cassette(path).upstream("openai", NOWHERE).force_mode(Mode::Strict)))
}

fn failure(result: traceforge::Result<traceforge::Report>) -> String {
    match result {
        Err(Error::Verification(failure)) => failure.to_string(),
        other => panic!("expected a verification failure, got {other:?}"),
    }
}

#[tokio::test]
async fn ignored_paths_keep_volatile_fields_out_of_the_key() {
    let dir = scratch();
    let path = cassette_in(&dir, "ignored");
    let ignoring = |b: RecorderBuilder| b.ignore_path("$.user").ignore_path("$.messages[*].tool_call_id");
    let recorded = chat(json!("hi"), json!({"user": "alice"}));
    record(&path, ignoring, &[recorded]).await;

    let rec = strict(&path, ignoring);
    assert_eq!(post(&rec, &chat(json!("hi"), json!({"user": "bob"})), &[]).await.0, 200);
    rec.finish().await.unwrap_or_else(|e| panic!("{e}"));

    // Without the rule the same request misses, and the diff names the field.
    let rec = strict(&path, |b| b);
    assert_eq!(post(&rec, &chat(json!("hi"), json!({"user": "bob"})), &[]).await.0, 404);
    let message = failure(rec.finish().await);
    assert!(
        message.contains("$.body.json.user") && message.contains("\"alice\"") && message.contains("\"bob\""),
        "{message}"
    );
}

#[tokio::test]
async fn traceforge_toml_sets_team_wide_rules_and_bad_files_are_named() {
    let dir = scratch();
    let path = cassette_in(&dir, "file");
    let config = dir.path().join("traceforge.toml");
    std::fs::write(&config, "[matching]\nignore_paths = [\"$.metadata\"]\nnormalisers = [\"dated_models\"]\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let with_file = |b: RecorderBuilder| b.config_file(&config);
    record(&path, with_file, &[chat(json!("hi"), json!({"metadata": {"run": 1}, "model": "gpt-4o-2024-08-06"}))]).await;
    let rec = strict(&path, with_file);
    assert_eq!(post(&rec, &chat(json!("hi"), json!({"metadata": {"run": 2}, "model": "gpt-4o"})), &[]).await.0, 200);
    rec.finish().await.unwrap_or_else(|e| panic!("{e}"));

    for (content, expected) in [
        ("[matching]\nignore_paths = [\"user\"]\n", "a path starts with `$`"),
        ("[matching]\nstrategy = \"fuzzy\"\n", "content, sequence"),
        ("[matchng]\n", "unknown field"),
        ("[redaction]\npatterns = [{ regex = \"(\", placeholder = \"x\" }]\n", "does not compile"),
    ] {
        std::fs::write(&config, content).unwrap_or_else(|e| panic!("{e}"));
        let message = Recorder::builder().cassette(&path).config_file(&config).start().err().map(|e| e.to_string());
        let message = message.unwrap_or_default();
        assert!(message.contains(&config.display().to_string()) && message.contains(expected), "{content}: {message}");
    }
}

#[tokio::test]
async fn only_provider_headers_take_part_in_the_key_unless_configured() {
    let dir = scratch();
    let path = cassette_in(&dir, "headers");
    let fake = FakeOpenAi::start().await;
    let rec = start(
        Recorder::builder()
            .cassette(&path)
            .upstream("openai", &fake.base_url())
            .force_mode(Mode::Record)
            .match_header("x-tenant"),
    );
    let headers = [("anthropic-version", "2023-06-01"), ("x-tenant", "a"), ("x-trace-id", "t1")];
    assert_eq!(post(&rec, &chat(json!("hi"), json!({})), &headers).await.0, 200);
    rec.finish().await.unwrap_or_else(|e| panic!("{e}"));

    let rec = strict(&path, |b| b.match_header("x-tenant"));
    // A different trace id is not part of the key...
    let same = [("anthropic-version", "2023-06-01"), ("x-tenant", "a"), ("x-trace-id", "t2")];
    assert_eq!(post(&rec, &chat(json!("hi"), json!({})), &same).await.0, 200);
    // ...but the provider's version header and a configured header are.
    assert_eq!(
        post(&rec, &chat(json!("hi"), json!({})), &[("anthropic-version", "2024-01-01"), ("x-tenant", "a")]).await.0,
        404
    );
    assert_eq!(
        post(&rec, &chat(json!("hi"), json!({})), &[("anthropic-version", "2023-06-01"), ("x-tenant", "b")]).await.0,
        404
    );
    let message = failure(rec.finish().await);
    assert!(message.contains("$.headers.anthropic-version") && message.contains("$.headers.x-tenant"), "{message}");
}

#[tokio::test]
async fn openai_beta_takes_part_in_the_key_by_default() {
    let dir = scratch();
    let path = cassette_in(&dir, "openai-beta");
    let fake = FakeOpenAi::start().await;
    let rec = start(Recorder::builder().cassette(&path).upstream("openai", &fake.base_url()).force_mode(Mode::Record));
    let body = chat(json!("hi"), json!({}));
    assert_eq!(post(&rec, &body, &[("openai-beta", "assistants=v2"), ("x-client", "a")]).await.0, 200);
    rec.finish().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(support::read(&path).contains("\"openai-beta\": \"assistants=v2\""));

    // With no configuration: another header does not change the key, another beta does.
    let rec = strict(&path, |b| b);
    assert_eq!(post(&rec, &body, &[("openai-beta", "assistants=v2"), ("x-client", "b")]).await.0, 200);
    assert_eq!(post(&rec, &body, &[("openai-beta", "assistants=v1"), ("x-client", "a")]).await.0, 404);
    let message = failure(rec.finish().await);
    assert!(
        message.contains("$.headers.openai-beta")
            && message.contains("\"assistants=v1\"")
            && !message.contains("x-client"),
        "{message}"
    );
}

/// An agent loop whose history carries tool-call ids that change on every run.
fn agent_turns(run: &str) -> Vec<Value> {
    (1..=3)
        .map(|turn| {
            let mut messages = vec![json!({"role": "user", "content": "Plan a trip [count]"})];
            for previous in 1..turn {
                messages.push(json!({"role": "assistant", "tool_calls": [{"id": format!("call_{run}_{previous}"), "type": "function"}]}));
                messages.push(json!({"role": "tool", "tool_call_id": format!("call_{run}_{previous}"), "content": "ok"}));
            }
            json!({"model": "gpt-4o-mini", "messages": messages})
        })
        .collect()
}

#[tokio::test]
async fn sequence_strategy_replays_agent_turns_whose_ids_change() {
    let dir = scratch();
    let path = cassette_in(&dir, "agent");
    let sequence = |b: RecorderBuilder| b.strategy(Strategy::Sequence);
    record(&path, sequence, &agent_turns("first")).await;
    let file: Value = serde_json::from_str(&support::read(&path)).unwrap_or(Value::Null);
    assert_eq!(file["order"].as_array().map(Vec::len), Some(3));

    let rec = strict(&path, sequence);
    let mut answers = Vec::new();
    for body in agent_turns("second") {
        let (status, body) = post(&rec, &body, &[]).await;
        assert_eq!(status, 200);
        answers.push(body["choices"][0]["message"]["content"].as_str().unwrap_or_default().to_owned());
    }
    rec.finish().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(answers, ["This is answer number 1.", "This is answer number 2.", "This is answer number 3."]);

    // By content, the changed ids miss.
    let rec = strict(&path, |b| b);
    assert_eq!(post(&rec, &agent_turns("second")[1], &[]).await.0, 404);
    drop(rec);

    // A request far from the one recorded at its position is refused, with the diff.
    let rec = strict(&path, sequence);
    assert_eq!(post(&rec, &agent_turns("x")[0], &[]).await.0, 200);
    assert_eq!(post(&rec, &chat(json!("something else entirely"), json!({"model": "o3"})), &[]).await.0, 404);
    let message = failure(rec.finish().await);
    assert!(message.contains("call 2 does not match the request recorded at that position"), "{message}");
    assert!(message.contains("$.body.json.model"), "{message}");
}

#[tokio::test]
async fn calls_beyond_the_recording_follow_the_policy_but_never_in_strict() {
    let dir = scratch();
    let path = cassette_in(&dir, "exhausted");
    let body = chat(json!("Count [count]"), json!({}));
    record(&path, |b| b, std::slice::from_ref(&body)).await;

    let rec = start(
        Recorder::builder()
            .cassette(&path)
            .upstream("openai", NOWHERE)
            .force_mode(Mode::Replay)
            .on_exhausted(Exhausted::RepeatLast),
    );
    let first = post(&rec, &body, &[]).await;
    let again = post(&rec, &body, &[]).await;
    assert_eq!((first.0, again.0), (200, 200));
    assert_eq!(first.1, again.1);
    rec.finish().await.unwrap_or_else(|e| panic!("{e}"));

    let rec = strict(&path, |b| b.on_exhausted(Exhausted::RepeatLast));
    assert_eq!(post(&rec, &body, &[]).await.0, 200);
    assert_eq!(post(&rec, &body, &[]).await.0, 404);
    let message = failure(rec.finish().await);
    assert!(message.contains("called 2 time(s) and recorded 1 time(s)"), "{message}");
}

#[tokio::test]
async fn content_block_normaliser_is_opt_in() {
    let dir = scratch();
    let path = cassette_in(&dir, "blocks");
    record(&path, |b| b, &[chat(json!("hello"), json!({}))]).await;
    let blocks = chat(json!([{"type": "text", "text": "hello"}]), json!({}));

    let rec = strict(&path, |b| b.normaliser(Normaliser::ContentBlocks));
    assert_eq!(post(&rec, &blocks, &[]).await.0, 200);
    rec.finish().await.unwrap_or_else(|e| panic!("{e}"));

    let rec = strict(&path, |b| b);
    assert_eq!(post(&rec, &blocks, &[]).await.0, 404);
    assert!(rec.finish().await.is_err());
}

#[tokio::test]
async fn a_missing_cassette_says_where_and_how_to_record_it() {
    let dir = scratch();
    let path = cassette_in(&dir, "never-recorded");
    let rec = start(
        Recorder::builder()
            .cassette(&path)
            .upstream("openai", NOWHERE)
            .force_mode(Mode::Strict)
            .rerecord_command("TRACEFORGE_VCR_MODE=record cargo test -p app --test chat -- asks --exact"),
    );
    let (status, body) = post(&rec, &chat(json!("hi"), json!({})), &[]).await;
    assert_eq!(status, 404);
    assert!(body["error"]["message"].as_str().unwrap_or_default().contains("the cassette file does not exist"));
    let message = failure(rec.finish().await);
    for expected in [
        path.display().to_string().as_str(),
        "(mode: strict)",
        "POST openai /chat/completions",
        "the cassette file does not exist",
        "TRACEFORGE_VCR_MODE=record cargo test -p app --test chat -- asks --exact",
    ] {
        assert!(message.contains(expected), "missing `{expected}` in:\n{message}");
    }
    assert!(!path.exists(), "strict must not create the cassette");
}

#[tokio::test]
async fn changing_the_rules_after_recording_rekeys_the_cassette() {
    let dir = scratch();
    let alice = chat(json!("hi"), json!({"user": "alice"}));
    let bob = chat(json!("hi"), json!({"user": "bob"}));

    // Recorded while ignoring `user`, replayed without the rule: the identical request matches.
    let path = cassette_in(&dir, "was-ignoring");
    record(&path, |b| b.ignore_path("$.user"), std::slice::from_ref(&alice)).await;
    let rec = strict(&path, |b| b);
    assert_eq!(post(&rec, &alice, &[]).await.0, 200);
    rec.finish().await.unwrap_or_else(|e| panic!("{e}"));

    // Recorded as two requests, replayed with `user` ignored: they join into one, in order.
    let path = cassette_in(&dir, "now-ignoring");
    record(&path, |b| b, &[alice.clone(), bob.clone()]).await;
    let rec = strict(&path, |b| b.ignore_path("$.user"));
    assert_eq!(post(&rec, &bob, &[]).await.0, 200);
    assert_eq!(post(&rec, &alice, &[]).await.0, 200);
    rec.finish().await.unwrap_or_else(|e| panic!("{e}"));

    // Re-recording under the new rule leaves no stale interaction behind.
    record(&path, |b| b.ignore_path("$.user"), std::slice::from_ref(&alice)).await;
    let file: Value = serde_json::from_str(&support::read(&path)).unwrap_or(Value::Null);
    assert_eq!(file["interactions"].as_array().map(Vec::len), Some(1), "{file}");
}

#[tokio::test]
async fn auto_refuses_repeats_when_told_to() {
    let dir = scratch();
    let path = cassette_in(&dir, "auto-repeats");
    let body = chat(json!("once [count]"), json!({}));
    record(&path, |b| b, std::slice::from_ref(&body)).await;
    let fake = FakeOpenAi::start().await;
    let rec = start(
        Recorder::builder()
            .cassette(&path)
            .upstream("openai", &fake.base_url())
            .force_mode(Mode::Auto)
            .on_exhausted(Exhausted::Error),
    );
    assert_eq!(post(&rec, &body, &[]).await.0, 200);
    assert_eq!(post(&rec, &body, &[]).await.0, 404);
    assert_eq!(fake.received().await, 0, "a refused repeat must not reach the upstream");
    let message = failure(rec.finish().await);
    assert!(message.contains("called 2 time(s) and recorded 1 time(s)"), "{message}");
}
