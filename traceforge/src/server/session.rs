//! The state of one recorder run: the cassette as loaded, which recorded responses have been
//! played, what was recorded, and what went wrong. Also how a run's result is merged with what
//! is on disk when it is saved.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::cassette::storage::by_key;
use crate::cassette::{CassetteFile, Interaction, RecordedRequest, RecordedResponse, FORMAT_VERSION};
use crate::matching::{Exhausted, Matcher, Strategy};
use crate::miss::{self, Nearest};
use crate::mode::Mode;
use crate::provider::Answer;
use crate::verify::{request_excerpt, Miss, MissKind, Unused, UpstreamFailure};

/// The answer of a cassette lookup.
pub(crate) enum Lookup<'a> {
    /// The response to replay.
    Hit(&'a RecordedResponse),
    /// Nothing (more) to replay; `nearest` is set when the miss already knows its closest
    /// recording (a request out of sequence).
    Miss(MissKind, Option<Nearest>),
}

#[derive(Default)]
pub(crate) struct Session {
    matcher: Matcher,
    /// The cassette as loaded at start (`None` when the file did not exist).
    baseline: Option<CassetteFile>,
    /// Key to position in `baseline.interactions`.
    index: HashMap<String, usize>,
    /// The keys as stored on disk when the run started, before re-keying: what `record` mode
    /// replaces (anything else on disk at save time was added by another process).
    loaded_keys: HashSet<String>,
    /// Per baseline interaction, how many of its responses were played.
    played: Vec<usize>,
    /// Per key, how often this run made the request; and in all.
    calls: HashMap<String, usize>,
    total_calls: usize,
    /// Responses recorded in this run, in completion order.
    pub(crate) recorded: Vec<(String, RecordedRequest, RecordedResponse)>,
    pub(crate) hits: usize,
    pub(crate) misses: Vec<Miss>,
    pub(crate) passed_through: usize,
    /// Error responses that the `RecordErrors` policy kept out of the cassette.
    pub(crate) not_recorded: Vec<String>,
    pub(crate) upstream_failures: Vec<UpstreamFailure>,
    /// Every response this run replayed or recorded, in order, for [`Session::answers`].
    seen: Vec<Seen>,
}

/// Where a response the test received is kept: answers are read from it only when asked for,
/// so replay pays nothing for them.
#[derive(Clone, Copy)]
enum Seen {
    /// `baseline.interactions[.0].responses[.1]`.
    Baseline(usize, usize),
    /// `recorded[.0]`.
    Recorded(usize),
}

impl Session {
    /// Starts a run on `baseline`. Its keys are trusted when they were computed under the same
    /// rules (`key_rules`); otherwise they are recomputed, and interactions that now share a
    /// key are joined, so lookups and the saved file always agree.
    pub(crate) fn new(baseline: Option<CassetteFile>, matcher: Matcher) -> Session {
        let mut loaded_keys = HashSet::new();
        let baseline = baseline.map(|file| {
            loaded_keys = file.interactions.iter().map(|i| i.key.clone()).collect();
            if file.key_rules == matcher.key_rules() {
                file
            } else {
                rekeyed(file, &matcher)
            }
        });
        let interactions = baseline.as_ref().map_or(&[][..], |b| &b.interactions[..]);
        let index = interactions.iter().enumerate().map(|(i, it)| (it.key.clone(), i)).collect();
        let played = vec![0; interactions.len()];
        Session { matcher, baseline, index, loaded_keys, played, ..Session::default() }
    }

    pub(crate) fn has_cassette(&self) -> bool {
        self.baseline.is_some()
    }

    fn interactions(&self) -> &[Interaction] {
        self.baseline.as_ref().map_or(&[][..], |b| &b.interactions[..])
    }

    /// Counts a call and finds the response to replay under `mode`'s rules.
    pub(crate) fn lookup(&mut self, key: &str, request: &RecordedRequest, mode: Mode) -> Lookup<'_> {
        let calls = match self.calls.get_mut(key) {
            Some(calls) => {
                *calls += 1;
                *calls
            }
            None => {
                self.calls.insert(key.to_owned(), 1);
                1
            }
        };
        self.total_calls += 1;
        if self.baseline.is_none() {
            return Lookup::Miss(MissKind::NoCassette, None);
        }
        let sequential =
            self.matcher.strategy == Strategy::Sequence && self.baseline.as_ref().is_some_and(|b| !b.order.is_empty());
        let policy = self.exhausted_policy(mode);
        let position = if sequential {
            match self.sequence_position(request) {
                Ok(position) => position,
                Err(Lookup::Miss(MissKind::BeyondSequence { .. }, _)) if policy == Exhausted::RepeatLast => {
                    // Past the recorded calls: the last call's response again.
                    let last_key = self.baseline.as_ref().and_then(|b| b.order.last());
                    match last_key.and_then(|k| self.index.get(k)).copied() {
                        Some(position) => return self.repeat_last(position, calls),
                        None => return Lookup::Miss(MissKind::NotRecorded, None),
                    }
                }
                Err(miss) => return miss,
            }
        } else {
            match self.index.get(key) {
                Some(&position) => position,
                None => return Lookup::Miss(MissKind::NotRecorded, None),
            }
        };
        let played = self.played[position];
        let recorded = self.interactions()[position].responses.len();
        if played < recorded {
            self.played[position] += 1;
            self.hits += 1;
            self.seen.push(Seen::Baseline(position, played));
            let interactions = self.baseline.as_ref().map_or(&[][..], |b| &b.interactions[..]);
            return Lookup::Hit(&interactions[position].responses[played]);
        }
        if policy == Exhausted::RepeatLast {
            return self.repeat_last(position, calls);
        }
        Lookup::Miss(MissKind::Exhausted { calls, recorded }, None)
    }

    /// What a call beyond the recording gets in `mode`: never anything but a miss in strict.
    pub(crate) fn exhausted_policy(&self, mode: Mode) -> Exhausted {
        match (mode, self.matcher.exhausted) {
            (Mode::Strict, _) => Exhausted::Error,
            (_, Some(policy)) => policy,
            (Mode::Auto, None) => Exhausted::Forward,
            (_, None) => Exhausted::Error,
        }
    }

    fn repeat_last(&mut self, position: usize, calls: usize) -> Lookup<'_> {
        let interactions = self.baseline.as_ref().map_or(&[][..], |b| &b.interactions[..]);
        let responses = &interactions[position].responses;
        match responses.last() {
            Some(last) => {
                self.hits += 1;
                self.seen.push(Seen::Baseline(position, responses.len() - 1));
                Lookup::Hit(last)
            }
            None => Lookup::Miss(MissKind::Exhausted { calls, recorded: 0 }, None),
        }
    }

    /// In `sequence`: the interaction recorded at this call's position, if the request is close
    /// enough to it.
    fn sequence_position(&mut self, request: &RecordedRequest) -> Result<usize, Lookup<'static>> {
        let call = self.total_calls - 1;
        let order_len = self.baseline.as_ref().map_or(0, |b| b.order.len());
        let Some(expected) = self.baseline.as_ref().and_then(|b| b.order.get(call)).cloned() else {
            return Err(Lookup::Miss(MissKind::BeyondSequence { call: call + 1, recorded: order_len }, None));
        };
        let Some(&position) = self.index.get(&expected) else {
            return Err(Lookup::Miss(MissKind::NotRecorded, None));
        };
        let recorded = &self.interactions()[position];
        let differences = miss::differences(&self.matcher.view(&recorded.request), &self.matcher.view(request));
        // Close enough: the same endpoint and model, and few differing fields (volatile ids).
        let decisive = differences
            .iter()
            .any(|d| miss::ENDPOINT_FIELDS.contains(&d.path.as_str()) || d.path == "$.body.json.model");
        if decisive || differences.len() > self.matcher.sequence_tolerance {
            let nearest = Nearest {
                index: position,
                key: recorded.key.clone(),
                summary: recorded.request.summary(),
                differences,
            };
            return Err(Lookup::Miss(MissKind::OutOfSequence { call: call + 1 }, Some(nearest)));
        }
        Ok(position)
    }

    /// Keeps a recorded response.
    pub(crate) fn record(&mut self, key: String, request: RecordedRequest, response: RecordedResponse) {
        self.seen.push(Seen::Recorded(self.recorded.len()));
        self.recorded.push((key, request, response));
    }

    /// The answers of the responses replayed or recorded so far, in the order they were sent.
    pub(crate) fn answers(&self) -> Vec<Answer> {
        self.seen
            .iter()
            .filter_map(|seen| {
                let response = match *seen {
                    Seen::Baseline(interaction, response) => {
                        self.interactions().get(interaction)?.responses.get(response)?
                    }
                    Seen::Recorded(index) => &self.recorded.get(index)?.2,
                };
                Some(Answer::from_body(&response.body).unwrap_or_default())
            })
            .collect()
    }

    pub(crate) fn add_miss(&mut self, key: String, request: RecordedRequest, kind: MissKind, nearest: Option<Nearest>) {
        self.misses.push(Miss { request, key, kind, nearest });
    }

    /// Fills in each miss's nearest recorded request; done once, at the end, off the hot path.
    pub(crate) fn explain_misses(&mut self) {
        let mut misses = std::mem::take(&mut self.misses);
        for miss in &mut misses {
            if miss.kind == MissKind::NotRecorded && miss.nearest.is_none() {
                miss.nearest = miss::nearest(&miss.request, self.interactions(), &self.matcher);
            }
        }
        self.misses = misses;
    }

    /// Recorded interactions with responses this run did not play.
    pub(crate) fn unused(&self) -> Vec<Unused> {
        self.interactions()
            .iter()
            .zip(&self.played)
            .filter(|(interaction, played)| **played < interaction.responses.len())
            .map(|(interaction, played)| Unused {
                summary: interaction.request.summary(),
                key: interaction.key.clone(),
                excerpt: request_excerpt(&interaction.request),
                recorded: interaction.responses.len(),
                used: *played,
            })
            .collect()
    }

    /// How much of each recorded interaction this run played, in file order.
    pub(crate) fn usage(&self) -> Vec<crate::usage::InteractionUsage> {
        self.interactions()
            .iter()
            .zip(&self.played)
            .map(|(interaction, played)| crate::usage::InteractionUsage {
                key: interaction.key.clone(),
                summary: interaction.request.summary(),
                recorded: interaction.responses.len(),
                used: *played,
            })
            .collect()
    }

    /// This run's recordings, grouped by key, in call order.
    fn recorded_by_key(&self) -> BTreeMap<String, Interaction> {
        let mut grouped: BTreeMap<String, Interaction> = BTreeMap::new();
        for (key, request, response) in &self.recorded {
            grouped
                .entry(key.clone())
                .or_insert_with(|| Interaction { key: key.clone(), request: request.clone(), responses: Vec::new() })
                .responses
                .push(response.clone());
        }
        grouped
    }

    /// Combines this run with `on_disk` (the file as it is now, under the lock).
    ///
    /// * `record`: the cassette becomes what this run recorded, plus interactions that another
    ///   process added after this run loaded the file.
    /// * `auto`: everything on disk stays; this run's new responses are appended, skipping any
    ///   that another process already appended at the same position.
    ///
    /// Keys are recomputed under the current matching rules, and in `sequence` the call order
    /// is kept in `order`.
    pub(crate) fn merge(&self, mode: Mode, on_disk: Option<CassetteFile>) -> CassetteFile {
        let ours = self.recorded_by_key();
        let mut on_disk = on_disk.unwrap_or_default();
        if mode == Mode::Record {
            // Keep only what another process added after this run loaded the file.
            on_disk.interactions.retain(|interaction| !self.loaded_keys.contains(&interaction.key));
            on_disk.order.clear();
        }
        let had_content_order = !on_disk.interactions.is_empty() && on_disk.order.is_empty();
        let on_disk =
            if on_disk.key_rules == self.matcher.key_rules() { on_disk } else { rekeyed(on_disk, &self.matcher) };
        let mut result = by_key(on_disk.interactions);
        let baseline_len = |key: &str| self.index.get(key).map_or(0, |&i| self.interactions()[i].responses.len());
        for (key, interaction) in ours {
            if mode == Mode::Record {
                result.insert(key, interaction);
                continue;
            }
            let first_ordinal = baseline_len(&key);
            match result.get_mut(&key) {
                Some(existing) => {
                    let present = existing.responses.len();
                    let new =
                        interaction.responses.into_iter().enumerate().filter(|(i, _)| first_ordinal + i >= present);
                    existing.responses.extend(new.map(|(_, r)| r));
                }
                None => {
                    result.insert(key, interaction);
                }
            }
        }
        // In `sequence`, `order` lists each call's key in the order the calls completed. A
        // cassette recorded by content has no order to extend; it keeps none.
        let order = match self.matcher.strategy {
            Strategy::Sequence if !had_content_order => {
                let mut order = on_disk.order;
                order.extend(self.recorded.iter().map(|(key, ..)| key.clone()));
                order
            }
            _ => Vec::new(),
        };
        CassetteFile {
            format_version: FORMAT_VERSION,
            interactions: result.into_values().collect(),
            order,
            key_rules: self.matcher.key_rules(),
        }
    }
}

/// A cassette under the current rules' keys: interactions that now share a key are joined
/// (responses kept in order) and `order` follows the renames.
fn rekeyed(mut file: CassetteFile, matcher: &Matcher) -> CassetteFile {
    let mut renamed: HashMap<String, String> = HashMap::new();
    let mut joined: BTreeMap<String, Interaction> = BTreeMap::new();
    for mut interaction in std::mem::take(&mut file.interactions) {
        let key = matcher.key(&interaction.request);
        if key != interaction.key {
            renamed.insert(std::mem::replace(&mut interaction.key, key.clone()), key.clone());
        }
        match joined.get_mut(&key) {
            Some(existing) => existing.responses.append(&mut interaction.responses),
            None => {
                joined.insert(key, interaction);
            }
        }
    }
    for key in &mut file.order {
        if let Some(new) = renamed.get(key) {
            *key = new.clone();
        }
    }
    file.interactions = joined.into_values().collect();
    file.key_rules = matcher.key_rules();
    file
}
