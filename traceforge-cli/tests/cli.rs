//! `traceforge list`, `show`, `check` and `prune` on cassettes written by the library into temp
//! directories (recorded through the real recorder against a fake upstream on loopback), with
//! usage records from real strict runs: output and exit codes.

mod common;

use std::path::Path;

use common::fake_llm::{answer_for, FakeLlm};
use common::{cassette, path_arg, record, run, scratch, strict_run};
use serde_json::Value;
use traceforge::cassette::storage;
use traceforge::usage::{self, UsageRecord};

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
async fn check_finds_secrets_corruption_unused_interactions_and_cassettes_without_usage() {
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

    // Strict runs: `good` uses everything, `partly` only one interaction, `orphan` never runs
    // (which proves nothing: an example's or an ignored test's cassette has no record either).
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
    let kinds_of = |name: &str, list: &str| -> Vec<String> {
        by_path(name)[list]
            .as_array()
            .map(|p| p.iter().filter_map(|f| f["kind"].as_str().map(String::from)).collect())
            .unwrap_or_default()
    };
    let kinds = |name: &str| kinds_of(name, "problems");
    assert_eq!(by_path("good.json")["status"], "ok", "{}", checked.stdout);
    assert_eq!(by_path("orphan.json")["status"], "warning", "{}", checked.stdout);
    assert_eq!(kinds_of("orphan.json", "warnings"), ["no_usage"], "{}", checked.stdout);
    assert!(
        by_path("orphan.json")["warnings"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("does not prove it unused")),
        "{}",
        checked.stdout
    );
    assert_eq!(kinds("partly.json"), ["unused"], "{}", checked.stdout);
    assert!(by_path("partly.json")["problems"][0]["message"].as_str().is_some_and(|m| m.contains("0 of 1")));
    assert_eq!(kinds("broken.json"), ["format"]);
    // The leaky cassette has no strict run either: a warning beside its secret.
    assert_eq!(kinds("leaky.json"), ["secret"], "{}", checked.stdout);
    assert_eq!(kinds_of("leaky.json", "warnings"), ["no_usage"], "{}", checked.stdout);
    assert_eq!(document["summary"]["problems"], 3);

    let junit = run(&["check", &dir_arg, "--target-dir", &target_arg, "--format", "junit"]);
    assert_eq!(junit.code, Some(1));
    assert!(junit.stdout.starts_with("<?xml"), "{}", junit.stdout);
    assert_eq!(junit.stdout.matches("<testcase ").count(), 5, "{}", junit.stdout);
    assert_eq!(junit.stdout.matches("<failure ").count(), 3, "{}", junit.stdout);
    assert!(junit.stdout.contains("tests=\"5\" failures=\"3\""), "{}", junit.stdout);
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

    let dry = run(&["prune", &dir_arg, "--target-dir", &target_arg, "--delete-orphans"]);
    assert_eq!(dry.code, Some(0), "{dry:?}");
    // No usage record is no proof: even --delete-orphans leaves it.
    assert!(dry.stdout.contains("skip orphan.json: left alone, no strict run loaded it"), "{}", dry.stdout);
    assert!(!dry.stdout.contains("would delete"), "{}", dry.stdout);
    assert!(dry.stdout.contains("would prune partly.json"), "{}", dry.stdout);
    assert!(dry.stdout.contains("the whole interaction"), "{}", dry.stdout);
    assert!(!dry.stdout.contains("good.json"), "{}", dry.stdout);
    assert!(dry.stdout.contains("dry run: nothing changed"), "{}", dry.stdout);
    assert_eq!([read(&partly), read(&orphan), read(&good)], before, "a dry run changed a file");

    let applied = run(&["prune", &dir_arg, "--target-dir", &target_arg, "--write"]);
    assert_eq!(applied.code, Some(0), "{applied:?}");
    assert_eq!(read(&orphan), before[1], "a cassette without a usage record was touched");
    assert_eq!(read(&good), before[2], "a fully used cassette was touched");
    let pruned = storage::load(&partly).unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|| panic!("partly is gone"));
    assert_eq!(pruned.interactions.len(), 1);
    assert_eq!(
        pruned.interactions[0].request.body,
        traceforge::cassette::Body::Json { json: common::chat(CAPITAL, false).into() }
    );

    // The pruned cassette passes strict with only the call its test makes, and check is clean.
    strict_run(&partly, &target, &[(CAPITAL, false)])
        .await
        .unwrap_or_else(|e| panic!("pruned cassette fails strict: {e}"));
    let checked = run(&["check", &dir_arg, "--target-dir", &target_arg]);
    assert_eq!(checked.code, Some(0), "{checked:?}");
    assert!(
        checked.stdout.contains("0 problem(s)") && checked.stdout.contains("2 of 3 cassette(s) clean"),
        "{}",
        checked.stdout
    );
}

/// The usage record of `cassette` in `target`, as the last strict run left it.
fn usage_record(target: &Path, cassette: &Path) -> UsageRecord {
    let canonical = std::fs::canonicalize(cassette).unwrap_or_else(|e| panic!("{e}"));
    let path = usage::record_path(target, &canonical);
    serde_json::from_slice(&read(&path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test]
async fn the_ci_recipe_passes_beside_an_examples_cassette_and_prune_never_deletes_it() {
    let dir = scratch();
    let cassettes = dir.path().join("cassettes");
    let target = dir.path().join("target");
    let fake = FakeLlm::start();
    let (chat, example) = (cassette(&cassettes, "chat"), cassette(&cassettes.join("examples"), "quickstart"));
    record(&chat, &fake.openai_url(), &[(CAPITAL, false)]).await;
    record(&example, &fake.openai_url(), &[(COUNT, false)]).await;
    let example_bytes = read(&example);
    // `CI=true cargo test`: the tests run strictly; an example never does.
    strict_run(&chat, &target, &[(CAPITAL, false)]).await.unwrap_or_else(|e| panic!("{e}"));
    let (dir_arg, target_arg) = (path_arg(&cassettes), path_arg(&target));

    let checked = run(&["check", &dir_arg, "--target-dir", &target_arg]);
    assert_eq!(checked.code, Some(0), "an example's cassette fails the CI recipe: {checked:?}");
    assert!(
        checked.stdout.contains("WARN examples/quickstart.json") && checked.stdout.contains("warning no_usage:"),
        "{}",
        checked.stdout
    );
    let pruned = run(&["prune", &dir_arg, "--target-dir", &target_arg, "--write", "--delete-orphans"]);
    assert_eq!(pruned.code, Some(0), "{pruned:?}");
    assert!(pruned.stdout.contains("skip examples/quickstart.json"), "{}", pruned.stdout);
    assert_eq!(read(&example), example_bytes, "prune deleted or changed an example's cassette");
}

#[tokio::test]
async fn only_a_test_gone_from_its_rebuilt_binary_is_an_orphan_and_only_delete_orphans_deletes_it() {
    let dir = scratch();
    let cassettes = dir.path().join("cassettes");
    let target = dir.path().join("target");
    let fake = FakeLlm::start();
    let [kept, gone, skipped] = ["kept", "gone", "skipped"].map(|name| cassette(&cassettes, name));
    for path in [&kept, &gone, &skipped] {
        record(path, &fake.openai_url(), &[(CAPITAL, false)]).await;
        // Named after this test, on its thread: the record carries libtest's name for it.
        strict_run(path, &target, &[(CAPITAL, false)]).await.unwrap_or_else(|e| panic!("{e}"));
    }
    // A cassette whose (passing) strict run made none of its calls.
    let unplayed = cassette(&cassettes, "unplayed");
    record(&unplayed, &fake.openai_url(), &[(COUNT, false)]).await;
    assert!(strict_run(&unplayed, &target, &[]).await.is_err_and(|e| e.to_string().contains("were not used")));
    let this_binary = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
    let mut record = usage_record(&target, &kept);
    assert!(record.libtest_name, "a strict run on a test's thread records libtest's name: {record:?}");
    assert_eq!(record.executable.as_deref(), Some(this_binary.as_path()));

    // As if this binary had been rebuilt since the strict run of `gone`'s test, and that test
    // removed: its record names a test the current build does not list. `skipped` names a test
    // this binary does list, which simply did not run in strict with the current build.
    let older = record.executable_modified_ms.unwrap_or_default() - 60_000;
    for (path, test) in [
        (&gone, "chat::a_test_that_was_removed"),
        (&skipped, "show_prints_each_request_and_the_assembled_answer_plain_when_piped"),
    ] {
        record = usage_record(&target, path);
        record.test = Some(test.to_owned());
        record.executable_modified_ms = Some(older);
        record.write(&target).unwrap_or_else(|e| panic!("{e}"));
    }
    let (dir_arg, target_arg) = (path_arg(&cassettes), path_arg(&target));

    let checked = run(&["check", &dir_arg, "--target-dir", &target_arg]);
    assert_eq!(checked.code, Some(1), "{checked:?}");
    assert!(
        checked.stdout.contains("FAIL gone.json")
            && checked.stdout.contains("orphan: its test `chat::a_test_that_was_removed` is gone")
            && checked.stdout.contains("--delete-orphans"),
        "{}",
        checked.stdout
    );
    assert!(
        checked.stdout.contains("WARN skipped.json") && checked.stdout.contains("did not run in strict mode"),
        "{}",
        checked.stdout
    );
    assert!(
        checked.stdout.contains("FAIL unplayed.json")
            && checked.stdout.contains("`traceforge prune --write --delete-orphans` deletes the cassette"),
        "{}",
        checked.stdout
    );
    assert!(checked.stdout.contains("2 problem(s) in 2 cassette(s)"), "{}", checked.stdout);

    let without_flag = run(&["prune", &dir_arg, "--target-dir", &target_arg, "--write"]);
    assert_eq!(without_flag.code, Some(0), "{without_flag:?}");
    assert!(without_flag.stdout.contains("skip gone.json: left alone, an orphan"), "{}", without_flag.stdout);
    assert!(
        without_flag
            .stdout
            .contains("skip unplayed.json: left alone, the last strict run used none of its interactions"),
        "{}",
        without_flag.stdout
    );
    assert!(gone.exists() && unplayed.exists(), "--write alone deleted a cassette");

    let dry = run(&["prune", &dir_arg, "--target-dir", &target_arg, "--delete-orphans"]);
    assert!(dry.stdout.contains("would delete gone.json: orphan"), "{}", dry.stdout);
    assert!(dry.stdout.contains("prune --write --delete-orphans"), "{}", dry.stdout);
    let deleted = run(&["prune", &dir_arg, "--target-dir", &target_arg, "--write", "--delete-orphans"]);
    assert_eq!(deleted.code, Some(0), "{deleted:?}");
    assert!(!gone.exists(), "the proven orphan is still there");
    assert!(!unplayed.exists(), "the cassette its strict run did not use is still there");
    assert!(kept.exists() && skipped.exists(), "{}", deleted.stdout);
    assert_eq!(run(&["check", &dir_arg, "--target-dir", &target_arg]).code, Some(0));
}

#[tokio::test]
async fn a_strict_run_that_swallowed_a_miss_is_no_evidence_for_pruning() {
    let dir = scratch();
    let cassettes = dir.path().join("cassettes");
    let target = dir.path().join("target");
    let fake = FakeLlm::start();
    let path = cassette(&cassettes, "drifted");
    record(&path, &fake.openai_url(), &[(CAPITAL, false), (COUNT, false)]).await;
    let before = read(&path);
    // The prompt drifted: its request misses, and the code under test swallowed the 404, so
    // the test passed; the recording it should have matched went unused.
    let failed = strict_run(&path, &target, &[(CAPITAL, false), ("Please count to eleven.", false)]).await;
    assert!(failed.is_err_and(|e| e.to_string().contains("had no recording")));
    let record = usage_record(&target, &path);
    assert_eq!((record.test_passed, record.misses), (true, 1), "{record:?}");
    let (dir_arg, target_arg) = (path_arg(&cassettes), path_arg(&target));

    let checked = run(&["check", &dir_arg, "--target-dir", &target_arg, "--format", "json"]);
    let document = json_of(&checked.stdout);
    let found = &document["cassettes"][0];
    assert_eq!(found["problems"].as_array().map(Vec::len), Some(0), "{}", checked.stdout);
    assert_eq!(found["warnings"][0]["kind"], "misses", "{}", checked.stdout);
    assert!(found["warnings"][0]["message"].as_str().is_some_and(|m| m.contains("1 request(s)")));
    assert_eq!(checked.code, Some(0), "{checked:?}");

    let pruned = run(&["prune", &dir_arg, "--target-dir", &target_arg, "--write", "--delete-orphans"]);
    assert_eq!(pruned.code, Some(0), "{pruned:?}");
    assert!(
        pruned.stdout.contains("skip drifted.json") && pruned.stdout.contains("without a recording"),
        "{}",
        pruned.stdout
    );
    assert_eq!(read(&path), before, "the recording the drifted request needs was pruned");
}

#[tokio::test]
async fn a_test_module_named_target_is_searched_and_cache_directories_are_not() {
    let dir = scratch();
    let fake = FakeLlm::start();
    // `tests/target.rs` keeps its cassettes in `cassettes/target/`.
    record(&cassette(&dir.path().join("target"), "aims"), &fake.openai_url(), &[(CAPITAL, false)]).await;
    let build = dir.path().join("build");
    record(&cassette(&build, "not_a_cassette"), &fake.openai_url(), &[(CAPITAL, false)]).await;
    std::fs::write(build.join("CACHEDIR.TAG"), "Signature: 8a477f597d28d172789f06886806bc55\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let listed = run(&["list", &path_arg(dir.path())]);
    assert_eq!(listed.code, Some(0), "{listed:?}");
    assert!(listed.stdout.contains("target/aims.json"), "{}", listed.stdout);
    assert!(!listed.stdout.contains("not_a_cassette"), "{}", listed.stdout);
}

/// Runs `traceforge ARGS` with a terminal for stdout and stderr (through `script`), and returns
/// everything it drew there.
fn run_on_a_terminal(args: &[&str]) -> String {
    let mut command = String::from(env!("CARGO_BIN_EXE_traceforge"));
    for arg in args {
        command.push_str(&format!(" '{}'", arg.replace('\'', r"'\''")));
    }
    let mut script = std::process::Command::new("script");
    script.args(["-qec", &command, "/dev/null"]).stdin(std::process::Stdio::null());
    for name in ["TRACEFORGE_VCR_MODE", "CI", "NO_COLOR", "CARGO_TARGET_DIR", "TRACEFORGE_MATCH_STRATEGY"] {
        script.env_remove(name);
    }
    let output = script.output().unwrap_or_else(|e| panic!("cannot run script(1): {e}"));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn the_slow_loops_draw_progress_on_a_terminal() {
    let dir = scratch();
    let cassettes = dir.path().join("cassettes");
    let target = dir.path().join("target");
    let fake = FakeLlm::start();
    let [first, second] = ["first", "second"].map(|name| cassette(&cassettes, name));
    for path in [&first, &second] {
        record(path, &fake.openai_url(), &[(CAPITAL, false), (COUNT, false)]).await;
        let _ = strict_run(path, &target, &[(CAPITAL, false)]).await; // leaves COUNT unused
    }
    let (dir_arg, target_arg) = (path_arg(&cassettes), path_arg(&target));
    let checked = run_on_a_terminal(&["check", &dir_arg, "--target-dir", &target_arg]);
    assert!(checked.contains("[1/2] reading first.json"), "{checked:?}");
    assert!(checked.contains("[1/2] checking first.json"), "{checked:?}");
    let pruned = run_on_a_terminal(&["prune", &dir_arg, "--target-dir", &target_arg, "--write"]);
    assert!(pruned.contains("[1/2] applying first.json"), "{pruned:?}");
    assert!(pruned.contains("2 change(s) applied"), "{pruned:?}");
    // Piped, nothing is drawn.
    let piped = run(&["check", &dir_arg, "--target-dir", &target_arg]);
    assert!(!piped.stderr.contains("[1/2]"), "{piped:?}");
}
