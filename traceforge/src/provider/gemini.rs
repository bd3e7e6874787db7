//! Gemini (Generative Language API): `generateContent` answers one `GenerateContentResponse`;
//! `streamGenerateContent?alt=sse` sends one per event, each holding the next piece of text.
//! Function calls arrive whole, in a `functionCall` part.

use serde_json::Value;

use super::answer::{arguments_text, count, string, Answer, ToolCall, Usage, WireFormat};

/// Reads one response or the chunks of a stream, in order.
pub(super) fn from_chunks(chunks: &[Value]) -> Answer {
    let mut answer = Answer { format: WireFormat::Gemini, ..Answer::default() };
    for chunk in chunks {
        let candidate = &chunk["candidates"][0];
        for part in candidate["content"]["parts"].as_array().into_iter().flatten() {
            if let Some(text) = part["text"].as_str() {
                // Parts flagged as thoughts are the model's reasoning, not its answer.
                if part["thought"] != Value::Bool(true) {
                    answer.text.push_str(text);
                }
            }
            if let Some(call) = part.get("functionCall") {
                answer.tool_calls.push(ToolCall {
                    id: string(call, "id"),
                    name: call["name"].as_str().unwrap_or_default().to_owned(),
                    arguments: arguments_text(call.get("args")),
                });
            }
        }
        if let Some(reason) = candidate["finishReason"].as_str() {
            answer.finish_reason = Some(reason.to_owned());
        }
        if let Some(usage) = chunk.get("usageMetadata") {
            answer.usage = Usage {
                input_tokens: count(usage, "promptTokenCount"),
                output_tokens: count(usage, "candidatesTokenCount"),
                total_tokens: count(usage, "totalTokenCount"),
            }
            .finish();
        }
    }
    answer
}
