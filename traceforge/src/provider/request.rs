//! What a request asks, read back from its body in any provider's shape: the text of the last
//! user turn. Used to tell recorded requests to the same endpoint apart in failure messages.

use serde_json::Value;

/// What the user wrote last, and what it is called: the `last user message` of chat
/// `messages` (OpenAI, Anthropic, Ollama), Gemini `contents` or a Responses API `input` list;
/// else a plain `input` (embeddings, the Responses API) or `prompt` (Ollama, completions).
pub(crate) fn asked(body: &Value) -> Option<(&'static str, String)> {
    let turns = ["messages", "contents", "input"].iter().find_map(|key| body.get(*key)?.as_array());
    match turns {
        Some(turns) => turns.iter().rev().find_map(user_text).map(|text| ("last user message", text)),
        None => ["input", "prompt"].iter().find_map(|key| Some((*key, body.get(*key)?.as_str()?.to_owned()))),
    }
}

/// A turn's text when the user wrote it: a bare string (one of a batch of inputs), or a message
/// whose role is `user` or absent (Gemini allows that), with text or text parts as content.
fn user_text(turn: &Value) -> Option<String> {
    if let Some(text) = turn.as_str() {
        return Some(text.to_owned());
    }
    if turn.get("role").is_some_and(|role| role != "user") {
        return None;
    }
    match turn.get("content").or_else(|| turn.get("parts"))? {
        Value::String(text) => Some(text.clone()),
        Value::Array(parts) => {
            let texts: Vec<&str> = parts.iter().filter_map(|part| part.get("text")?.as_str()).collect();
            (!texts.is_empty()).then(|| texts.join(" "))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
                Some((message, "look here")),
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
            (json!({"input": ["a", "b"]}), Some((message, "b"))),
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
