//! Anthropic Messages: a `message` object, or a stream of typed events (`message_start`,
//! `content_block_start`, `content_block_delta` with `text_delta` or `input_json_delta`,
//! `content_block_stop`, `message_delta` with the stop reason and output tokens, `message_stop`,
//! `ping`).

use serde_json::Value;

use super::answer::{arguments_text, count, string, Answer, ToolCall, Usage, WireFormat};
use crate::stream::SseEvent;

pub(super) fn is_message_json(body: &Value) -> bool {
    body.get("type").and_then(Value::as_str) == Some("message") && body.get("content").is_some_and(Value::is_array)
}

pub(super) fn is_stream_event(data: &Value) -> bool {
    matches!(
        data.get("type").and_then(Value::as_str),
        Some(
            "message_start"
                | "content_block_start"
                | "content_block_delta"
                | "content_block_stop"
                | "message_delta"
                | "message_stop"
                | "ping"
        )
    )
}

fn usage_of(usage: &Value, into: &mut Usage) {
    if let Some(input) = count(usage, "input_tokens") {
        into.input_tokens = Some(input);
    }
    if let Some(output) = count(usage, "output_tokens") {
        into.output_tokens = Some(output);
    }
}

pub(super) fn from_json(body: &Value) -> Answer {
    let mut answer = Answer { format: WireFormat::Anthropic, complete: true, ..Answer::default() };
    for block in body["content"].as_array().into_iter().flatten() {
        match block["type"].as_str() {
            Some("text") => answer.text.push_str(block["text"].as_str().unwrap_or_default()),
            Some("tool_use") => answer.tool_calls.push(ToolCall {
                id: string(block, "id"),
                name: block["name"].as_str().unwrap_or_default().to_owned(),
                arguments: arguments_text(block.get("input")),
            }),
            _ => {}
        }
    }
    answer.finish_reason = string(body, "stop_reason");
    let mut usage = Usage::default();
    usage_of(&body["usage"], &mut usage);
    answer.usage = usage.finish();
    answer
}

pub(super) fn from_events(events: &[SseEvent]) -> Answer {
    let mut answer = Answer { format: WireFormat::Anthropic, ..Answer::default() };
    let mut usage = Usage::default();
    // Tool-use blocks by their content block `index`.
    let mut tools: Vec<(u64, ToolCall)> = Vec::new();
    for data in events.iter().filter_map(|e| e.data.as_ref()) {
        let index = data["index"].as_u64().unwrap_or(0);
        match data["type"].as_str().unwrap_or_default() {
            "message_start" => usage_of(&data["message"]["usage"], &mut usage),
            "content_block_start" if data["content_block"]["type"] == "tool_use" => {
                let block = &data["content_block"];
                // The streamed `input` starts as `{}` and is then sent as `input_json_delta`s.
                let input = block.get("input").filter(|i| i.as_object().is_none_or(|o| !o.is_empty()));
                tools.push((
                    index,
                    ToolCall {
                        id: string(block, "id"),
                        name: block["name"].as_str().unwrap_or_default().to_owned(),
                        arguments: input.map(|i| arguments_text(Some(i))).unwrap_or_default(),
                    },
                ));
            }
            "content_block_delta" => {
                let delta = &data["delta"];
                match delta["type"].as_str() {
                    Some("text_delta") => answer.text.push_str(delta["text"].as_str().unwrap_or_default()),
                    Some("input_json_delta") => {
                        if let Some((_, call)) = tools.iter_mut().find(|(i, _)| *i == index) {
                            call.arguments.push_str(delta["partial_json"].as_str().unwrap_or_default());
                        }
                    }
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(reason) = data["delta"]["stop_reason"].as_str() {
                    answer.finish_reason = Some(reason.to_owned());
                }
                usage_of(&data["usage"], &mut usage);
            }
            _ => {}
        }
    }
    answer.tool_calls = tools.into_iter().map(|(_, call)| call).collect();
    answer.usage = usage.finish();
    answer
}
