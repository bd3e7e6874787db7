//! The default semantic threshold, checked against a labelled set of 80 pairs
//! (`tests/data/semantic_pairs.json`: paraphrases, unrelated texts, same-topic claims, and
//! near-misses that differ by a negation or a number).
//!
//! The embeddings come from the committed cache (`cassettes/all-MiniLM-L6-v2-int8.embeddings.json`),
//! so this runs in strict mode without the model. Print the table with
//! `cargo test --test semantic_calibration -- --nocapture`; docs/semantic.md quotes it.

use std::collections::BTreeMap;

use serde_json::Value;
use traceforge::semantic::{means, Semantic, DEFAULT_THRESHOLD};

struct Pair {
    kind: String,
    same: bool,
    a: String,
    b: String,
}

fn pairs() -> Vec<Pair> {
    let text = include_str!("data/semantic_pairs.json");
    let value: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("tests/data/semantic_pairs.json: {e}"));
    let pairs = value["pairs"].as_array().cloned().unwrap_or_default();
    pairs
        .iter()
        .map(|p| Pair {
            kind: p["kind"].as_str().unwrap_or_default().to_owned(),
            same: p["same"].as_bool().unwrap_or_else(|| panic!("pair without `same`: {p}")),
            a: p["a"].as_str().unwrap_or_default().to_owned(),
            b: p["b"].as_str().unwrap_or_default().to_owned(),
        })
        .collect()
}

fn semantic() -> Semantic {
    Semantic::for_crate(env!("CARGO_MANIFEST_DIR"))
        .fill_command("TRACEFORGE_VCR_MODE=auto cargo test --test semantic_calibration   # with the model provisioned")
}

/// The fraction of pairs a rule classifies as labelled.
fn accuracy(pairs: &[Pair], verdicts: &[bool]) -> f64 {
    let right = pairs.iter().zip(verdicts).filter(|(p, v)| p.same == **v).count();
    right as f64 / pairs.len() as f64
}

#[test]
fn the_default_threshold_is_calibrated_on_the_labelled_set() {
    let pairs = pairs();
    assert!(pairs.len() >= 60, "the labelled set must hold at least 60 pairs");
    let semantic = semantic();
    // One batch: at most one model call (in auto) and one cache write.
    let texts: Vec<&str> = pairs.iter().flat_map(|p| [p.a.as_str(), p.b.as_str()]).collect();
    semantic.embed(&texts).unwrap_or_else(|e| panic!("{e}"));
    let scores: Vec<f32> =
        pairs.iter().map(|p| semantic.similarity(&p.a, &p.b).unwrap_or_else(|e| panic!("{e}"))).collect();

    println!("{:<11} {:>5}  pair", "kind", "score");
    for (pair, score) in pairs.iter().zip(&scores) {
        println!("{:<11} {score:>5.3}  {:?} / {:?}", pair.kind, pair.a, pair.b);
    }

    // Cosine can only tell paraphrases from other claims: calibrate on those pairs, and show
    // separately how it does on the near-misses it cannot see (negations, numbers).
    let decidable: Vec<usize> = (0..pairs.len()).filter(|i| !is_near_miss(&pairs[*i])).collect();
    let accuracy_at = |threshold: f32, among: &[usize]| -> f64 {
        let right = among.iter().filter(|i| (scores[**i] >= threshold) == pairs[**i].same).count();
        right as f64 / among.len() as f64
    };
    let all: Vec<usize> = (0..pairs.len()).collect();
    let thresholds: Vec<f32> = (40..=95).map(|t| t as f32 / 100.0).collect();
    let best = thresholds.iter().map(|t| accuracy_at(*t, &decidable)).fold(0.0, f64::max);
    let best_range: Vec<f32> = thresholds.iter().copied().filter(|t| accuracy_at(*t, &decidable) == best).collect();
    let highest_other = decidable.iter().filter(|i| !pairs[**i].same).map(|i| scores[*i]).fold(f32::MIN, f32::max);
    let lowest_paraphrase = decidable.iter().filter(|i| pairs[**i].same).map(|i| scores[*i]).fold(f32::MAX, f32::min);
    println!(
        "\nparaphrases vs other claims ({} pairs): {:.1}% at the default {DEFAULT_THRESHOLD}; best {:.1}% at {:.2}..={:.2}",
        decidable.len(),
        accuracy_at(DEFAULT_THRESHOLD, &decidable) * 100.0,
        best * 100.0,
        best_range.first().copied().unwrap_or_default(),
        best_range.last().copied().unwrap_or_default()
    );
    println!("lowest paraphrase {lowest_paraphrase:.3}, highest non-paraphrase {highest_other:.3}");
    println!(
        "all {} pairs, cosine alone: {:.1}% at the default",
        pairs.len(),
        accuracy_at(DEFAULT_THRESHOLD, &all) * 100.0
    );

    // The same, with the guards for what cosine cannot see.
    let guarded: Vec<bool> = pairs
        .iter()
        .map(|p| {
            semantic
                .compare(&p.a, means(p.b.as_str()).same_numbers().same_negation())
                .unwrap_or_else(|e| panic!("{e}"))
                .passed()
        })
        .collect();
    let guarded_accuracy = accuracy(&pairs, &guarded);
    println!(
        "all {} pairs, with same_numbers and same_negation: {:.1}% at the default",
        pairs.len(),
        guarded_accuracy * 100.0
    );

    let mut by_kind: BTreeMap<&str, (usize, usize, usize)> = BTreeMap::new();
    for ((pair, score), guarded) in pairs.iter().zip(&scores).zip(&guarded) {
        let entry = by_kind.entry(pair.kind.as_str()).or_default();
        entry.0 += 1;
        entry.1 += usize::from((*score >= DEFAULT_THRESHOLD) == pair.same);
        entry.2 += usize::from(*guarded == pair.same);
    }
    println!("\n{:<11} {:>5} {:>13} {:>13}", "kind", "pairs", "cosine alone", "with guards");
    for (kind, (n, plain, with_guards)) in &by_kind {
        println!(
            "{kind:<11} {n:>5} {:>12.0}% {:>12.0}%",
            *plain as f64 * 100.0 / *n as f64,
            *with_guards as f64 * 100.0 / *n as f64
        );
    }

    // The default: no claim that is not a paraphrase passes, with a margin, and nearly every
    // paraphrase does.
    assert!(
        DEFAULT_THRESHOLD >= highest_other + 0.05,
        "DEFAULT_THRESHOLD {DEFAULT_THRESHOLD} leaves less than 0.05 above a non-paraphrase scoring {highest_other}"
    );
    assert!(accuracy_at(DEFAULT_THRESHOLD, &decidable) >= 0.98, "paraphrases vs other claims at the default");
    assert!(best - accuracy_at(DEFAULT_THRESHOLD, &decidable) <= 0.02, "the default is within one pair of the best");
    // The guards catch every near-miss that cosine lets through.
    for kind in ["negation", "number"] {
        let (n, _, with_guards) = by_kind.get(kind).copied().unwrap_or_default();
        assert!(n >= 10 && with_guards == n, "{kind}: {with_guards} of {n} caught with guards");
    }
    assert!(guarded_accuracy >= 0.9, "with guards: {guarded_accuracy}");
}

fn is_near_miss(pair: &Pair) -> bool {
    matches!(pair.kind.as_str(), "negation" | "number")
}
