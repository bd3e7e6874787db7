//! `traceforge list`, `show`, `check` and `prune` on cassettes written by the library into temp
//! directories (recorded through the real recorder against a fake upstream on loopback), with
//! usage records from real strict runs: output and exit codes.

mod common;

use std::path::Path;

use common::fake_llm::{answer_for, FakeLlm};
use common::{cassette, path_arg, record, run, scratch, strict_run};
use serde_json::Value;
use traceforge::cassette::storage;

const CAPITAL: &str = "What is the capital of France?";
const COUNT: &str = "Please count to ten.";

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Puts a token-shaped string into the first response of a cassette, as a careless hand edit
/// would; the request (and so the key) is left alone.
fn plant_secret(path: &Path) {
    let text = String::from_utf8(read(path)).unwrap_or_else(|e| panic!("{e}"));
    let planted = text.replacen(
        "\"The capital of France is Paris.\"",
        "\"The capital of France is Paris. sk-proj-plantedsecretabcdefghijklmnop0123\"",
        1,
    );
    assert_ne!(planted, text, "nothing to plant the secret in");
    std::fs::write(path, planted).unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn list_shows_counts_providers_sizes_and_format_and_fails_on_an_unreadable_cassette() {
    let dir = scratch();
    let fake = FakeLlm::start();
    record(&cassette(dir.path(), "two"), &fake.openai_url(), &[(CAPITAL, false), (COUNT, true)]).await;
    std::fs::create_dir_all(dir.path().join("nested")).unwrap_or_else(|e| panic!("{e}"));
    record(&cassette(&dir.path().join("nested"), "one"), &fake.openai_url(), &[(CAPITAL, false)]).await;

    let listed = run(&["list", &path_arg(dir.path())]);
    assert_eq!(listed.code, Some(0), "{listed:?}");
    let two = listed.stdout.lines().find(|l| l.starts_with("two.json")).unwrap_or_else(|| panic!("{}", listed.stdout));
    let columns: Vec<&str> = two.split_whitespace().collect();
    assert_eq!(&columns[..4], ["two.json", "2", "2", "openai"], "{two}");
    assert_eq!(columns.last(), Some(&"1"), "format version column: {two}");
    assert!(listed.stdout.contains("nested/one.json"), "{}", listed.stdout);
    assert!(listed.stdout.contains("2 cassette(s), 3 interaction(s)"), "{}", listed.stdout);
    assert!(!listed.stdout.contains('\x1b'), "colour in piped output");

    std::fs::write(cassette(dir.path(), "future"), r#"{"format_version": 2, "interactions": []}"#)
        .unwrap_or_else(|e| panic!("{e}"));
    let listed = run(&["list", "--json", &path_arg(dir.path())]);
    assert_eq!(listed.code, Some(1), "an unreadable cassette is a failure: {listed:?}");
    assert!(listed.stderr.contains("1 cassette(s) cannot be read"), "{}", listed.stderr);
    let document = json_of(&listed.stdout);
    let rows = document["cassettes"].as_array().cloned().unwrap_or_default();
    assert_eq!(rows.len(), 3);
    let future = rows.iter().find(|r| r["path"] == "future.json").cloned().unwrap_or_default();
    assert_eq!(future["format_version"], "2");
    assert!(future["error"].as_str().is_some_and(|e| e.contains("reads version 1")), "{future}");
    let two = rows.iter().find(|r| r["path"] == "two.json").cloned().unwrap_or_default();
    assert_eq!((two["interactions"].as_u64(), two["providers"][0].as_str()), (Some(2), Some("openai")));
    assert_eq!(two["size_bytes"].as_u64(), Some(read(&cassette(dir.path(), "two")).len() as u64));

    let missing = run(&["list", &path_arg(&dir.path().join("nowhere"))]);
    assert_eq!(missing.code, Some(2), "{missing:?}");
    assert!(missing.stderr.contains("nowhere"), "{}", missing.stderr);
}

#[tokio::test]
async fn show_prints_each_request_and_the_assembled_answer_plain_when_piped() {
    let dir = scratch();
    let fake = FakeLlm::start();
    let path = cassette(dir.path(), "chat");
    record(&path, &fake.openai_url(), &[(CAPITAL, false), (COUNT, true)]).await;

    let shown = run(&["show", &path_arg(&path)]);
    assert_eq!(shown.code, Some(0), "{shown:?}");
    assert!(!shown.stdout.contains('\x1b'), "colour in piped output:\n{}", shown.stdout);
    assert!(shown.stdout.contains("POST openai /chat/completions"), "{}", shown.stdout);
    assert!(shown.stdout.contains("model gpt-4o-mini"), "{}", shown.stdout);
    assert!(shown.stdout.contains(&format!("user: {CAPITAL}")), "{}", shown.stdout);
    assert!(shown.stdout.contains(&format!("user: {COUNT}")), "{}", shown.stdout);
    // The streamed answer is shown assembled, not as its events.
    assert!(shown.stdout.contains(&answer_for(COUNT)), "{}", shown.stdout);
    assert!(shown.stdout.contains(&answer_for(CAPITAL)), "{}", shown.stdout);
    assert!(shown.stdout.contains("sse, "), "{}", shown.stdout);
    assert!(shown.stdout.contains("finish stop"), "{}", shown.stdout);

    let coloured = run(&["show", "--color", "always", &path_arg(&path)]);
    assert!(coloured.stdout.contains("\x1b[36mPOST openai /chat/completions\x1b[0m"), "{}", coloured.stdout);

    let json = run(&["show", "--json", &path_arg(&path)]);
    assert_eq!(json.code, Some(0), "{json:?}");
    let document = json_of(&json.stdout);
    let interactions = document["interactions"].as_array().cloned().unwrap_or_default();
    let texts: Vec<&str> = interactions.iter().filter_map(|i| i["responses"][0]["answer"]["text"].as_str()).collect();
    assert_eq!(texts.len(), 2);
    assert!(texts.contains(&answer_for(COUNT).as_str()) && texts.contains(&answer_for(CAPITAL).as_str()), "{texts:?}");
    let streamed = interactions.iter().find(|i| i["prompt"]["stream"] == true).cloned().unwrap_or_default();
    assert_eq!(streamed["prompt"]["messages"][0]["text"], COUNT);
    assert_eq!(streamed["responses"][0]["answer"]["finish_reason"], "stop");

    let missing = run(&["show", &path_arg(&cassette(dir.path(), "absent"))]);
    assert_eq!(missing.code, Some(2), "{missing:?}");
    assert!(missing.stderr.contains("no cassette at") && missing.stderr.contains("absent.json"), "{}", missing.stderr);
}

#[tokio::test]
async fn check_finds_secrets_corruption_orphans_and_unused_interactions() {
    let dir = scratch();
    let cassettes = dir.path().join("cassettes");
    let target = dir.path().join("target");
    let fake = FakeLlm::start();
    let (good, partly, orphan, leaky) = (
        cassette(&cassettes, "good"),
        cassette(&cassettes, "partly"),
        cassette(&cassettes, "orphan"),
        cassette(&cassettes, "leaky"),
    );
    record(&good, &fake.openai_url(), &[(CAPITAL, false), (COUNT, true)]).await;
    record(&partly, &fake.openai_url(), &[(CAPITAL, false), (COUNT, true)]).await;
    record(&orphan, &fake.openai_url(), &[(COUNT, false)]).await;
    record(&leaky, &fake.openai_url(), &[(CAPITAL, false)]).await;
    plant_secret(&leaky);
    let broken = cassette(&cassettes, "broken");
    std::fs::write(&broken, "{\"format_version\": 1, \"interactions\": [").unwrap_or_else(|e| panic!("{e}"));
    let (dir_arg, target_arg) = (path_arg(&cassettes), path_arg(&target));

    // Before any strict run: no usage record, so no orphan is claimed, and the note says why.
    let checked = run(&["check", &dir_arg, "--target-dir", &target_arg]);
    assert_eq!(checked.code, Some(1), "{checked:?}");
    assert!(
        checked.stdout.contains("no usage record") && checked.stdout.contains("CI=true cargo test"),
        "{}",
        checked.stdout
    );
    assert!(!checked.stdout.contains("orphan:"), "{}", checked.stdout);
    assert!(
        checked.stdout.contains("FAIL broken.json") && checked.stdout.contains("is corrupt at line 1"),
        "{}",
        checked.stdout
    );
    assert!(
        checked.stdout.contains("FAIL leaky.json")
            && checked
                .stdout
                .contains("OpenAI API key at $.interactions[0].responses[0].body.json.choices[0].message.content"),
        "{}",
        checked.stdout
    );
    assert!(!checked.stdout.contains("plantedsecret"), "the secret itself is never printed");
    assert!(!checked.stdout.contains("good.json"), "a clean cassette is not reported:\n{}", checked.stdout);

    // Strict runs: `good` uses everything, `partly` only one interaction, `orphan` never runs.
    strict_run(&good, &target, &[(CAPITAL, false), (COUNT, true)]).await.unwrap_or_else(|e| panic!("{e}"));
    let failed = strict_run(&partly, &target, &[(CAPITAL, false)]).await;
    assert!(failed.is_err_and(|e| e.to_string().contains("were not used")), "strict must fail on the unused one");

    let checked = run(&["check", &dir_arg, "--target-dir", &target_arg, "--format", "json"]);
    assert_eq!(checked.code, Some(1), "{checked:?}");
    let document = json_of(&checked.stdout);
    assert_eq!(document["usage_checked"], true);
    let by_path = |name: &str| {
        document["cassettes"].as_array().and_then(|c| c.iter().find(|c| c["path"] == name)).cloned().unwrap_or_default()
    };
    let kinds = |name: &str| -> Vec<String> {
        by_path(name)["problems"]
            .as_array()
            .map(|p| p.iter().filter_map(|f| f["kind"].as_str().map(String::from)).collect())
            .unwrap_or_default()
    };
    assert_eq!(by_path("good.json")["status"], "ok", "{}", checked.stdout);
    assert_eq!(kinds("orphan.json"), ["orphan"], "{}", checked.stdout);
    assert_eq!(kinds("partly.json"), ["unused"], "{}", checked.stdout);
    assert!(by_path("partly.json")["problems"][0]["message"].as_str().is_some_and(|m| m.contains("0 of 1")));
    assert_eq!(kinds("broken.json"), ["format"]);
    // The leaky cassette has no strict run either, so it is an orphan too.
    assert_eq!(kinds("leaky.json"), ["secret", "orphan"], "{}", checked.stdout);
    assert_eq!(document["summary"]["problems"], 5);

    let junit = run(&["check", &dir_arg, "--target-dir", &target_arg, "--format", "junit"]);
    assert_eq!(junit.code, Some(1));
    assert!(junit.stdout.starts_with("<?xml"), "{}", junit.stdout);
    assert_eq!(junit.stdout.matches("<testcase ").count(), 5, "{}", junit.stdout);
    assert_eq!(junit.stdout.matches("<failure ").count(), 4, "{}", junit.stdout);
    assert!(junit.stdout.contains("tests=\"5\" failures=\"4\""), "{}", junit.stdout);
    assert!(junit.stdout.contains("<testcase classname=\"traceforge.check\" name=\"good.json\"/>"), "{}", junit.stdout);

    // Editing a cassette after its strict run makes its record stale: a warning, not a verdict.
    let mut text = String::from_utf8(read(&good)).unwrap_or_default();
    text.push('\n');
    std::fs::write(&good, text).unwrap_or_else(|e| panic!("{e}"));
    let only_good = run(&["check", &path_arg(&good), "--target-dir", &target_arg]);
    assert_eq!(only_good.code, Some(0), "warnings alone pass: {only_good:?}");
    assert!(
        only_good.stdout.contains("WARN good.json") && only_good.stdout.contains("changed since its last strict run"),
        "{}",
        only_good.stdout
    );
    assert!(only_good.stdout.contains("warning not_canonical"), "{}", only_good.stdout);

    let unknown = run(&["check", &path_arg(&dir.path().join("nowhere"))]);
    assert_eq!(unknown.code, Some(2), "{unknown:?}");
    let bad_format = run(&["check", &dir_arg, "--format", "xml"]);
    assert_eq!(bad_format.code, Some(2), "{bad_format:?}");
}

#[tokio::test]
async fn check_honours_allow_secret_paths_of_the_crate_config() {
    let dir = scratch();
    let fake = FakeLlm::start();
    let path = cassette(&dir.path().join("cassettes"), "leaky");
    record(&path, &fake.openai_url(), &[(CAPITAL, false)]).await;
    plant_secret(&path);
    let cassettes = path_arg(&dir.path().join("cassettes"));
    assert_eq!(run(&["check", &cassettes]).code, Some(1));
    std::fs::write(dir.path().join("Cargo.toml"), "[package]\nname = \"x\"\n").unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        dir.path().join("traceforge.toml"),
        "[redaction]\nallow_secret_paths = [\"$.interactions[0].responses[0].body.json.choices[0].message.content\"]\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let allowed = run(&["check", &cassettes]);
    assert_eq!(allowed.code, Some(0), "{allowed:?}");
}

#[tokio::test]
async fn prune_is_a_dry_run_by_default_refuses_without_usage_and_applies_with_write() {
    let dir = scratch();
    let cassettes = dir.path().join("cassettes");
    let target = dir.path().join("target");
    let fake = FakeLlm::start();
    let (partly, orphan, good) =
        (cassette(&cassettes, "partly"), cassette(&cassettes, "orphan"), cassette(&cassettes, "good"));
    record(&partly, &fake.openai_url(), &[(CAPITAL, false), (COUNT, true)]).await;
    record(&orphan, &fake.openai_url(), &[(COUNT, false)]).await;
    record(&good, &fake.openai_url(), &[(CAPITAL, true)]).await;
    let (dir_arg, target_arg) = (path_arg(&cassettes), path_arg(&target));
    let before = [read(&partly), read(&orphan), read(&good)];

    let refused = run(&["prune", &dir_arg, "--target-dir", &target_arg, "--write"]);
    assert_eq!(refused.code, Some(2), "{refused:?}");
    assert!(
        refused.stderr.contains("nothing pruned") && refused.stderr.contains("CI=true cargo test"),
        "{}",
        refused.stderr
    );
    assert_eq!([read(&partly), read(&orphan), read(&good)], before);

    let _ = strict_run(&partly, &target, &[(CAPITAL, false)]).await;
    strict_run(&good, &target, &[(CAPITAL, true)]).await.unwrap_or_else(|e| panic!("{e}"));

    let dry = run(&["prune", &dir_arg, "--target-dir", &target_arg]);
    assert_eq!(dry.code, Some(0), "{dry:?}");
    assert!(dry.stdout.contains("would delete orphan.json: orphan"), "{}", dry.stdout);
    assert!(dry.stdout.contains("would prune partly.json"), "{}", dry.stdout);
    assert!(dry.stdout.contains("the whole interaction"), "{}", dry.stdout);
    assert!(!dry.stdout.contains("good.json"), "{}", dry.stdout);
    assert!(dry.stdout.contains("dry run: nothing changed"), "{}", dry.stdout);
    assert_eq!([read(&partly), read(&orphan), read(&good)], before, "a dry run changed a file");

    let applied = run(&["prune", &dir_arg, "--target-dir", &target_arg, "--write"]);
    assert_eq!(applied.code, Some(0), "{applied:?}");
    assert!(!orphan.exists(), "the orphan is still there");
    assert_eq!(read(&good), before[2], "a fully used cassette was touched");
    let pruned = storage::load(&partly).unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|| panic!("partly is gone"));
    assert_eq!(pruned.interactions.len(), 1);
    assert_eq!(
        pruned.interactions[0].request.body,
        traceforge::cassette::Body::Json { json: common::chat(CAPITAL, false) }
    );

    // The pruned cassette passes strict with only the call its test makes, and check is clean.
    strict_run(&partly, &target, &[(CAPITAL, false)])
        .await
        .unwrap_or_else(|e| panic!("pruned cassette fails strict: {e}"));
    let checked = run(&["check", &dir_arg, "--target-dir", &target_arg]);
    assert_eq!(checked.code, Some(0), "{checked:?}");
    assert!(
        checked.stdout.contains("0 problem(s)") && checked.stdout.contains("2 of 2 cassette(s) clean"),
        "{}",
        checked.stdout
    );
}
