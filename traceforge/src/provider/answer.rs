//! [`Answer`]: what a test asserts on, read from any provider's response in one call.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{anthropic, gemini, ollama, openai};
use crate::cassette::Body;
use crate::stream::{self, SseEvent};

/// The wire format an answer was read from. Detected from the body's shape, so OpenAI-compatible
/// servers (Azure OpenAI, vLLM, LiteLLM, Ollama's `/v1`) read as [`WireFormat::OpenAiChat`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum WireFormat {
    /// OpenAI chat completions (`choices`, `chat.completion.chunk`).
    OpenAiChat,
    /// The OpenAI Responses API (`response.output_text.delta` ...).
    OpenAiResponses,
    /// OpenAI embeddings (usage only).
    OpenAiEmbeddings,
    /// Anthropic Messages.
    Anthropic,
    /// Gemini `generateContent` / `streamGenerateContent`.
    Gemini,
    /// Ollama's native `/api/chat` and `/api/generate`.
    Ollama,
    /// Nothing recognisable: the answer is empty.
    #[default]
    Unknown,
}

/// One tool (function) call the model asked for, its arguments assembled from the deltas.
// Fields in sorted order: a cassette is written with its keys sorted, field by field as declared.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The arguments as the model wrote them: a JSON document as text.
    pub arguments: String,
    /// The call's id (`call_…`, `toolu_…`), when the provider gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The tool's name.
    pub name: String,
}

impl ToolCall {
    /// The arguments parsed as JSON, or `None` when the model wrote invalid JSON.
    pub fn arguments_json(&self) -> Option<Value> {
        serde_json::from_str(&self.arguments).ok()
    }
}

/// Token counts, with each provider's names mapped to input (prompt) and output (completion).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens (`prompt_tokens`, `input_tokens`, `promptTokenCount`, `prompt_eval_count`).
    pub input_tokens: Option<u64>,
    /// Completion tokens (`completion_tokens`, `output_tokens`, `candidatesTokenCount`, `eval_count`).
    pub output_tokens: Option<u64>,
    /// The total, as reported, or the sum of the two when only they are.
    pub total_tokens: Option<u64>,
}

impl Usage {
    pub(crate) fn finish(mut self) -> Option<Usage> {
        if self.total_tokens.is_none() {
            if let (Some(input), Some(output)) = (self.input_tokens, self.output_tokens) {
                self.total_tokens = Some(input + output);
            }
        }
        (self != Usage::default()).then_some(self)
    }
}

/// What the model answered: the assembled text, the tool calls, why it stopped and what it cost.
///
/// Read from a recorded or replayed response with [`crate::Cassette::answers`], or from a live
/// body with [`Answer::parse`] (raw bytes and content type), [`Answer::from_json`],
/// [`Answer::from_sse`] or [`Answer::from_ndjson`].
///
/// ```
/// use traceforge::provider::Answer;
/// let body = br#"data: {"choices":[{"index":0,"delta":{"content":"Par"}}]}
///
/// data: {"choices":[{"index":0,"delta":{"content":"is"},"finish_reason":"stop"}]}
///
/// data: [DONE]
///
/// "#;
/// let answer = Answer::parse(Some("text/event-stream"), body);
/// assert_eq!(answer.text, "Paris");
/// assert_eq!(answer.finish_reason.as_deref(), Some("stop"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    /// The wire format it was read from.
    pub format: WireFormat,
    /// The text of the answer (the first choice or candidate), deltas joined.
    pub text: String,
    /// Tool calls, in the order the model made them.
    pub tool_calls: Vec<ToolCall>,
    /// Why generation stopped, in the provider's words (`stop`, `end_turn`, `STOP`, `tool_use`...).
    pub finish_reason: Option<String>,
    /// Token usage, when the response reports it (OpenAI streams only with `include_usage`).
    pub usage: Option<Usage>,
    /// `false` when the stream was cut off before its end.
    pub complete: bool,
}

impl Answer {
    /// Reads a non-streamed JSON response body.
    pub fn from_json(body: &Value) -> Answer {
        let mut answer = if openai::is_responses_json(body) {
            openai::responses_from_json(body)
        } else if openai::is_embeddings_json(body) {
            openai::embeddings_from_json(body)
        } else if body.get("choices").is_some() {
            openai::chat_from_json(body)
        } else if anthropic::is_message_json(body) {
            anthropic::from_json(body)
        } else if body.get("candidates").is_some() || body.get("usageMetadata").is_some() {
            gemini::from_chunks(std::slice::from_ref(body))
        } else if ollama::is_ollama_json(body) {
            ollama::from_lines(std::slice::from_ref(body))
        } else {
            Answer::default()
        };
        answer.complete = true;
        answer
    }

    /// Reads a server-sent event stream (OpenAI chat and Responses, Anthropic, Gemini `alt=sse`).
    pub fn from_sse(events: &[SseEvent]) -> Answer {
        let first = events.iter().find_map(|e| e.data.as_ref());
        let mut answer = match first {
            Some(data) if openai::is_responses_event(data) => openai::responses_from_events(events),
            Some(data) if data.get("choices").is_some() || data.get("object").is_some() => {
                openai::chat_from_events(events)
            }
            Some(data) if anthropic::is_stream_event(data) => anthropic::from_events(events),
            Some(data) if data.get("candidates").is_some() || data.get("usageMetadata").is_some() => {
                let chunks: Vec<Value> = events.iter().filter_map(|e| e.data.clone()).collect();
                gemini::from_chunks(&chunks)
            }
            _ => Answer::default(),
        };
        answer.complete = true;
        answer
    }

    /// Reads a newline-delimited JSON stream (Ollama).
    pub fn from_ndjson(lines: &[Value]) -> Answer {
        let mut answer = match lines.first() {
            Some(first) if first.get("choices").is_some() => {
                let events: Vec<SseEvent> =
                    lines.iter().map(|l| SseEvent { data: Some(l.clone()), ..SseEvent::default() }).collect();
                openai::chat_from_events(&events)
            }
            Some(_) => ollama::from_lines(lines),
            None => Answer::default(),
        };
        answer.complete = true;
        answer
    }

    /// Reads a stored body. `None` for kinds that cannot hold an answer (empty, text, binary);
    /// JSON and streams in a shape no provider uses give an answer of [`WireFormat::Unknown`].
    pub fn from_body(body: &Body) -> Option<Answer> {
        match body {
            Body::Json { json } => Some(Answer::from_json(json)),
            Body::Sse { events, complete, .. } => Some(Answer { complete: *complete, ..Answer::from_sse(events) }),
            Body::Ndjson { lines, complete, .. } => Some(Answer { complete: *complete, ..Answer::from_ndjson(lines) }),
            _ => None,
        }
    }

    /// Reads a live response body from its bytes and `Content-Type`, whole or streamed.
    pub fn parse(content_type: Option<&str>, bytes: &[u8]) -> Answer {
        let media = content_type.and_then(|ct| ct.split(';').next()).map(|m| m.trim().to_ascii_lowercase());
        match media.as_deref() {
            Some("text/event-stream") => {
                let (events, leftover) = stream::parse_sse(bytes);
                Answer { complete: !leftover, ..Answer::from_sse(&events) }
            }
            Some("application/x-ndjson" | "application/ndjson" | "application/jsonl") => {
                let (lines, leftover) = stream::parse_ndjson(bytes);
                Answer { complete: !leftover, ..Answer::from_ndjson(&lines) }
            }
            _ => match serde_json::from_slice::<Value>(bytes) {
                Ok(json) => Answer::from_json(&json),
                Err(_) => Answer::default(),
            },
        }
    }

    /// Whether the body was in a wire format this version reads.
    pub fn is_known(&self) -> bool {
        self.format != WireFormat::Unknown
    }

    /// The first tool call with this name.
    pub fn tool_call(&self, name: &str) -> Option<&ToolCall> {
        self.tool_calls.iter().find(|call| call.name == name)
    }

    /// The text and tool calls, as stored beside streamed events for people reading the diff.
    pub fn assembled(&self) -> Option<Assembled> {
        self.clone().into_assembled()
    }

    /// [`Answer::assembled`], moving the text rather than copying it (a long answer's text is
    /// as large as the stream's).
    pub(crate) fn into_assembled(self) -> Option<Assembled> {
        let assembled = Assembled { text: self.text, tool_calls: self.tool_calls };
        (!assembled.text.is_empty() || !assembled.tool_calls.is_empty()).then_some(assembled)
    }
}

/// What a cassette stores next to streamed events so that a reviewer reads the answer, not a
/// hundred deltas. Derived when recording; never used when replaying.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Assembled {
    /// The answer's text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub text: String,
    /// The tool calls with their assembled arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
}

/// A `u64` at `value[key]`, if any.
pub(crate) fn count(value: &Value, key: &str) -> Option<u64> {
    value.get(key).and_then(Value::as_u64)
}

/// A string at `value[key]`, if any.
pub(crate) fn string(value: &Value, key: &str) -> Option<String> {
    value.get(key).and_then(Value::as_str).map(str::to_owned)
}

/// Tool arguments given as a JSON value (Anthropic's `input`, Gemini's `args`, Ollama's
/// `arguments`) become compact JSON text; arguments already given as text stay as they are.
pub(crate) fn arguments_text(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn call(id: Option<&str>, name: &str, arguments: &str) -> ToolCall {
        ToolCall { id: id.map(str::to_owned), name: name.to_owned(), arguments: arguments.to_owned() }
    }

    #[test]
    fn responses_api_json_with_a_function_call() {
        let answer = Answer::from_json(&json!({"object": "response", "status": "completed", "output": [
            {"type": "message", "content": [{"type": "output_text", "text": "Hi"}]},
            {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{\"a\":1}"}],
            "usage": {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5}}));
        assert_eq!((answer.format, answer.text.as_str()), (WireFormat::OpenAiResponses, "Hi"));
        assert_eq!(answer.tool_calls, vec![call(Some("call_1"), "f", "{\"a\":1}")]);
        assert_eq!(answer.usage.and_then(|u| u.total_tokens), Some(5));
        assert_eq!(answer.finish_reason.as_deref(), Some("completed"));
    }

    #[test]
    fn anthropic_json_tool_use_input_becomes_compact_arguments() {
        let answer = Answer::from_json(&json!({"type": "message", "stop_reason": "tool_use",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "w", "input": {"city": "Paris"}}],
            "usage": {"input_tokens": 10, "output_tokens": 4}}));
        assert_eq!(answer.tool_calls, vec![call(Some("toolu_1"), "w", "{\"city\":\"Paris\"}")]);
        assert_eq!(answer.usage.and_then(|u| u.total_tokens), Some(14), "the total is the sum when not reported");
    }

    #[test]
    fn gemini_function_call_and_thoughts() {
        let answer = Answer::from_json(&json!({"candidates": [{"finishReason": "STOP", "content": {"parts": [
            {"text": "thinking", "thought": true}, {"text": "Answer"}, {"functionCall": {"name": "f", "args": {"x": 1}}}]}}]}));
        assert_eq!((answer.text.as_str(), answer.finish_reason.as_deref()), ("Answer", Some("STOP")));
        assert_eq!(answer.tool_calls, vec![call(None, "f", "{\"x\":1}")]);
    }

    #[test]
    fn ollama_lines_with_tool_calls_and_counts() {
        let answer = Answer::from_ndjson(&[
            json!({"message": {"content": "Hel"}, "done": false}),
            json!({"message": {"content": "lo", "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}]}, "done": false}),
            json!({"message": {"content": ""}, "done": true, "done_reason": "stop", "prompt_eval_count": 5, "eval_count": 2}),
        ]);
        assert_eq!((answer.format, answer.text.as_str()), (WireFormat::Ollama, "Hello"));
        assert_eq!(answer.tool_calls, vec![call(None, "f", "{\"a\":1}")]);
        assert_eq!(answer.usage.and_then(|u| u.input_tokens), Some(5));
    }

    #[test]
    fn a_cut_off_stream_and_an_unknown_body() {
        let answer = Answer::parse(
            Some("text/event-stream"),
            b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"cho",
        );
        assert_eq!((answer.text.as_str(), answer.complete), ("a", false));
        assert!(!Answer::from_json(&json!({"hello": 1})).is_known());
        assert_eq!(Answer::from_body(&Body::Text { text: "x".into() }), None);
    }
}
