//! How the environment steers traceforge, and where it stands among the other sources of
//! settings: the environment, then the attribute or builder, then `traceforge.toml`, then the
//! defaults. Every test here changes process-wide environment variables, so each holds
//! [`ENV`] for its whole run and starts from a clean slate.

mod support;

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use support::fake_openai::FakeOpenAi;
use traceforge::__private::{run_async, TestOptions};
use traceforge::{config, Error, Exhausted, Mode, Recorder, RecorderBuilder, Strategy};

/// Held by each test for its whole run: the tests of this binary never see each other's variables.
static ENV: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Every variable a test here sets, so that each starts without leftovers of one that failed.
const VARIABLES: [&str; 8] = [
    traceforge::MODE_ENV,
    "CI",
    config::STRATEGY_ENV,
    config::IGNORE_PATHS_ENV,
    config::CASSETTE_DIR_ENV,
    "TRACEFORGE_UPSTREAM_OPENAI",
    "TRACEFORGE_UPSTREAM_LOCAL_LLM",
    "TRACEFORGE_TEST_ORG_ID",
];

fn set(name: &str, value: Option<&str>) {
    match value {
        Some(value) => std::env::set_var(name, value),
        None => std::env::remove_var(name),
    }
}

/// Takes [`ENV`] and removes every variable a test here sets.
async fn exclusive_env() -> tokio::sync::MutexGuard<'static, ()> {
    let guard = ENV.lock().await;
    for name in VARIABLES {
        set(name, None);
    }
    guard
}

/// A base URL where nothing listens, for strict runs.
const NOWHERE: &str = "http://127.0.0.1:9/v1";

#[tokio::test]
async fn environment_variables_override_code_and_ci_defaults_to_strict() {
    let _env = exclusive_env().await;
    let dir = support::scratch();
    let path = support::cassette_in(&dir, "env");
    let start = |configured: Option<Mode>| {
        let mut builder = Recorder::builder().cassette(&path);
        if let Some(mode) = configured {
            builder = builder.mode(mode);
        }
        builder.start().map(|recorder| recorder.mode())
    };

    // Defaults: auto on a developer machine, strict on CI; "false", "0" and "" are not CI.
    set(traceforge::MODE_ENV, None);
    for (ci, expected) in [
        (None, Mode::Auto),
        (Some("true"), Mode::Strict),
        (Some("1"), Mode::Strict),
        (Some("false"), Mode::Auto),
        (Some("0"), Mode::Auto),
        (Some(""), Mode::Auto),
    ] {
        set("CI", ci);
        assert_eq!(start(None).ok(), Some(expected), "CI={ci:?}");
    }
    // The builder's (or attribute's) mode beats the CI default; the environment beats both.
    set("CI", Some("true"));
    assert_eq!(start(Some(Mode::Record)).ok(), Some(Mode::Record));
    set(traceforge::MODE_ENV, Some("Replay"));
    assert_eq!(start(Some(Mode::Record)).ok(), Some(Mode::Replay));
    // force_mode ignores the environment, for harnesses that test one mode.
    assert_eq!(
        Recorder::builder().cassette(&path).force_mode(Mode::Off).start().map(|r| r.mode()).ok(),
        Some(Mode::Off)
    );

    set(traceforge::MODE_ENV, Some("recrod"));
    let message = start(None).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        message.contains("`recrod`")
            && message.contains("off, record, replay, auto, strict")
            && message.contains("TRACEFORGE_VCR_MODE"),
        "{message}"
    );
    set(traceforge::MODE_ENV, None);
    set("CI", None);

    // TRACEFORGE_UPSTREAM_<NAME> redirects an upstream without touching code, and adds new ones.
    let fake = FakeOpenAi::start().await;
    set("TRACEFORGE_UPSTREAM_OPENAI", Some(&fake.base_url()));
    set("TRACEFORGE_UPSTREAM_LOCAL_LLM", Some(&fake.base_url()));
    let recorder = Recorder::builder()
        .cassette(&path)
        .upstream("openai", "http://127.0.0.1:9/v1")
        .force_mode(Mode::Record)
        .start()
        .unwrap_or_else(|e| panic!("{e}"));
    for name in ["openai", "local_llm"] {
        let status = reqwest::Client::new()
            .post(format!("{}/chat/completions", recorder.url(name)))
            .json(&json!({"model": "m", "messages": [{"role": "user", "content": name}]}))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        assert_eq!(status, 200, "{name}");
    }
    assert_eq!(recorder.finish().await.map(|r| r.recorded).ok(), Some(2));
    assert_eq!(fake.received().await, 2);
    set("TRACEFORGE_UPSTREAM_OPENAI", Some("ftp://nope"));
    let message = Recorder::builder().cassette(&path).start().err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("TRACEFORGE_UPSTREAM_OPENAI") && message.contains("http://"), "{message}");
    set("TRACEFORGE_UPSTREAM_OPENAI", None);
    set("TRACEFORGE_UPSTREAM_LOCAL_LLM", None);

    // Matching settings: the environment's strategy beats the builder's; ignored paths add up.
    set(config::STRATEGY_ENV, Some("bogus"));
    let message = Recorder::builder().cassette(&path).start().err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains(config::STRATEGY_ENV) && message.contains("content, sequence"), "{message}");
    set(config::STRATEGY_ENV, None);
    set(config::IGNORE_PATHS_ENV, Some("$.user, $.metadata"));
    let placeholder_path = support::cassette_in(&dir, "placeholders");
    set("TRACEFORGE_TEST_ORG_ID", Some("org-LIVEORGIDVALUE"));
    let recorder = Recorder::builder()
        .cassette(&placeholder_path)
        .upstream("openai", &fake.base_url())
        .env_placeholder("TRACEFORGE_TEST_ORG_ID", "<OPENAI_ORG>")
        .force_mode(Mode::Record)
        .start()
        .unwrap_or_else(|e| panic!("{e}"));
    let ask = |base: String, user: &'static str| async move {
        let response = reqwest::Client::new()
            .post(format!("{base}/chat/completions"))
            .json(&json!({"model": "m", "user": user, "messages": [{"role": "user", "content": "org-LIVEORGIDVALUE"}]}))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        response.json::<serde_json::Value>().await.unwrap_or_default()
    };
    let recorded = ask(recorder.url("openai"), "alice").await;
    recorder.finish().await.unwrap_or_else(|e| panic!("{e}"));
    let text = support::read(&placeholder_path);
    assert!(!text.contains("LIVEORGIDVALUE") && text.contains("<OPENAI_ORG>"), "{text}");
    // At replay the placeholder is restored from the environment, and `user` is ignored.
    let recorder = Recorder::builder()
        .cassette(&placeholder_path)
        .env_placeholder("TRACEFORGE_TEST_ORG_ID", "<OPENAI_ORG>")
        .force_mode(Mode::Strict)
        .start()
        .unwrap_or_else(|e| panic!("{e}"));
    let replayed = ask(recorder.url("openai"), "bob").await;
    recorder.finish().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(replayed, recorded);
    assert_eq!(replayed["choices"][0]["message"]["content"], "You said: org-LIVEORGIDVALUE");
    set(config::IGNORE_PATHS_ENV, None);
    set("TRACEFORGE_TEST_ORG_ID", None);

    // TRACEFORGE_CASSETTE_DIR moves the cassette root, relative to the crate.
    assert!(config::default_cassette_path("/crate", "tests_chat::french", "asks")
        .ends_with("cassettes/tests_chat/french/asks.json"));
    set(config::CASSETTE_DIR_ENV, Some("recordings"));
    assert_eq!(
        config::default_cassette_path("/crate", "chat", "asks"),
        std::path::PathBuf::from("/crate/recordings/chat/asks.json")
    );
    set(config::CASSETTE_DIR_ENV, None);
}

fn chat(prompt: &str, extra: Value) -> Value {
    let mut body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": prompt}]});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    body
}

async fn post(recorder: &Recorder, body: &Value) -> u16 {
    reqwest::Client::new()
        .post(format!("{}/chat/completions", recorder.url("openai")))
        .json(body)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// A scratch directory holding cassette `name`, with `bodies` recorded through `builder` against
/// a fake upstream, and a `traceforge.toml` holding `toml`. Returns the directory and both paths.
async fn recorded_with_config(
    name: &str,
    builder: RecorderBuilder,
    bodies: &[Value],
    toml: &str,
) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = support::scratch();
    let path = support::cassette_in(&dir, name);
    let fake = FakeOpenAi::start().await;
    let recorder = builder
        .cassette(&path)
        .upstream("openai", &fake.base_url())
        .force_mode(Mode::Record)
        .start()
        .unwrap_or_else(|e| panic!("{e}"));
    for body in bodies {
        assert_eq!(post(&recorder, body).await, 200);
    }
    recorder.finish().await.unwrap_or_else(|e| panic!("{e}"));
    let config = dir.path().join("traceforge.toml");
    std::fs::write(&config, toml).unwrap_or_else(|e| panic!("cannot write {}: {e}", config.display()));
    (dir, path, config)
}

fn replayer(path: &Path, mode: Mode, builder: RecorderBuilder) -> Recorder {
    builder
        .cassette(path)
        .upstream("openai", NOWHERE)
        .force_mode(mode)
        .start()
        .unwrap_or_else(|e| panic!("recorder did not start: {e}"))
}

#[tokio::test]
async fn the_strategy_comes_from_the_environment_then_the_builder_then_traceforge_toml() {
    let _env = exclusive_env().await;
    // Recorded in `sequence` as alice, replayed as bob: `sequence` accepts the one differing
    // field at that position, `content` misses. So each run shows which strategy was in force.
    let alice = chat("hi", json!({"user": "alice"}));
    let sequence = Recorder::builder().strategy(Strategy::Sequence);
    let toml = "[matching]\nstrategy = \"sequence\"\n";
    let (_dir, path, config) = recorded_with_config("strategy", sequence, &[alice], toml).await;

    let file = || Recorder::builder().config_file(&config);
    let cases = [
        ("the default is content", Recorder::builder(), None, 404),
        ("traceforge.toml beats the default", file(), None, 200),
        ("the builder beats traceforge.toml", file().strategy(Strategy::Content), None, 404),
        ("the environment beats the builder", file().strategy(Strategy::Content), Some("sequence"), 200),
        (
            "the environment beats the builder, both ways",
            Recorder::builder().strategy(Strategy::Sequence),
            Some("Content"),
            404,
        ),
    ];
    for (case, builder, env_strategy, expected) in cases {
        set(config::STRATEGY_ENV, env_strategy);
        let recorder = replayer(&path, Mode::Strict, builder);
        assert_eq!(post(&recorder, &chat("hi", json!({"user": "bob"}))).await, expected, "{case}");
        assert_eq!(recorder.finish().await.is_ok(), expected == 200, "{case}");
    }
    set(config::STRATEGY_ENV, None);
}

#[tokio::test]
async fn ignored_paths_add_up_across_the_environment_the_builder_and_traceforge_toml() {
    let _env = exclusive_env().await;
    let original = chat("hi", json!({"a": 1, "b": 1, "c": 1}));
    let toml = "[matching]\nignore_paths = [\"$.a\"]\n";
    let (_dir, path, config) = recorded_with_config("ignored", Recorder::builder(), &[original], toml).await;
    let changed = chat("hi", json!({"a": 2, "b": 2, "c": 2}));

    // Each source ignores one of the three changed fields: together they ignore all three.
    set(config::IGNORE_PATHS_ENV, Some("$.c"));
    let recorder = replayer(&path, Mode::Strict, Recorder::builder().config_file(&config).ignore_path("$.b"));
    assert_eq!(post(&recorder, &changed).await, 200);
    recorder.finish().await.unwrap_or_else(|e| panic!("all three sources together: {e}"));

    // Leave out any one source and its field, and only that one, makes the request miss.
    let file = || Recorder::builder().config_file(&config);
    let cases = [
        ("traceforge.toml", "a", Recorder::builder().ignore_path("$.b"), Some("$.c")),
        ("the builder", "b", file(), Some("$.c")),
        ("the environment", "c", file().ignore_path("$.b"), None),
    ];
    for (left_out, field, builder, env_paths) in cases {
        set(config::IGNORE_PATHS_ENV, env_paths);
        let recorder = replayer(&path, Mode::Strict, builder);
        assert_eq!(post(&recorder, &changed).await, 404, "without {left_out}");
        let message = match recorder.finish().await {
            Err(Error::Verification(failure)) => failure.to_string(),
            other => panic!("without {left_out}: expected a verification failure, got {other:?}"),
        };
        let differing: Vec<&str> =
            ["a", "b", "c"].into_iter().filter(|f| message.contains(&format!("$.body.json.{f}\n"))).collect();
        assert_eq!(differing, [field], "without {left_out}:\n{message}");
    }
    set(config::IGNORE_PATHS_ENV, None);
}

#[tokio::test]
async fn the_exhausted_policy_comes_from_the_builder_then_traceforge_toml() {
    let _env = exclusive_env().await;
    let body = chat("once [count]", json!({}));
    let toml = "[matching]\nexhausted = \"repeat_last\"\n";
    let (_dir, path, config) =
        recorded_with_config("exhausted", Recorder::builder(), std::slice::from_ref(&body), toml).await;

    // In `replay`, the second identical call is a hit only under `repeat_last`.
    let file = || Recorder::builder().config_file(&config);
    let cases = [
        ("the default refuses a second call", Recorder::builder(), 404),
        ("traceforge.toml beats the default", file(), 200),
        ("the builder beats traceforge.toml", file().on_exhausted(Exhausted::Error), 404),
    ];
    for (case, builder, expected) in cases {
        let recorder = replayer(&path, Mode::Replay, builder);
        assert_eq!(post(&recorder, &body).await, 200, "{case}: the first call");
        assert_eq!(post(&recorder, &body).await, expected, "{case}: the second call");
        assert_eq!(recorder.finish().await.is_ok(), expected == 200, "{case}");
    }
}

#[tokio::test]
async fn the_attribute_puts_its_cassette_under_traceforge_cassette_dir() {
    let _env = exclusive_env().await;
    let dir = support::scratch();
    let root = support::leak(dir.path().display().to_string());
    // What a test body sees as its cassette, through the code the attribute expands to.
    let cassette_of = |name: Option<&'static str>, path: Option<&'static str>| async move {
        let meta =
            traceforge::__private::TestMeta { manifest_dir: root, ..support::test_meta("environment::chat", "asks") };
        let options = TestOptions { name, path, mode: Some(Mode::Strict), ..TestOptions::default() };
        let seen = run_async(meta, options, |tf| async move { Ok::<_, ()>(tf.path().to_owned()) }).await;
        seen.unwrap_or_else(|()| panic!("the body does not fail"))
    };

    assert_eq!(cassette_of(None, None).await, dir.path().join("cassettes/environment/chat/asks.json"));
    set(config::CASSETTE_DIR_ENV, Some("recordings"));
    assert_eq!(cassette_of(None, None).await, dir.path().join("recordings/environment/chat/asks.json"));
    assert_eq!(cassette_of(Some("shared"), None).await, dir.path().join("recordings/environment/chat/shared.json"));
    // An explicit `path` is relative to the crate, wherever the cassette root is.
    assert_eq!(cassette_of(None, Some("fixtures/c.json")).await, dir.path().join("fixtures/c.json"));
    set(config::CASSETTE_DIR_ENV, None);
    assert!(!dir.path().join("recordings").exists(), "strict must create nothing");
}
