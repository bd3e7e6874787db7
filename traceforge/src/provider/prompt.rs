//! What a request asked, read from any provider's request body: the model and the
//! conversation as role and text, for people reading a cassette (`traceforge show`).

use serde::Serialize;
use serde_json::Value;

use crate::cassette::{Body, RecordedRequest};

/// The model and messages of a request, whatever its wire format.
///
/// ```
/// use traceforge::cassette::{Body, RecordedRequest};
/// use traceforge::provider::Prompt;
/// let json = serde_json::json!({"model": "gpt-4o-mini", "messages": [
///     {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"}]});
/// let prompt = Prompt::from_request(&RecordedRequest::new("POST", "openai", "/chat/completions", Body::Json { json: json.into() }));
/// assert_eq!(prompt.model.as_deref(), Some("gpt-4o-mini"));
/// assert_eq!(prompt.messages[1].text, "Capital of France?");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Prompt {
    /// `model` in the body, or the model in a Gemini path (`/v1beta/models/{model}:…`).
    pub model: Option<String>,
    /// Whether the request asked for a streamed answer.
    pub stream: bool,
    /// The conversation in order, system instructions first.
    pub messages: Vec<PromptMessage>,
}

/// One message of a [`Prompt`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PromptMessage {
    /// `system`, `user`, `assistant`, `tool`, `model` (Gemini), or `input` for embeddings.
    pub role: String,
    /// Its text parts joined by newlines; other parts as `[image]`, `[tool call name]`, etc.
    pub text: String,
}

impl Prompt {
    /// Reads a recorded request. A body that is not JSON gives a prompt with no messages.
    pub fn from_request(request: &RecordedRequest) -> Prompt {
        let Body::Json { json } = &request.body else {
            return Prompt { model: model_in_path(&request.path), ..Prompt::default() };
        };
        let mut prompt = Prompt::from_json(json);
        if prompt.model.is_none() {
            prompt.model = model_in_path(&request.path);
        }
        if request.path.contains(":streamGenerateContent") {
            prompt.stream = true;
        }
        prompt
    }

    /// Reads a request body of OpenAI chat or Responses, Anthropic Messages, Gemini, Ollama or
    /// embeddings.
    pub fn from_json(body: &Value) -> Prompt {
        let mut messages = Vec::new();
        // System instructions, each provider in its own field.
        for system in [&body["system"], &body["instructions"], &body["systemInstruction"]] {
            let text = content_text(system);
            if !text.is_empty() {
                messages.push(message("system", text));
            }
        }
        if let Some(items) = body["messages"].as_array() {
            messages.extend(items.iter().map(chat_message));
        } else if let Some(contents) = body["contents"].as_array() {
            for content in contents {
                messages.push(message(content["role"].as_str().unwrap_or("user"), content_text(&content["parts"])));
            }
        } else if let Some(prompt) = body["prompt"].as_str() {
            messages.push(message("user", prompt.to_owned()));
        }
        // The Responses API's `input` is the conversation; for embeddings it is what to embed.
        match &body["input"] {
            Value::String(text) => {
                messages.push(message(if looks_like_embeddings(body) { "input" } else { "user" }, text.clone()))
            }
            Value::Array(items) => {
                for item in items {
                    match item {
                        Value::String(text) => messages.push(message("input", text.clone())),
                        Value::Object(_) if item["type"] == "function_call_output" => {
                            messages.push(message("tool", content_text(&item["output"])))
                        }
                        Value::Object(_) if item["type"] == "function_call" => {
                            messages.push(message("assistant", format!("[tool call {}]", text_of(&item["name"]))))
                        }
                        Value::Object(_) => messages.push(chat_message(item)),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        Prompt {
            model: body["model"].as_str().map(str::to_owned),
            stream: body["stream"].as_bool().unwrap_or(false),
            messages,
        }
    }

    /// The last `n` messages (all of them when there are fewer).
    pub fn last(&self, n: usize) -> &[PromptMessage] {
        &self.messages[self.messages.len().saturating_sub(n)..]
    }
}

/// What the user asked last, and what to call it, for telling recorded requests to the same
/// endpoint apart in failure messages: the last user turn of the conversation
/// (`last user message`), or a plain `input` (embeddings, the Responses API) or `prompt`
/// (Ollama, completions).
pub(crate) fn asked(body: &Value) -> Option<(&'static str, String)> {
    let prompt = Prompt::from_json(body);
    let last = prompt.messages.iter().rev().find(|m| m.role == "user" || m.role == "input")?;
    let label = if body["prompt"].is_string() {
        "prompt"
    } else if last.role == "input" || body["input"].is_string() {
        "input"
    } else {
        "last user message"
    };
    Some((label, last.text.clone()))
}

/// Embeddings requests name an embedding model or embedding options; the Responses API
/// names a chat model.
fn looks_like_embeddings(body: &Value) -> bool {
    body["model"].as_str().is_some_and(|m| m.contains("embed"))
        || body.get("encoding_format").is_some()
        || body.get("dimensions").is_some()
}

fn message(role: &str, text: String) -> PromptMessage {
    PromptMessage { role: role.to_owned(), text }
}

/// A chat message (OpenAI, Anthropic, Ollama, Responses input items).
fn chat_message(item: &Value) -> PromptMessage {
    let mut parts = vec![content_text(&item["content"])];
    if let Some(calls) = item["tool_calls"].as_array() {
        for call in calls {
            let name = call["function"]["name"].as_str().or(call["name"].as_str()).unwrap_or("?");
            parts.push(format!("[tool call {name}]"));
        }
    }
    parts.retain(|p| !p.is_empty());
    message(item["role"].as_str().unwrap_or("user"), parts.join("\n"))
}

/// The text of a message's content: a string, or the parts of a list (OpenAI content parts,
/// Anthropic blocks, Gemini parts, a Gemini `systemInstruction` object).
fn content_text(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(parts) => parts.iter().map(part_text).filter(|t| !t.is_empty()).collect::<Vec<_>>().join("\n"),
        Value::Object(_) if content.get("parts").is_some() => content_text(&content["parts"]),
        Value::Object(_) => part_text(content),
        _ => String::new(),
    }
}

fn part_text(part: &Value) -> String {
    if let Some(text) = part["text"].as_str() {
        return text.to_owned();
    }
    match part["type"].as_str() {
        Some("tool_result") => content_text(&part["content"]),
        Some("tool_use") => format!("[tool call {}]", text_of(&part["name"])),
        Some(kind) if kind.contains("image") => "[image]".to_owned(),
        Some(kind) if kind.contains("audio") => "[audio]".to_owned(),
        Some(kind) if kind.contains("file") || kind == "document" => "[file]".to_owned(),
        _ if part.get("functionCall").is_some() => format!("[tool call {}]", text_of(&part["functionCall"]["name"])),
        _ if part.get("functionResponse").is_some() => {
            format!("[tool result {}]", text_of(&part["functionResponse"]["name"]))
        }
        _ if part.get("inlineData").is_some() => "[inline data]".to_owned(),
        _ => String::new(),
    }
}

fn text_of(value: &Value) -> &str {
    value.as_str().unwrap_or("?")
}

/// `gemini-2.0-flash` from `/v1beta/models/gemini-2.0-flash:generateContent`.
fn model_in_path(path: &str) -> Option<String> {
    let rest = path.split("/models/").nth(1)?;
    let model = rest.split([':', '/']).next()?;
    (!model.is_empty()).then(|| model.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn roles_and_texts(prompt: &Prompt) -> Vec<(&str, &str)> {
        prompt.messages.iter().map(|m| (m.role.as_str(), m.text.as_str())).collect()
    }

    #[test]
    fn anthropic_system_and_blocks() {
        let prompt = Prompt::from_json(&json!({"model": "claude", "system": "Be brief.", "stream": true,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "image", "source": {}}]},
                         {"role": "assistant", "content": [{"type": "tool_use", "name": "weather", "input": {}}]}]}));
        assert!(prompt.stream);
        assert_eq!(
            roles_and_texts(&prompt),
            [("system", "Be brief."), ("user", "Hi\n[image]"), ("assistant", "[tool call weather]")]
        );
    }

    #[test]
    fn gemini_contents_and_model_from_the_path() {
        let json = json!({"systemInstruction": {"parts": [{"text": "Answer in French."}]},
            "contents": [{"role": "user", "parts": [{"text": "Capital?"}]}]});
        let request = RecordedRequest::new(
            "POST",
            "gemini",
            "/v1beta/models/gemini-2.0-flash:streamGenerateContent",
            Body::Json { json: json.into() },
        );
        let prompt = Prompt::from_request(&request);
        assert_eq!(prompt.model.as_deref(), Some("gemini-2.0-flash"));
        assert!(prompt.stream);
        assert_eq!(roles_and_texts(&prompt), [("system", "Answer in French."), ("user", "Capital?")]);
    }

    #[test]
    fn responses_input_ollama_prompt_and_embeddings() {
        let responses = Prompt::from_json(&json!({"model": "gpt-4o", "instructions": "Be kind.", "input": "Hello"}));
        assert_eq!(roles_and_texts(&responses), [("system", "Be kind."), ("user", "Hello")]);
        let items = Prompt::from_json(&json!({"model": "gpt-4o", "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
            {"type": "function_call", "name": "weather"}, {"type": "function_call_output", "output": "sunny"}]}));
        assert_eq!(
            roles_and_texts(&items),
            [("user", "Weather?"), ("assistant", "[tool call weather]"), ("tool", "sunny")]
        );
        let ollama = Prompt::from_json(&json!({"model": "llama3", "prompt": "Why?", "system": "Short."}));
        assert_eq!(roles_and_texts(&ollama), [("system", "Short."), ("user", "Why?")]);
        let embeddings = Prompt::from_json(&json!({"model": "text-embedding-3-small", "input": ["a", "b"]}));
        assert_eq!(roles_and_texts(&embeddings), [("input", "a"), ("input", "b")]);
        let one = Prompt::from_json(&json!({"model": "text-embedding-3-small", "input": "a"}));
        assert_eq!(roles_and_texts(&one), [("input", "a")]);
        assert_eq!(one.last(5).len(), 1);
    }

    #[test]
    fn openai_tool_calls_and_non_json_bodies() {
        let prompt = Prompt::from_json(&json!({"model": "gpt-4o-mini", "messages": [
            {"role": "assistant", "content": null, "tool_calls": [{"function": {"name": "lookup"}}]},
            {"role": "tool", "content": "42"}]}));
        assert_eq!(roles_and_texts(&prompt), [("assistant", "[tool call lookup]"), ("tool", "42")]);
        assert_eq!(prompt.last(1)[0].text, "42");
        let binary = RecordedRequest::new("POST", "openai", "/audio/transcriptions", Body::Empty);
        assert_eq!(Prompt::from_request(&binary), Prompt::default());
    }

    #[test]
    fn the_last_user_turn_in_every_shape() {
        let message = "last user message";
        let cases = [
            (
                json!({"messages": [{"role": "user", "content": "first"}, {"role": "assistant", "content": "a"}, {"role": "user", "content": "second"}]}),
                Some((message, "second")),
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "text", "text": "look"}, {"type": "image_url"}, {"type": "text", "text": "here"}]}, {"role": "tool", "content": "42"}]}),
                Some((message, "look\n[image]\nhere")),
            ),
            (
                json!({"contents": [{"role": "user", "parts": [{"text": "hola"}]}, {"role": "model", "parts": [{"text": "hi"}]}]}),
                Some((message, "hola")),
            ),
            (json!({"contents": [{"parts": [{"text": "no role"}]}]}), Some((message, "no role"))),
            (
                json!({"input": [{"role": "user", "content": [{"type": "input_text", "text": "responses"}]}]}),
                Some((message, "responses")),
            ),
            (json!({"input": ["a", "b"]}), Some(("input", "b"))),
            (json!({"input": "embed me"}), Some(("input", "embed me"))),
            (json!({"prompt": "why?"}), Some(("prompt", "why?"))),
            (json!({"messages": [{"role": "system", "content": "be brief"}]}), None),
            (json!({"model": "m"}), None),
        ];
        for (body, expected) in cases {
            let found = asked(&body);
            assert_eq!(found.as_ref().map(|(label, text)| (*label, text.as_str())), expected, "{body}");
        }
    }
}
