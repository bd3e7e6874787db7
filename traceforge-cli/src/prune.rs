//! `traceforge prune`: removes the interactions (or the extra responses) that a passing,
//! miss-free strict run did not play, and, only with `--delete-orphans`, deletes cassettes
//! proven unused. A dry run unless `--write`; changes go through the library's locked, atomic
//! save, and only to the bytes the plan was made from; nothing happens without a usage record.

use traceforge::cassette::storage::{self, SaveOptions};
use traceforge::cassette::CassetteFile;
use traceforge::usage::{InteractionUsage, UsageRecord};

use crate::args::PruneArgs;
use crate::cassettes::{self, Loaded};
use crate::evidence::{self, Evidence, UsageIndex, HOW_TO_RECORD_USAGE};
use crate::failure::Failure;
use crate::style::{Progress, Style};

/// What to do with one cassette whose bytes hash to `sha256`.
struct Action {
    sha256: String,
    change: Change,
}

enum Change {
    /// Delete the file, for this reason.
    Delete(String),
    /// Remove what these interactions did not play (all of an interaction with `used == 0`).
    Trim(UsageRecord, Vec<InteractionUsage>),
}

pub(crate) fn run(args: &PruneArgs, style: Style) -> Result<(), Failure> {
    let loaded = cassettes::load_all(&args.dir, "reading")?;
    let directory = std::fs::canonicalize(&args.dir).map_err(|e| Failure::io(&args.dir, "read", &e))?;
    let target_dir = evidence::target_dir(args.usage.target_dir.as_deref(), &directory);
    let usage = UsageIndex::read(target_dir.clone(), &directory)?;
    if !usage.covers_directory {
        return Err(Failure::usage(format!(
            "nothing pruned: no usage record under {} concerns {}, so there is no telling what is unused. First {HOW_TO_RECORD_USAGE}; then run prune again",
            traceforge::usage::usage_dir(&target_dir).display(),
            args.dir.display()
        )));
    }
    let options = SaveOptions { allowed_secret_paths: crate::check::allowed_secret_paths(None, &args.dir)? };

    let mut plan = Vec::new();
    for cassette in &loaded {
        match plan_one(cassette, &usage, args.delete_orphans) {
            Ok(Some(action)) => plan.push((cassette, action)),
            Ok(None) => {}
            Err(why) => println!("{} {}: {why}", style.yellow("skip"), cassette.name),
        }
    }
    let verb = |now: &'static str, later: &'static str| if args.write { now } else { later };
    for (cassette, action) in &plan {
        match &action.change {
            Change::Delete(why) => println!("{} {}: {why}", style.red(verb("deleted", "would delete")), cassette.name),
            Change::Trim(_, unused) => {
                println!("{} {}:", style.yellow(verb("pruned", "would prune")), cassette.name);
                for interaction in unused {
                    let key = interaction.key.get(..12).unwrap_or(&interaction.key);
                    let what = if interaction.used == 0 {
                        "the whole interaction".to_owned()
                    } else {
                        format!("{} of its {} responses", interaction.recorded - interaction.used, interaction.recorded)
                    };
                    println!("  {} (key {key}): {what}", interaction.summary);
                }
            }
        }
    }

    if !args.write {
        println!();
        if plan.is_empty() {
            println!("nothing to prune");
        } else {
            let flags = if args.delete_orphans { " --delete-orphans" } else { "" };
            println!(
                "dry run: nothing changed. Run `traceforge prune --write{flags} {}` to apply these {} change(s)",
                args.dir.display(),
                plan.len()
            );
        }
        return Ok(());
    }

    let mut failures = Vec::new();
    let mut progress = Progress::new("applying", plan.len());
    for (index, (cassette, action)) in plan.iter().enumerate() {
        progress.step(index, &cassette.name);
        if let Err(error) = apply(cassette, action, &options, &usage) {
            failures.push(format!("{}: {error}", cassette.name));
        }
    }
    drop(progress);
    // Records of cassettes that are gone (removed tests, temp directories) only take up room.
    for record in &usage.dangling {
        let _ = std::fs::remove_file(record);
    }
    println!();
    println!("{} change(s) applied", plan.len() - failures.len());
    if !failures.is_empty() {
        return Err(Failure::problems(format!("some changes could not be applied:\n  {}", failures.join("\n  "))));
    }
    Ok(())
}

/// What to do with a cassette, `None` for nothing, or why it is left alone.
fn plan_one(cassette: &Loaded, usage: &UsageIndex, delete_orphans: bool) -> Result<Option<Action>, String> {
    let file = cassette
        .file
        .as_ref()
        .map_err(|error| format!("left alone, it does not load ({error}); fix or delete it by hand"))?;
    let sha256 = storage::digest(cassette.bytes.as_deref().unwrap_or_default());
    let delete = |why: String, unless: &str| {
        if delete_orphans {
            Ok(Some(Action { sha256: sha256.clone(), change: Change::Delete(why) }))
        } else {
            Err(format!("left alone, {unless}; `--delete-orphans` deletes it"))
        }
    };
    match usage.evidence(&cassette.canonical_path(), &sha256, file) {
        Evidence::NoRecords => Ok(None),
        Evidence::NoUsage(why) => {
            Err(format!("left alone, {why}; nothing proves that no test uses it: if none does, delete it by hand"))
        }
        Evidence::Orphan(why) => delete(format!("orphan: {why}"), &format!("an orphan: {why}")),
        Evidence::Stale(why) => Err(format!("left alone, {why}; run the suite in strict mode again to prune it")),
        Evidence::TestFailed(_) => Err("left alone, its test failed in the last strict run".to_owned()),
        Evidence::Missed(record) => Err(format!(
            "left alone, its last strict run had {} request(s) without a recording: its unused interactions may be what they should match",
            record.misses
        )),
        Evidence::Used(record) => {
            let unused: Vec<InteractionUsage> = record.unused().cloned().collect();
            if unused.is_empty() {
                Ok(None)
            } else if record.interactions.iter().all(|i| i.used == 0) {
                let why = "the last strict run used none of its interactions";
                delete(why.to_owned(), why)
            } else {
                Ok(Some(Action { sha256, change: Change::Trim(record.clone(), unused) }))
            }
        }
    }
}

/// Applies `action` to the cassette only if it still holds the bytes the plan was made from.
fn apply(
    cassette: &Loaded,
    action: &Action,
    options: &SaveOptions,
    usage: &UsageIndex,
) -> Result<(), traceforge::Error> {
    match &action.change {
        Change::Delete(_) => storage::remove_if_unchanged(&cassette.path, &action.sha256),
        Change::Trim(record, unused) => {
            let Some(written) =
                storage::update_if_unchanged(&cassette.path, &action.sha256, options, |file| trim(file, unused))?
            else {
                return Ok(()); // deleted meanwhile: nothing left to prune
            };
            // What remains is exactly what the run used: say so, so `check` stays quiet.
            if let Ok((_, text)) = storage::to_pretty_json(&written) {
                let mut pruned = record.clone();
                pruned.cassette_sha256 = storage::digest(text.as_bytes());
                pruned.interactions.retain(|i| i.used > 0);
                pruned.interactions.iter_mut().for_each(|i| i.recorded = i.used);
                pruned.write(&usage.target_dir)?;
            }
            Ok(())
        }
    }
}

/// Removes the responses the run did not play: they are the last ones of each interaction
/// (responses play in order). With the `sequence` strategy, their calls leave `order` too.
fn trim(mut file: CassetteFile, unused: &[InteractionUsage]) -> CassetteFile {
    for interaction in unused {
        let Some(position) = file.interactions.iter().position(|i| i.key == interaction.key) else { continue };
        let mut extra = file.interactions[position].responses.len().saturating_sub(interaction.used);
        if interaction.used == 0 {
            file.interactions.remove(position);
        } else {
            file.interactions[position].responses.truncate(interaction.used);
        }
        for index in (0..file.order.len()).rev() {
            if extra == 0 {
                break;
            }
            if file.order[index] == interaction.key {
                file.order.remove(index);
                extra -= 1;
            }
        }
    }
    file
}

#[cfg(test)]
mod tests {
    use super::*;
    use traceforge::cassette::{Body, Interaction, RecordedRequest, RecordedResponse};

    fn interaction(key: char, responses: usize) -> Interaction {
        Interaction {
            key: key.to_string().repeat(64),
            request: RecordedRequest::new("POST", "openai", "/chat/completions", Body::Empty),
            responses: (0..responses)
                .map(|_| RecordedResponse { status: 200, headers: Default::default(), body: Body::Empty })
                .collect(),
        }
    }

    fn usage(key: char, recorded: usize, used: usize) -> InteractionUsage {
        InteractionUsage { key: key.to_string().repeat(64), summary: String::new(), recorded, used }
    }

    #[test]
    fn trimming_drops_unplayed_responses_and_their_calls_in_order() {
        let a = "a".repeat(64);
        let b = "b".repeat(64);
        let file = CassetteFile {
            format_version: 1,
            interactions: vec![interaction('a', 3), interaction('b', 1)],
            order: vec![a.clone(), b.clone(), a.clone(), a.clone()],
            key_rules: Default::default(),
        };
        let trimmed = trim(file, &[usage('a', 3, 1), usage('b', 1, 0)]);
        assert_eq!(trimmed.interactions.len(), 1);
        assert_eq!(trimmed.interactions[0].responses.len(), 1);
        assert_eq!(trimmed.order, vec![a]);
    }
}
