//! Guards for what cosine similarity cannot see. "The total is 42 euros" and "The total is 24
//! euros", or "The test passed" and "The test did not pass", embed almost identically; a guard
//! checks such facts exactly, and composes with the semantic assertion.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::OnceLock;

use regex::Regex;

/// A check an answer must pass besides being close in meaning.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Guard {
    /// The answer holds exactly the numbers the expectation holds, as a multiset. Digits and
    /// number words up to twenty (and the tens) are read; `1,000`, `1000` and `1000.0` are equal.
    /// Signs are not read (`10-20` is a range more often than a negative number).
    SameNumbers,
    /// The answer is negated exactly when the expectation is: both or neither contain a negation
    /// (`not`, `no`, `never`, `none`, `nothing`, `nobody`, `neither`, `nor`, `cannot`, `without`,
    /// or a word ending in `n't`). A heuristic: it does not parse the sentence.
    SameNegation,
    /// The answer contains this phrase (case and runs of whitespace ignored).
    Requires(String),
    /// The answer does not contain this phrase (case and runs of whitespace ignored).
    Forbids(String),
}

impl Guard {
    /// `Ok` when `actual` passes; otherwise what is wrong, in one line.
    pub fn check(&self, actual: &str, expected: &str) -> Result<(), String> {
        match self {
            Guard::SameNumbers => {
                let (want, got) = (numbers(expected), numbers(actual));
                if want == got {
                    Ok(())
                } else {
                    Err(format!("numbers differ: expected {}, the answer has {}", show(&want), show(&got)))
                }
            }
            Guard::SameNegation => {
                let (want, got) = (negated(expected), negated(actual));
                if want == got {
                    Ok(())
                } else if want {
                    Err("negation differs: the expectation is negated, the answer is not".to_owned())
                } else {
                    Err("negation differs: the answer is negated, the expectation is not".to_owned())
                }
            }
            Guard::Requires(phrase) => {
                if normalise(actual).contains(&normalise(phrase)) {
                    Ok(())
                } else {
                    Err(format!("required phrase {phrase:?} is missing"))
                }
            }
            Guard::Forbids(phrase) => {
                if normalise(actual).contains(&normalise(phrase)) {
                    Err(format!("forbidden phrase {phrase:?} is present"))
                } else {
                    Ok(())
                }
            }
        }
    }
}

fn normalise(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

const NUMBER_WORDS: [(&str, u32); 28] = [
    ("zero", 0),
    ("one", 1),
    ("two", 2),
    ("three", 3),
    ("four", 4),
    ("five", 5),
    ("six", 6),
    ("seven", 7),
    ("eight", 8),
    ("nine", 9),
    ("ten", 10),
    ("eleven", 11),
    ("twelve", 12),
    ("thirteen", 13),
    ("fourteen", 14),
    ("fifteen", 15),
    ("sixteen", 16),
    ("seventeen", 17),
    ("eighteen", 18),
    ("nineteen", 19),
    ("twenty", 20),
    ("thirty", 30),
    ("forty", 40),
    ("fifty", 50),
    ("sixty", 60),
    ("seventy", 70),
    ("eighty", 80),
    ("ninety", 90),
];

fn number_pattern() -> Option<&'static Regex> {
    static PATTERN: OnceLock<Option<Regex>> = OnceLock::new();
    PATTERN.get_or_init(|| Regex::new(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|[A-Za-z]+").ok()).as_ref()
}

/// The numbers in a text, normalised, with how often each occurs.
fn numbers(text: &str) -> BTreeMap<String, usize> {
    let mut found = BTreeMap::new();
    let Some(pattern) = number_pattern() else { return found };
    for token in pattern.find_iter(text).map(|m| m.as_str()) {
        let value = if token.chars().any(|c| c.is_ascii_digit()) {
            normalise_number(token)
        } else {
            let lower = token.to_ascii_lowercase();
            match NUMBER_WORDS.iter().find(|(word, _)| *word == lower) {
                Some((_, n)) => n.to_string(),
                None => continue,
            }
        };
        *found.entry(value).or_insert(0) += 1;
    }
    found
}

fn normalise_number(token: &str) -> String {
    let plain = token.replace(',', "");
    match plain.split_once('.') {
        Some((whole, fraction)) => {
            let fraction = fraction.trim_end_matches('0');
            if fraction.is_empty() {
                whole.to_owned()
            } else {
                format!("{whole}.{fraction}")
            }
        }
        None => plain,
    }
}

fn show(numbers: &BTreeMap<String, usize>) -> String {
    if numbers.is_empty() {
        return "none".to_owned();
    }
    let mut out = String::from("{");
    for (i, (n, count)) in numbers.iter().enumerate() {
        let _ = write!(out, "{}{n}", if i == 0 { "" } else { ", " });
        if *count > 1 {
            let _ = write!(out, " ×{count}");
        }
    }
    out.push('}');
    out
}

const NEGATIONS: [&str; 10] =
    ["not", "no", "never", "none", "nothing", "nobody", "neither", "nor", "cannot", "without"];

fn negated(text: &str) -> bool {
    text.split(|c: char| !(c.is_alphanumeric() || c == '\'' || c == '’')).any(|word| {
        let word = word.to_lowercase().replace('’', "'");
        NEGATIONS.contains(&word.as_str()) || word.ends_with("n't")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_compared_exactly_whatever_their_spelling() {
        let guard = Guard::SameNumbers;
        assert!(guard.check("It costs 1,000 euros for 3 people", "Three people pay 1000.00 euros").is_ok());
        let failure = guard.check("The total is 24 euros", "The total is 42 euros").err().unwrap_or_default();
        assert!(failure.contains("expected {42}") && failure.contains("has {24}"), "{failure}");
        assert!(guard.check("two and 2", "2 and 2").is_ok(), "a repeated number counts twice");
        assert!(guard.check("2", "2 and 2").is_err(), "a missing repeat is a difference");
        assert!(guard.check("It rose 3.5%", "It rose 3.50%").is_ok());
        assert!(guard.check("It rose 3.5%", "It rose 35%").is_err());
        assert!(guard.check("No numbers here.", "None here either.").is_ok());
        assert!(guard.check("In 2024", "In 2025").is_err());
    }

    #[test]
    fn negation_presence_must_agree() {
        let guard = Guard::SameNegation;
        assert!(guard.check("The build passed.", "The build succeeded.").is_ok());
        let failure = guard.check("The build did not pass.", "The build passed.").err().unwrap_or_default();
        assert!(failure.contains("the answer is negated"), "{failure}");
        assert!(guard.check("It isn’t raining.", "It is not raining.").is_ok(), "typographic apostrophes count");
        assert!(guard.check("You can't do that.", "That is never allowed.").is_ok());
        assert!(guard.check("Nothing changed.", "Everything changed.").is_err());
        assert!(guard.check("Knot theory", "Knot theory").is_ok(), "whole words only");
        assert!(guard.check("I know", "I do know").is_ok(), "`know` is not `no`");
    }

    #[test]
    fn phrases_ignore_case_and_whitespace() {
        assert!(Guard::Requires("Paris".into()).check("the capital is  PARIS.", "").is_ok());
        assert!(Guard::Requires("new york".into()).check("New\nYork it is", "").is_ok());
        let failure = Guard::Requires("Paris".into()).check("Lyon", "").err().unwrap_or_default();
        assert!(failure.contains("\"Paris\" is missing"), "{failure}");
        assert!(Guard::Forbids("as an ai".into()).check("As an  AI, I cannot", "").is_err());
        assert!(Guard::Forbids("as an ai".into()).check("Here is the answer", "").is_ok());
    }
}
