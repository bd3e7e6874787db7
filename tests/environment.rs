//! How the environment steers traceforge. This binary holds a single test because it changes
//! process-wide environment variables, which would race with other tests in the same process.

mod support;

use serde_json::json;
use traceforge::{config, Mode, Recorder};

fn set(name: &str, value: Option<&str>) {
    match value {
        Some(value) => std::env::set_var(name, value),
        None => std::env::remove_var(name),
    }
}

#[tokio::test]
async fn environment_variables_override_code_and_ci_defaults_to_strict() {
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
    let fake = support::fake_openai::FakeOpenAi::start().await;
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
