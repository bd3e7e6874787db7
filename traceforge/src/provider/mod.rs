//! What each provider's wire format needs: the shape of its error bodies (so that SDKs surface a
//! cassette miss as a normal API error instead of retrying it), and how its answers are read back
//! for assertions: [`Answer`] assembles the text, tool calls, finish reason and token usage of a
//! response, whole or streamed, recorded or live; [`Prompt`] reads the model and messages of a
//! request. One file per wire format.

mod answer;
mod anthropic;
mod gemini;
mod ollama;
mod openai;
pub(crate) mod prompt;

use serde_json::{json, Value};

pub use answer::{Answer, Assembled, ToolCall, Usage, WireFormat};
pub use prompt::{Prompt, PromptMessage};

/// The API dialect an upstream speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Provider {
    /// OpenAI and every OpenAI-compatible server (Azure OpenAI, vLLM, LiteLLM...).
    OpenAi,
    /// Anthropic Messages.
    Anthropic,
    /// Google Gemini (Generative Language API).
    Gemini,
    /// Ollama's native API.
    Ollama,
}

impl Provider {
    /// Guesses the dialect from the upstream's name, then its host; OpenAI-compatible otherwise.
    pub fn infer(name: &str, base_url: &str) -> Provider {
        let name = name.to_ascii_lowercase();
        let url = base_url.to_ascii_lowercase();
        if name.contains("anthropic") || name.contains("claude") || url.contains("anthropic.com") {
            Provider::Anthropic
        } else if name.contains("gemini") || url.contains("googleapis.com") {
            Provider::Gemini
        } else if name.contains("ollama") || url.contains(":11434") {
            Provider::Ollama
        } else {
            Provider::OpenAi
        }
    }

    /// A JSON error body in this provider's shape. `kind` is a short machine-readable code such
    /// as `traceforge_cassette_miss`.
    pub fn error_body(self, status: u16, kind: &str, message: &str) -> Value {
        match self {
            Provider::OpenAi => json!({
                "error": { "message": message, "type": kind, "param": null, "code": kind }
            }),
            Provider::Anthropic => json!({
                "type": "error",
                "error": { "type": kind, "message": message }
            }),
            Provider::Gemini => json!({
                "error": { "code": status, "message": message, "status": kind.to_ascii_uppercase() }
            }),
            Provider::Ollama => json!({ "error": message }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn infers_dialect_from_name_or_host() {
        assert_eq!(Provider::infer("claude", "http://127.0.0.1:1"), Provider::Anthropic);
        assert_eq!(Provider::infer("x", "https://api.anthropic.com"), Provider::Anthropic);
        assert_eq!(Provider::infer("x", "https://generativelanguage.googleapis.com"), Provider::Gemini);
        assert_eq!(Provider::infer("ollama", "http://localhost:11434"), Provider::Ollama);
        assert_eq!(Provider::infer("azure", "https://me.openai.azure.com"), Provider::OpenAi);
    }

    #[test]
    fn error_bodies_follow_each_providers_shape() {
        let openai = Provider::OpenAi.error_body(404, "miss", "m");
        assert_eq!(openai["error"]["message"], "m");
        let anthropic = Provider::Anthropic.error_body(404, "miss", "m");
        assert_eq!(anthropic["type"], "error");
        assert_eq!(Provider::Gemini.error_body(404, "miss", "m")["error"]["code"], 404);
        assert_eq!(Provider::Ollama.error_body(404, "miss", "m")["error"], "m");
    }
}
