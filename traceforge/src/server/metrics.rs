//! What `GET /_traceforge/metrics` reports, in the Prometheus text exposition format: the
//! session's counters (hits, misses, recordings) and a histogram of upstream latency.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds: from a loopback fake to a model thinking.
const BUCKETS: [f64; 14] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];

/// The content type of the text exposition format.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Default)]
struct Histogram {
    /// Per bucket, the observations at or below its bound (not cumulative; summed on render).
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum_seconds: f64,
}

/// Upstream latency per upstream name: the time from sending a request to the upstream until
/// its response headers arrive (for a stream, the time to its first byte).
#[derive(Default)]
pub(crate) struct Metrics {
    latency: Mutex<BTreeMap<String, Histogram>>,
}

/// The session counters at the time of a scrape.
pub(crate) struct Counts {
    pub(crate) hits: usize,
    pub(crate) misses: usize,
    pub(crate) recorded: usize,
    pub(crate) passed_through: usize,
    pub(crate) upstream_failures: usize,
}

impl Metrics {
    pub(crate) fn observe_upstream(&self, upstream: &str, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let mut latency = self.latency.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let histogram = latency.entry(upstream.to_owned()).or_default();
        if let Some(bucket) = BUCKETS.iter().position(|bound| seconds <= *bound) {
            histogram.buckets[bucket] += 1;
        }
        histogram.count += 1;
        histogram.sum_seconds += seconds;
    }

    /// The exposition text for `counts`, and the latency seen so far.
    pub(crate) fn render(&self, mode: &str, counts: &Counts) -> String {
        let mut out = String::new();
        let counters = [
            ("traceforge_hits_total", "Requests answered from the cassette.", counts.hits),
            ("traceforge_misses_total", "Requests that found no recording and were refused.", counts.misses),
            ("traceforge_recorded_total", "Responses recorded from an upstream.", counts.recorded),
            (
                "traceforge_passed_through_total",
                "Requests forwarded without recording (mode off, or an error status).",
                counts.passed_through,
            ),
            (
                "traceforge_upstream_failures_total",
                "Upstream calls that failed (unreachable, timed out, broken off).",
                counts.upstream_failures,
            ),
        ];
        let _ = writeln!(out, "# HELP traceforge_info The recorder's mode.");
        let _ = writeln!(out, "# TYPE traceforge_info gauge");
        let _ = writeln!(out, "traceforge_info{{mode=\"{mode}\"}} 1");
        for (name, help, value) in counters {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "{name} {value}");
        }
        let name = "traceforge_upstream_latency_seconds";
        let _ = writeln!(out, "# HELP {name} Time from forwarding a request to the upstream's response headers.");
        let _ = writeln!(out, "# TYPE {name} histogram");
        let latency = self.latency.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for (upstream, histogram) in latency.iter() {
            let label = escape_label(upstream);
            let mut cumulative = 0;
            for (bound, count) in BUCKETS.iter().zip(histogram.buckets) {
                cumulative += count;
                let _ = writeln!(out, "{name}_bucket{{upstream=\"{label}\",le=\"{bound}\"}} {cumulative}");
            }
            let _ = writeln!(out, "{name}_bucket{{upstream=\"{label}\",le=\"+Inf\"}} {}", histogram.count);
            let _ = writeln!(out, "{name}_sum{{upstream=\"{label}\"}} {}", histogram.sum_seconds);
            let _ = writeln!(out, "{name}_count{{upstream=\"{label}\"}} {}", histogram.count);
        }
        out
    }
}

/// A label value as the exposition format wants it: backslash, quote and newline escaped.
fn escape_label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_counters_are_rendered() {
        let metrics = Metrics::default();
        metrics.observe_upstream("openai", Duration::from_millis(3));
        metrics.observe_upstream("openai", Duration::from_millis(300));
        metrics.observe_upstream("openai", Duration::from_secs(500));
        let counts = Counts { hits: 4, misses: 1, recorded: 3, passed_through: 0, upstream_failures: 0 };
        let text = metrics.render("record", &counts);
        assert!(text.contains("traceforge_hits_total 4\n"), "{text}");
        assert!(text.contains("traceforge_info{mode=\"record\"} 1\n"), "{text}");
        assert!(text.contains("traceforge_upstream_latency_seconds_bucket{upstream=\"openai\",le=\"0.005\"} 1\n"));
        assert!(text.contains("traceforge_upstream_latency_seconds_bucket{upstream=\"openai\",le=\"0.5\"} 2\n"));
        assert!(text.contains("traceforge_upstream_latency_seconds_bucket{upstream=\"openai\",le=\"120\"} 2\n"));
        assert!(text.contains("traceforge_upstream_latency_seconds_bucket{upstream=\"openai\",le=\"+Inf\"} 3\n"));
        assert!(text.contains("traceforge_upstream_latency_seconds_count{upstream=\"openai\"} 3\n"));
    }
}
