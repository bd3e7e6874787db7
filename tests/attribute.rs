//! The `#[traceforge::cassette]` attribute as a user writes it. These tests replay the cassettes
//! committed under `cassettes/attribute/`, so `TRACEFORGE_VCR_MODE=strict cargo test` passes
//! offline on a fresh clone. They were recorded against `examples/fake_upstream.rs`:
//! `TRACEFORGE_UPSTREAM_OPENAI=<its URL> TRACEFORGE_VCR_MODE=record cargo test --test attribute`.

mod support;

use async_openai::config::OpenAIConfig;
use async_openai::types::chat::{ChatCompletionRequestUserMessageArgs, CreateChatCompletionRequestArgs};
use serde_json::{json, Value};
use traceforge::Cassette;

fn openai(tf: &Cassette) -> async_openai::Client<OpenAIConfig> {
    let key = std::env::var("OPENAI_API_KEY").unwrap_or_else(|_| "unused-when-replaying".to_owned());
    async_openai::Client::with_config(OpenAIConfig::new().with_api_base(tf.url("openai")).with_api_key(key))
}

async fn ask(tf: &Cassette, question: &str) -> Result<String, Box<dyn std::error::Error>> {
    let request = CreateChatCompletionRequestArgs::default()
        .model("gpt-4o-mini")
        .temperature(0.0)
        .messages(vec![ChatCompletionRequestUserMessageArgs::default().content(question).build()?.into()])
        .build()?;
    let response = openai(tf).chat().create(request).await?;
    Ok(response.choices.first().and_then(|c| c.message.content.clone()).unwrap_or_default())
}

#[traceforge::cassette]
async fn answers_in_french(tf: Cassette) {
    let answer = ask(&tf, "What is the capital of France? Answer in French.").await.unwrap_or_else(|e| panic!("{e}"));
    assert!(answer.contains("Paris"), "{answer}");
    assert!(tf.path().ends_with("cassettes/attribute/answers_in_french.json"), "{}", tf.path().display());
}

#[traceforge::cassette]
async fn returns_a_result(tf: Cassette) -> Result<(), Box<dyn std::error::Error>> {
    let answer = ask(&tf, "Summarise what makes Rust memory safe.").await?;
    assert!(answer.contains("ownership"), "{answer}");
    Ok(())
}

#[traceforge::cassette]
#[tokio::test]
async fn composes_with_tokio_test(tf: Cassette) {
    let body: Value = reqwest::Client::new()
        .post(format!("{}/embeddings", tf.url("openai")))
        .json(&json!({"model": "text-embedding-3-small", "input": "ownership and borrowing"}))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let vector: Vec<f64> = body["data"][0]["embedding"]
        .as_array()
        .map(|v| v.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default();
    assert_eq!(vector.len(), 8);
    assert!((vector.iter().map(|x| x * x).sum::<f64>() - 1.0).abs() < 1e-3);
}

#[traceforge::cassette(flavor = "multi_thread", name = "capital_question")]
async fn named_cassette_on_a_multi_thread_runtime(tf: Cassette) {
    assert!(tf.path().ends_with("cassettes/attribute/capital_question.json"));
    // Two calls at once: the recorder serves them concurrently.
    let (a, b) = tokio::join!(ask(&tf, "What is the capital of France?"), ask(&tf, "Say hello [count]"));
    assert_eq!(a.unwrap_or_else(|e| panic!("{e}")), "The capital of France is Paris.");
    assert!(b.unwrap_or_else(|e| panic!("{e}")).starts_with("This is answer number"));
}

#[traceforge::cassette]
async fn takes_no_argument() {
    // No calls, no cassette file: passes in every mode.
}

/// A panicking body must leave its cassette byte-identical, whatever the mode: this drives the
/// very code the attribute expands to, on a copy of a committed cassette.
#[test]
fn a_panicking_body_leaves_the_cassette_untouched() {
    let dir = support::scratch();
    let path = dir.path().join("copy.json");
    let committed = concat!(env!("CARGO_MANIFEST_DIR"), "/cassettes/examples/quickstart.json");
    std::fs::copy(committed, &path).unwrap_or_else(|e| panic!("{e}"));
    let before = std::fs::read(&path).unwrap_or_default();

    let runtime = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("{e}"));
    let fake = runtime.block_on(support::fake_openai::FakeOpenAi::start());
    let upstreams: &'static [(&'static str, &'static str)] =
        Box::leak(Box::new([("openai", support::leak(fake.base_url()))]));
    let options = traceforge::__private::TestOptions {
        upstreams,
        path: Some(support::leak(path.display().to_string())),
        ..Default::default()
    };
    let meta = support::test_meta(module_path!(), "a_panicking_body_leaves_the_cassette_untouched");
    let outcome = std::panic::catch_unwind(|| {
        traceforge::__private::run_test(meta, options, |tf| async move {
            let _ = ask(&tf, "What is the capital of France? Answer in French, in one sentence.").await;
            let _ = ask(&tf, "A question that was never recorded").await;
            panic!("the body fails on purpose");
            #[allow(unreachable_code)]
            ()
        })
    });
    assert!(outcome.is_err(), "the panic must reach the test harness");
    assert_eq!(std::fs::read(&path).unwrap_or_default(), before);
}

/// The attribute's `ignore(...)`: this test shares `answers_in_french`'s cassette while sending a
/// per-run `user` id that the recording never had.
#[traceforge::cassette(name = "answers_in_french", ignore("$.user", "$.metadata"))]
async fn ignored_paths_from_the_attribute(tf: Cassette) {
    let body = json!({
        "model": "gpt-4o-mini",
        "temperature": 0.0,
        "messages": [{"role": "user", "content": "What is the capital of France? Answer in French."}],
        "user": format!("run-{}", std::process::id()),
    });
    let response = reqwest::Client::new()
        .post(format!("{}/chat/completions", tf.url("openai")))
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(answer["choices"][0]["message"]["content"], "La capitale de la France est Paris.");
}

/// The command a failed check prints must re-run exactly the failing test. This drives the code
/// the attribute expands to with what cargo set for this very test (its package, target, module
/// and name), in a module of its own so that the path has a module in it.
mod rerecord {
    use std::panic::AssertUnwindSafe;
    use std::sync::{Arc, Mutex};

    use futures_util::FutureExt as _;
    use traceforge::__private::{run_async, TestOptions};
    use traceforge::{Cassette, Mode, Recorder};

    use super::{ask, support};

    #[tokio::test]
    async fn a_strict_miss_prints_the_command_that_rerecords_this_test() {
        let dir = support::scratch();
        let path = dir.path().join("holds_another_request.json");
        let fake = support::fake_openai::FakeOpenAi::start().await;
        let recorder = Recorder::builder()
            .cassette(&path)
            .upstream("openai", &fake.base_url())
            .force_mode(Mode::Record)
            .start()
            .unwrap_or_else(|e| panic!("{e}"));
        ask(&recorder.cassette(), "What is the capital of France?").await.unwrap_or_else(|e| panic!("{e}"));
        recorder.finish().await.unwrap_or_else(|e| panic!("{e}"));
        drop(fake);
        let before = std::fs::read(&path).unwrap_or_else(|e| panic!("{e}"));

        let options = TestOptions {
            upstreams: Box::leak(Box::new([("openai", "http://127.0.0.1:9/v1")])),
            path: Some(support::leak(path.display().to_string())),
            mode: Some(Mode::Strict),
            ..TestOptions::default()
        };
        let meta = support::test_meta(module_path!(), "a_strict_miss_prints_the_command_that_rerecords_this_test");
        let mode = Arc::new(Mutex::new(None));
        let seen = Arc::clone(&mode);
        let outcome = AssertUnwindSafe(run_async(meta, options, |tf: Cassette| async move {
            *seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(tf.mode());
            // The miss is a 404 the body ignores; the check after the body fails the test.
            let _ = ask(&tf, "A question that was never recorded").await;
        }))
        .catch_unwind()
        .await;
        let message = match outcome {
            Err(panic) => panic.downcast_ref::<String>().cloned().unwrap_or_default(),
            Ok(()) => panic!("a strict miss must fail the test"),
        };
        let command = "TRACEFORGE_VCR_MODE=record cargo test -p traceforge-suite --test attribute -- \
                       rerecord::a_strict_miss_prints_the_command_that_rerecords_this_test --exact";
        assert!(message.ends_with(&format!("To re-record this test, run:\n  {command}")), "{message}");
        // TRACEFORGE_VCR_MODE beats the attribute's mode; any other mode fails this run too (it
        // cannot reach the upstream), but for another reason.
        let mode = *mode.lock().unwrap_or_else(|p| p.into_inner());
        if std::env::var_os(traceforge::MODE_ENV).is_none() {
            assert_eq!(mode, Some(Mode::Strict));
        }
        if mode == Some(Mode::Strict) {
            for expected in [
                "cassette check failed for `rerecord::a_strict_miss_prints_the_command_that_rerecords_this_test` (mode: strict)",
                "1 request(s) had no recording",
                "1 recorded interaction(s) were not used",
            ] {
                assert!(message.contains(expected), "missing `{expected}` in:\n{message}");
            }
        }
        assert_eq!(std::fs::read(&path).ok(), Some(before), "a failed check must not write");
    }
}
