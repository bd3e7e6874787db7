//! Streamed bodies: server-sent events and newline-delimited JSON, parsed into events for the
//! cassette and written back event by event, with the framing the client saw.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One server-sent event. `data` holds the payload when it is JSON (stored as structure, so
/// diffs stay readable); `text` holds it otherwise (e.g. OpenAI's `[DONE]`).
// Fields in sorted order: a cassette is written with its keys sorted, field by field as declared.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SseEvent {
    /// The payload, when it parses as JSON.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::cassette::json::serialize_sorted"
    )]
    pub data: Option<Value>,
    /// The `event:` field, e.g. Anthropic's `content_block_delta`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// The `id:` field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The `retry:` field, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<u64>,
    /// The payload, when it is not JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

impl SseEvent {
    /// The event's payload as the client receives it.
    pub fn payload(&self) -> String {
        match (&self.data, &self.text) {
            (Some(data), _) => data.to_string(),
            (None, Some(text)) => text.clone(),
            (None, None) => String::new(),
        }
    }
}

/// How a replayed stream is paced. The default sends events as fast as the client reads them.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[non_exhaustive]
pub enum Pacing {
    /// No delay: each event is sent (and flushed as its own chunk) as soon as the client reads.
    #[default]
    None,
    /// The recorded gaps between events, multiplied by `scale` (`1.0` is real time, `0.1` ten
    /// times faster). Needs offsets recorded with `RecorderBuilder::record_offsets(true)`;
    /// without them there is no delay.
    Recorded {
        /// The factor applied to each recorded gap.
        scale: f64,
    },
    /// The same delay before every event.
    Fixed(std::time::Duration),
}

impl Pacing {
    /// The delay before event `index`, given the recorded arrival offsets (if any).
    pub(crate) fn delay(&self, index: usize, offsets_ms: Option<&[u64]>) -> std::time::Duration {
        match *self {
            Pacing::None => std::time::Duration::ZERO,
            Pacing::Fixed(delay) => delay,
            Pacing::Recorded { scale } => {
                let at = |i: usize| offsets_ms.and_then(|o| o.get(i)).copied().unwrap_or(0);
                let gap = if index == 0 { at(0) } else { at(index).saturating_sub(at(index - 1)) };
                std::time::Duration::from_secs_f64(gap as f64 / 1000.0 * scale.max(0.0))
            }
        }
    }
}

/// Stream options of a recorder: whether to record arrival offsets, how to pace replays.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct StreamOptions {
    pub(crate) record_offsets: bool,
    pub(crate) pacing: Pacing,
}

/// Parses a complete or cut-off SSE body. Returns the events and whether bytes of an
/// unterminated final event were left over (a stream cut off mid-event).
pub fn parse_sse(body: &[u8]) -> (Vec<SseEvent>, bool) {
    let (events, _, leftover) = parse_sse_with_ends(body);
    (events, leftover)
}

/// As [`parse_sse`], with the byte offset in `body` at which each event was complete.
pub(crate) fn parse_sse_with_ends(body: &[u8]) -> (Vec<SseEvent>, Vec<usize>, bool) {
    let text = String::from_utf8_lossy(body);
    let mut ends = Vec::new();
    let mut position = 0;
    let mut events = Vec::new();
    let mut current = SseEvent::default();
    let mut data_lines: Vec<&str> = Vec::new();
    let mut has_fields = false;
    let mut lines = text.split('\n').peekable();
    let mut leftover = false;
    while let Some(raw) = lines.next() {
        position += raw.len() + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let is_last = lines.peek().is_none();
        if is_last {
            // Text after the final newline is an event cut off in the middle of a line.
            leftover = !line.is_empty() || has_fields;
            break;
        }
        if line.is_empty() {
            if has_fields {
                finish_event(&mut current, &mut data_lines, &mut events);
                ends.push(position.min(body.len()));
                has_fields = false;
            }
            continue;
        }
        if line.starts_with(':') {
            continue; // a comment, such as a keep-alive
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => current.event = Some(value.to_owned()),
            "data" => data_lines.push(value),
            "id" => current.id = Some(value.to_owned()),
            "retry" => current.retry = value.parse().ok(),
            _ => continue, // unknown fields are ignored, as the SSE spec says
        }
        has_fields = true;
    }
    (events, ends, leftover)
}

fn finish_event(current: &mut SseEvent, data_lines: &mut Vec<&str>, events: &mut Vec<SseEvent>) {
    let mut event = std::mem::take(current);
    if !data_lines.is_empty() {
        let payload = data_lines.join("\n");
        match serde_json::from_str::<Value>(&payload) {
            Ok(value) if payload.trim_start().starts_with(['{', '[']) => event.data = Some(value),
            _ => event.text = Some(payload),
        }
    }
    data_lines.clear();
    events.push(event);
}

/// One event in SSE framing, ending with the blank line that dispatches it.
pub fn encode_sse(event: &SseEvent) -> Bytes {
    let mut out = String::new();
    if let Some(name) = &event.event {
        out.push_str("event: ");
        out.push_str(name);
        out.push('\n');
    }
    if let Some(id) = &event.id {
        out.push_str("id: ");
        out.push_str(id);
        out.push('\n');
    }
    if let Some(retry) = event.retry {
        out.push_str(&format!("retry: {retry}\n"));
    }
    if event.data.is_some() || event.text.is_some() {
        for line in event.payload().split('\n') {
            out.push_str("data: ");
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push('\n');
    Bytes::from(out)
}

/// Parses newline-delimited JSON. Lines that are not JSON are kept as strings. Returns whether
/// an unterminated final line was left over.
pub fn parse_ndjson(body: &[u8]) -> (Vec<Value>, bool) {
    let text = String::from_utf8_lossy(body);
    let mut lines: Vec<&str> = text.split('\n').collect();
    let last = lines.pop().unwrap_or_default();
    let values = lines
        .into_iter()
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| Value::String(line.to_owned())))
        .collect();
    (values, !last.trim().is_empty())
}

/// The byte offset in `body` at which each line [`parse_ndjson`] keeps was complete.
pub(crate) fn ndjson_ends(body: &[u8]) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut start = 0;
    for (i, byte) in body.iter().enumerate() {
        if *byte == b'\n' {
            if !String::from_utf8_lossy(&body[start..i]).trim().is_empty() {
                ends.push(i + 1);
            }
            start = i + 1;
        }
    }
    ends
}

/// One NDJSON line with its newline. Lines go back as JSON: a line that was not JSON when
/// recorded (invalid NDJSON) was stored as a string and replays as a JSON string.
pub fn encode_ndjson(line: &Value) -> Bytes {
    let mut out = serde_json::to_vec(line).unwrap_or_default();
    out.push(b'\n');
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_openai_and_anthropic_framing() {
        let body = b"event: message_start\ndata: {\"type\":\"message_start\"}\n\n: ping\n\ndata: {\"a\":1}\r\n\r\ndata: [DONE]\n\n";
        let (events, leftover) = parse_sse(body);
        assert!(!leftover);
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].event.as_deref(), Some("message_start"));
        assert_eq!(events[1].data, Some(json!({"a": 1})));
        assert_eq!(events[2].text.as_deref(), Some("[DONE]"));
    }

    #[test]
    fn a_cut_off_event_is_reported_and_not_kept() {
        let (events, leftover) = parse_sse(b"data: {\"a\":1}\n\ndata: {\"b\"");
        assert_eq!(events.len(), 1);
        assert!(leftover);
    }

    #[test]
    fn encoding_round_trips() {
        let (events, _) = parse_sse(b"event: e\nid: 7\ndata: line1\ndata: line2\n\ndata: {\"x\":[1,2]}\n\n");
        let encoded: Vec<u8> = events.iter().flat_map(|e| encode_sse(e).to_vec()).collect();
        let (again, leftover) = parse_sse(&encoded);
        assert!(!leftover);
        assert_eq!(again, events);
        assert_eq!(again[0].text.as_deref(), Some("line1\nline2"));
    }

    #[test]
    fn event_ends_and_pacing() {
        let body = b"data: 1\n\n: ping\n\ndata: 2\n\ndata: 3";
        let (events, ends, leftover) = parse_sse_with_ends(body);
        assert_eq!((events.len(), ends, leftover), (2, vec![9, 26], true));
        assert_eq!(ndjson_ends(b"{}\n\n{}\n{"), vec![3, 7]);
        let offsets = [10, 30, 30];
        let recorded = Pacing::Recorded { scale: 0.5 };
        assert_eq!(recorded.delay(1, Some(&offsets)), std::time::Duration::from_millis(10));
        assert_eq!(recorded.delay(2, Some(&offsets)), std::time::Duration::ZERO);
        assert_eq!(recorded.delay(1, None), std::time::Duration::ZERO);
        assert_eq!(Pacing::None.delay(0, Some(&offsets)), std::time::Duration::ZERO);
    }

    #[test]
    fn ndjson_lines() {
        let (lines, leftover) = parse_ndjson(b"{\"a\":1}\n{\"done\":true}\n");
        assert_eq!(lines, vec![json!({"a": 1}), json!({"done": true})]);
        assert!(!leftover);
        assert!(parse_ndjson(b"{\"a\":1}\n{\"do").1);
    }
}
