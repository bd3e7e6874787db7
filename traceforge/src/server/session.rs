//! The state of one recorder run: the cassette as loaded, which recorded responses have been
//! played, what was recorded, and what went wrong. Also how a run's result is merged with what
//! is on disk when it is saved.

use std::collections::{BTreeMap, HashMap};

use crate::cassette::storage::by_key;
use crate::cassette::{CassetteFile, Interaction, RecordedRequest, RecordedResponse, FORMAT_VERSION};
use crate::miss;
use crate::mode::Mode;
use crate::provider::Answer;
use crate::verify::{Miss, MissKind, Unused, UpstreamFailure};

/// The answer of a cassette lookup.
pub(crate) enum Lookup<'a> {
    /// The next recorded response for this request.
    Hit(&'a RecordedResponse),
    /// Nothing (more) to replay.
    Miss(MissKind),
}

#[derive(Default)]
pub(crate) struct Session {
    /// The cassette as loaded at start (`None` when the file did not exist).
    baseline: Option<CassetteFile>,
    /// Key to position in `baseline.interactions`.
    index: HashMap<String, usize>,
    /// Per baseline interaction, how many of its responses were played.
    played: Vec<usize>,
    /// Per key, how often this run made the request.
    calls: HashMap<String, usize>,
    /// Responses recorded in this run, in completion order.
    pub(crate) recorded: Vec<(String, RecordedRequest, RecordedResponse)>,
    pub(crate) hits: usize,
    pub(crate) misses: Vec<Miss>,
    pub(crate) passed_through: usize,
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
    pub(crate) fn new(baseline: Option<CassetteFile>) -> Session {
        let interactions = baseline.as_ref().map_or(&[][..], |b| &b.interactions[..]);
        let index = interactions.iter().enumerate().map(|(i, it)| (it.key.clone(), i)).collect();
        let played = vec![0; interactions.len()];
        Session { baseline, index, played, ..Session::default() }
    }

    pub(crate) fn has_cassette(&self) -> bool {
        self.baseline.is_some()
    }

    fn interactions(&self) -> &[Interaction] {
        self.baseline.as_ref().map_or(&[][..], |b| &b.interactions[..])
    }

    /// Counts a call of `key` and returns the response to replay, if any is left.
    pub(crate) fn lookup(&mut self, key: &str) -> Lookup<'_> {
        let calls = {
            let calls = self.calls.entry(key.to_owned()).or_default();
            *calls += 1;
            *calls
        };
        if self.baseline.is_none() {
            return Lookup::Miss(MissKind::NoCassette);
        }
        let Some(&position) = self.index.get(key) else {
            return Lookup::Miss(MissKind::NotRecorded);
        };
        let played = self.played[position];
        let interactions = self.baseline.as_ref().map_or(&[][..], |b| &b.interactions[..]);
        match interactions[position].responses.get(played) {
            Some(response) => {
                self.played[position] += 1;
                self.hits += 1;
                self.seen.push(Seen::Baseline(position, played));
                Lookup::Hit(response)
            }
            None => Lookup::Miss(MissKind::Exhausted { calls, recorded: interactions[position].responses.len() }),
        }
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

    pub(crate) fn add_miss(&mut self, key: String, request: RecordedRequest, kind: MissKind) {
        self.misses.push(Miss { request, key, kind, nearest: None });
    }

    /// Fills in each miss's nearest recorded request; done once, at the end, off the hot path.
    pub(crate) fn explain_misses(&mut self) {
        let mut misses = std::mem::take(&mut self.misses);
        for miss in &mut misses {
            if miss.kind == MissKind::NotRecorded {
                miss.nearest = miss::nearest(&miss.request, self.interactions());
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
    pub(crate) fn merge(&self, mode: Mode, on_disk: Option<CassetteFile>) -> CassetteFile {
        let ours = self.recorded_by_key();
        let mut result = by_key(on_disk.map(|f| f.interactions).unwrap_or_default());
        let baseline_len = |key: &str| self.index.get(key).map_or(0, |&i| self.interactions()[i].responses.len());
        match mode {
            Mode::Record => {
                result.retain(|key, _| !self.index.contains_key(key) && !ours.contains_key(key));
                result.extend(ours);
            }
            _ => {
                for (key, interaction) in ours {
                    let first_ordinal = baseline_len(&key);
                    match result.get_mut(&key) {
                        Some(existing) => {
                            let present = existing.responses.len();
                            let new = interaction
                                .responses
                                .into_iter()
                                .enumerate()
                                .filter(|(i, _)| first_ordinal + i >= present);
                            existing.responses.extend(new.map(|(_, r)| r));
                        }
                        None => {
                            result.insert(key, interaction);
                        }
                    }
                }
            }
        }
        CassetteFile { format_version: FORMAT_VERSION, interactions: result.into_values().collect() }
    }
}
