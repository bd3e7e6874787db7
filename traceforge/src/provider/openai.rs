//! OpenAI (and every OpenAI-compatible server): chat completions, whole and streamed with
//! `chat.completion.chunk` deltas (tool-call arguments arrive in pieces keyed by `index`; the usage
//! chunk of `stream_options.include_usage` has empty `choices`); the Responses API, whole and as
//! typed events; embeddings.

use serde_json::Value;

use super::answer::{arguments_text, count, string, Answer, ToolCall, Usage, WireFormat};
use crate::stream::SseEvent;

fn chat_usage(usage: &Value) -> Usage {
    Usage {
        input_tokens: count(usage, "prompt_tokens"),
        output_tokens: count(usage, "completion_tokens"),
        total_tokens: count(usage, "total_tokens"),
    }
}

fn responses_usage(usage: &Value) -> Usage {
    Usage {
        input_tokens: count(usage, "input_tokens"),
        output_tokens: count(usage, "output_tokens"),
        total_tokens: count(usage, "total_tokens"),
    }
}

pub(super) fn is_embeddings_json(body: &Value) -> bool {
    body.get("object").and_then(Value::as_str) == Some("list")
        && body.get("data").is_some_and(Value::is_array)
        && body.get("choices").is_none()
}

pub(super) fn embeddings_from_json(body: &Value) -> Answer {
    Answer {
        format: WireFormat::OpenAiEmbeddings,
        usage: body.get("usage").map(chat_usage).and_then(Usage::finish),
        ..Answer::default()
    }
}

pub(super) fn chat_from_json(body: &Value) -> Answer {
    let choice = &body["choices"][0];
    let message = &choice["message"];
    let tool_calls = message["tool_calls"]
        .as_array()
        .map(|calls| {
            calls
                .iter()
                .map(|call| ToolCall {
                    id: string(call, "id"),
                    name: call["function"]["name"].as_str().unwrap_or_default().to_owned(),
                    arguments: arguments_text(call["function"].get("arguments")),
                })
                .collect()
        })
        .unwrap_or_default();
    Answer {
        format: WireFormat::OpenAiChat,
        text: message["content"].as_str().unwrap_or_default().to_owned(),
        tool_calls,
        finish_reason: string(choice, "finish_reason"),
        usage: body.get("usage").map(chat_usage).and_then(Usage::finish),
        complete: true,
    }
}

pub(super) fn chat_from_events(events: &[SseEvent]) -> Answer {
    let mut answer = Answer { format: WireFormat::OpenAiChat, ..Answer::default() };
    // Tool calls by their `index` in the deltas, in first-seen order.
    let mut indices: Vec<u64> = Vec::new();
    for data in events.iter().filter_map(|e| e.data.as_ref()) {
        if let Some(usage) = data.get("usage").filter(|u| u.is_object()) {
            answer.usage = chat_usage(usage).finish();
        }
        let Some(choices) = data["choices"].as_array() else { continue };
        for choice in choices.iter().filter(|c| c["index"].as_u64().unwrap_or(0) == 0) {
            let delta = &choice["delta"];
            if let Some(text) = delta["content"].as_str() {
                answer.text.push_str(text);
            }
            for call in delta["tool_calls"].as_array().into_iter().flatten() {
                let index = call["index"].as_u64().unwrap_or(indices.len() as u64);
                let position = match indices.iter().position(|i| *i == index) {
                    Some(position) => position,
                    None => {
                        indices.push(index);
                        answer.tool_calls.push(ToolCall::default());
                        answer.tool_calls.len() - 1
                    }
                };
                let slot = &mut answer.tool_calls[position];
                if let Some(id) = call["id"].as_str() {
                    slot.id = Some(id.to_owned());
                }
                if let Some(name) = call["function"]["name"].as_str() {
                    slot.name.push_str(name);
                }
                if let Some(arguments) = call["function"]["arguments"].as_str() {
                    slot.arguments.push_str(arguments);
                }
            }
            if let Some(reason) = choice["finish_reason"].as_str() {
                answer.finish_reason = Some(reason.to_owned());
            }
        }
    }
    answer
}

pub(super) fn is_responses_json(body: &Value) -> bool {
    body.get("object").and_then(Value::as_str) == Some("response")
}

pub(super) fn is_responses_event(data: &Value) -> bool {
    data.get("type").and_then(Value::as_str).is_some_and(|t| t.starts_with("response."))
}

fn finish_of(response: &Value) -> Option<String> {
    response["incomplete_details"]["reason"].as_str().map(str::to_owned).or_else(|| string(response, "status"))
}

fn function_call(item: &Value) -> ToolCall {
    ToolCall {
        id: string(item, "call_id").or_else(|| string(item, "id")),
        name: item["name"].as_str().unwrap_or_default().to_owned(),
        arguments: arguments_text(item.get("arguments")),
    }
}

pub(super) fn responses_from_json(body: &Value) -> Answer {
    let mut answer = Answer { format: WireFormat::OpenAiResponses, complete: true, ..Answer::default() };
    for item in body["output"].as_array().into_iter().flatten() {
        match item["type"].as_str() {
            Some("message") => {
                for part in item["content"].as_array().into_iter().flatten() {
                    if part["type"] == "output_text" {
                        answer.text.push_str(part["text"].as_str().unwrap_or_default());
                    }
                }
            }
            Some("function_call") => answer.tool_calls.push(function_call(item)),
            _ => {}
        }
    }
    answer.finish_reason = finish_of(body);
    answer.usage = body.get("usage").map(responses_usage).and_then(Usage::finish);
    answer
}

pub(super) fn responses_from_events(events: &[SseEvent]) -> Answer {
    let mut answer = Answer { format: WireFormat::OpenAiResponses, ..Answer::default() };
    // Function calls by `output_index`.
    let mut calls: Vec<(u64, ToolCall)> = Vec::new();
    for data in events.iter().filter_map(|e| e.data.as_ref()) {
        let output_index = data["output_index"].as_u64().unwrap_or(0);
        match data["type"].as_str().unwrap_or_default() {
            "response.output_text.delta" => answer.text.push_str(data["delta"].as_str().unwrap_or_default()),
            "response.output_item.added" if data["item"]["type"] == "function_call" => {
                calls.push((output_index, function_call(&data["item"])));
            }
            "response.function_call_arguments.delta" => {
                if let Some((_, call)) = calls.iter_mut().find(|(i, _)| *i == output_index) {
                    call.arguments.push_str(data["delta"].as_str().unwrap_or_default());
                }
            }
            "response.output_item.done" if data["item"]["type"] == "function_call" => {
                let done = function_call(&data["item"]);
                match calls.iter_mut().find(|(i, _)| *i == output_index) {
                    Some((_, call)) => *call = done,
                    None => calls.push((output_index, done)),
                }
            }
            "response.completed" | "response.incomplete" | "response.failed" => {
                let response = &data["response"];
                answer.finish_reason = finish_of(response);
                answer.usage = response.get("usage").map(responses_usage).and_then(Usage::finish);
            }
            _ => {}
        }
    }
    answer.tool_calls = calls.into_iter().map(|(_, call)| call).collect();
    answer
}
