//! Ollama's native API: `/api/chat` (`message.content`, `message.tool_calls`) and `/api/generate`
//! (`response`), streamed as NDJSON objects until one with `"done": true`, which carries
//! `done_reason`, `prompt_eval_count` and `eval_count`. Non-streamed answers are that one object.

use serde_json::Value;

use super::answer::{arguments_text, count, string, Answer, ToolCall, Usage, WireFormat};

pub(super) fn is_ollama_json(body: &Value) -> bool {
    body.get("done").is_some_and(Value::is_boolean)
}

pub(super) fn from_lines(lines: &[Value]) -> Answer {
    let mut answer = Answer { format: WireFormat::Ollama, ..Answer::default() };
    for line in lines {
        if let Some(text) = line["message"]["content"].as_str().or_else(|| line["response"].as_str()) {
            answer.text.push_str(text);
        }
        for call in line["message"]["tool_calls"].as_array().into_iter().flatten() {
            answer.tool_calls.push(ToolCall {
                id: string(call, "id"),
                name: call["function"]["name"].as_str().unwrap_or_default().to_owned(),
                arguments: arguments_text(call["function"].get("arguments")),
            });
        }
        if line["done"] == Value::Bool(true) {
            answer.finish_reason = string(line, "done_reason");
            answer.usage = Usage {
                input_tokens: count(line, "prompt_eval_count"),
                output_tokens: count(line, "eval_count"),
                total_tokens: None,
            }
            .finish();
        }
    }
    answer
}
