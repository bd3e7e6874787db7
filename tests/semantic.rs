//! Semantic assertions as a user writes them, on answers replayed from committed cassettes.
//! Every embedding they need is in the committed cache
//! (`cassettes/all-MiniLM-L6-v2-int8.embeddings.json`), so `CI=true cargo test --test semantic`
//! passes without the model; the cassettes were recorded against `examples/fake_upstream.rs`:
//! `TRACEFORGE_UPSTREAM_OPENAI=<its URL> TRACEFORGE_VCR_MODE=record cargo test --test semantic`
//! (with the model provisioned, which also fills the cache).

use std::panic::{catch_unwind, AssertUnwindSafe};

use async_openai::config::OpenAIConfig;
use async_openai::types::chat::{ChatCompletionRequestUserMessageArgs, CreateChatCompletionRequestArgs};
use traceforge::semantic::{means, Semantic};
use traceforge::{assert_not_semantic, assert_semantic, assert_semantic_snapshot, Cassette, Mode};

async fn ask(tf: &Cassette, question: &str) -> String {
    let key = std::env::var("OPENAI_API_KEY").unwrap_or_else(|_| "unused-when-replaying".to_owned());
    let client =
        async_openai::Client::with_config(OpenAIConfig::new().with_api_base(tf.url("openai")).with_api_key(key));
    let request = CreateChatCompletionRequestArgs::default()
        .model("gpt-4o-mini")
        .temperature(0.0)
        .messages(vec![ChatCompletionRequestUserMessageArgs::default()
            .content(question)
            .build()
            .unwrap_or_else(|e| panic!("{e}"))
            .into()])
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let response = client.chat().create(request).await.unwrap_or_else(|e| panic!("{e}"));
    response.choices.first().and_then(|c| c.message.content.clone()).unwrap_or_default()
}

/// The panic message of `f`, which must panic.
fn panic_message(f: impl FnOnce()) -> String {
    let payload = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(()) => panic!("expected the assertion to fail"),
        Err(payload) => payload,
    };
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default()
}

#[traceforge::cassette]
async fn the_answer_means_paris(tf: Cassette) {
    let answer = ask(&tf, "What is the capital of France?").await;
    // The recorded answer is "The capital of France is Paris."; these are other wordings.
    assert_semantic!(answer, "Paris is the capital city of France.");
    assert_semantic!(answer, means("France's capital is Paris.").requires("Paris").same_negation(), 0.8);
    assert_not_semantic!(answer, "I can't help with that request.", "Lyon is the third largest city in France.");
    assert_eq!(tf.last_answer().map(|a| a.text).as_deref(), Some(answer.as_str()));
}

#[traceforge::cassette]
async fn the_answer_matches_its_approved_snapshot(tf: Cassette) {
    let answer = ask(&tf, "What is the capital of France?").await;
    // tests/snapshots/semantic__capital_of_france.snap approves "Paris is the capital city of
    // France.": a different wording, the same meaning, so it passes without a re-approval.
    assert_semantic_snapshot!("capital_of_france", answer);
}

#[test]
fn a_failure_shows_both_texts_the_score_the_threshold_the_metric_and_the_model() {
    let message = panic_message(|| {
        assert_semantic!("The capital of France is Paris.", "Lyon is the third largest city in France.");
    });
    for needle in [
        "semantic assertion failed",
        "\"The capital of France is Paris.\"",
        "\"Lyon is the third largest city in France.\"",
        "0.531",
        "threshold 0.700",
        "cosine similarity",
        "all-MiniLM-L6-v2-int8",
    ] {
        assert!(message.contains(needle), "missing {needle:?} in:\n{message}");
    }
}

#[test]
fn guards_catch_what_cosine_similarity_cannot_see() {
    // 0.926 apart in meaning by cosine, but not the same invoice.
    assert_semantic!("The invoice total is 42 euros.", "The invoice total is 24 euros.");
    let message = panic_message(|| {
        assert_semantic!("The invoice total is 42 euros.", means("The invoice total is 24 euros.").same_numbers());
    });
    assert!(message.contains("numbers differ: expected {24}, the answer has {42}"), "{message}");
    assert!(message.contains("a guard failed"), "{message}");

    let message = panic_message(|| {
        assert_semantic!("The tests did not pass.", means("The tests passed.").same_negation());
    });
    assert!(message.contains("negation differs"), "{message}");
}

#[test]
fn a_forbidden_meaning_fails_and_names_it() {
    let message = panic_message(|| {
        assert_not_semantic!(
            "I am unable to assist with this request.",
            ["The weather today is sunny and warm.", "I can't help with that request."],
            0.7
        );
    });
    assert!(message.contains("means something it must not"), "{message}");
    assert!(message.contains("forbidden: \"I can't help with that request.\""), "{message}");
    assert!(message.contains("0.792"), "{message}");
    assert!(!message.contains("sunny"), "an unrelated forbidden text is not reported: {message}");
}

#[test]
fn strict_never_loads_the_model_and_a_cache_miss_says_how_to_fill_it() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let semantic = Semantic::in_dir(dir.path())
        .mode(Mode::Strict)
        // A model folder that does not exist: strict must fail on the cache, not on the model.
        .model_dir(dir.path().join("no-model-here"));
    let error = semantic.similarity("A sentence nobody embedded.", "Another one.").err().map(|e| e.to_string());
    let message = error.unwrap_or_else(|| panic!("a cache miss passed in strict"));
    for needle in [
        "2 text(s) have no embedding of model all-MiniLM-L6-v2-int8",
        "all-MiniLM-L6-v2-int8.embeddings.json",
        "strict mode never loads the model",
        "\"A sentence nobody embedded.\"",
        "TRACEFORGE_VCR_MODE=auto cargo test",
        "then commit",
    ] {
        assert!(message.contains(needle), "missing {needle:?} in:\n{message}");
    }
    assert!(!message.contains("no-model-here"), "strict tried to load the model: {message}");
    assert!(std::fs::read_dir(dir.path()).map(|d| d.count()).unwrap_or(0) == 0, "strict wrote a file");
}

#[test]
fn a_cache_miss_inside_an_assertion_names_this_test() {
    // What the macros use: the command that fills the cache re-runs exactly this test.
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let semantic = traceforge::__semantic_call_site!()
        .semantic()
        .mode(Mode::Replay)
        .cache_file(dir.path().join("empty.embeddings.json"));
    let message = semantic.similarity("Nothing cached says this.", "Nor this.").err().map(|e| e.to_string());
    let message = message.unwrap_or_else(|| panic!("a cache miss passed in replay"));
    assert!(
        message.contains(
            "TRACEFORGE_VCR_MODE=auto cargo test -p traceforge-suite --test semantic -- a_cache_miss_inside_an_assertion_names_this_test --exact"
        ),
        "{message}"
    );
    assert!(message.contains("replay mode never loads the model"), "{message}");
}

#[test]
fn a_changed_answer_fails_its_snapshot_and_leaves_the_approved_one() {
    // The approved snapshot, copied where this test may let insta write its `.snap.new`.
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let approved = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/snapshots/semantic__capital_of_france.snap"
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let snap = dir.path().join("semantic__capital_of_france.snap");
    std::fs::write(&snap, &approved).unwrap_or_else(|e| panic!("{e}"));
    let mut settings = traceforge::__private::insta::Settings::clone_current();
    settings.set_snapshot_path(dir.path());
    let message = panic_message(|| {
        settings.bind(|| assert_semantic_snapshot!("capital_of_france", "Lyon is the third largest city in France."));
    });
    assert!(message.contains("snapshot assertion for 'capital_of_france' failed"), "{message}");
    assert_eq!(std::fs::read_to_string(&snap).unwrap_or_default(), approved, "the approved snapshot changed");
}

#[traceforge::cassette]
async fn an_unnamed_snapshot_is_named_after_its_test() {
    // insta names an unnamed snapshot after the enclosing function: the attribute keeps the
    // test's name on the body, so this one is tests/snapshots/semantic__<this test>.snap.
    assert_semantic_snapshot!("Paris is the capital city of France.");
}

#[traceforge::cassette]
async fn another_unnamed_snapshot_has_a_file_of_its_own() {
    assert_semantic_snapshot!("The cat sits on the mat.");
}

#[traceforge::cassette(mode = "replay")]
async fn assertions_follow_the_mode_of_their_test(tf: Cassette) {
    // The attribute's mode (or the environment's, which beats it) reaches the assertions in the
    // body, so a replay test never loads the model nor writes the embedding cache.
    let semantic = traceforge::__semantic_call_site!().semantic();
    assert_eq!(semantic.current_mode().unwrap_or_else(|e| panic!("{e}")), tf.mode());
    // On another task, the test's mode is not known; the environment decides.
    let elsewhere = std::thread::spawn(|| traceforge::__semantic_call_site!().semantic().current_mode().ok())
        .join()
        .unwrap_or_else(|_| panic!("the thread panicked"));
    assert_eq!(elsewhere, Mode::resolve(None).ok());
}
