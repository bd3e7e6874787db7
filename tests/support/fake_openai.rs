//! A fake OpenAI upstream on loopback (wiremock), answering chat completions and embeddings in
//! OpenAI's wire format. Answers are a pure function of the request, so re-recording against it
//! is deterministic; volatile headers (request ids, processing time) are random, as upstream.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

/// The fake server. Dropping it shuts it down.
pub struct FakeOpenAi {
    server: MockServer,
}

impl FakeOpenAi {
    /// Starts the server with the chat and embeddings endpoints mounted under `/v1`.
    pub async fn start() -> FakeOpenAi {
        let server = MockServer::start().await;
        let counter = Arc::new(AtomicUsize::new(0));
        let calls = Arc::clone(&counter);
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .respond_with(move |request: &Request| chat(request, calls.fetch_add(1, Ordering::SeqCst) + 1))
            .mount(&server)
            .await;
        Mock::given(method("POST")).and(path("/v1/embeddings")).respond_with(embeddings).mount(&server).await;
        FakeOpenAi { server }
    }

    /// The base URL an OpenAI client would use: `http://127.0.0.1:<port>/v1`.
    pub fn base_url(&self) -> String {
        format!("{}/v1", self.server.uri())
    }

    /// How many requests reached the fake.
    pub async fn received(&self) -> usize {
        self.server.received_requests().await.map_or(0, |requests| requests.len())
    }
}

fn body_of(request: &Request) -> Value {
    serde_json::from_slice(&request.body).unwrap_or(Value::Null)
}

fn volatile(template: ResponseTemplate) -> ResponseTemplate {
    template
        .insert_header("x-request-id", format!("req_{:032x}", rand_u128()).as_str())
        .insert_header("openai-processing-ms", "187")
        .insert_header("openai-organization", "org-fake")
        .insert_header("cf-ray", format!("{:016x}-AMS", rand_u128() as u64).as_str())
        .insert_header("x-ratelimit-remaining-requests", "4999")
}

fn rand_u128() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

/// The last user message, whatever its content shape.
fn last_user_text(body: &Value) -> String {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let last = messages.iter().rev().find(|m| m["role"] == "user").cloned().unwrap_or(Value::Null);
    match &last["content"] {
        Value::String(text) => text.clone(),
        Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect::<Vec<_>>().join(" "),
        _ => String::new(),
    }
}

/// A deterministic answer: a few known prompts get real-looking answers, everything else an echo.
/// A prompt containing `[count]` gets the server's call number, to tell repeated calls apart.
fn answer_for(prompt: &str, call: usize) -> String {
    let lower = prompt.to_lowercase();
    if lower.contains("[count]") {
        format!("This is answer number {call}.")
    } else if lower.contains("capital of france") && lower.contains("french") {
        "La capitale de la France est Paris.".to_owned()
    } else if lower.contains("capital of france") {
        "The capital of France is Paris.".to_owned()
    } else if lower.contains("summarise") || lower.contains("summarize") {
        "Rust gives memory safety without a garbage collector, through ownership and borrowing.".to_owned()
    } else {
        format!("You said: {prompt}")
    }
}

fn chat(request: &Request, call: usize) -> ResponseTemplate {
    let body = body_of(request);
    let prompt = last_user_text(&body);
    let answer = answer_for(&prompt, call);
    let prompt_tokens = prompt.split_whitespace().count() + 8;
    let completion_tokens = answer.split_whitespace().count();
    volatile(ResponseTemplate::new(200)).set_body_json(json!({
        "id": "chatcmpl-fake0001",
        "object": "chat.completion",
        "created": 1_764_000_000,
        "model": body["model"].as_str().unwrap_or("gpt-4o-mini"),
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": answer, "refusal": null },
            "logprobs": null,
            "finish_reason": "stop"
        }],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens
        },
        "system_fingerprint": "fp_fake"
    }))
}

/// A deterministic 8-dimensional unit vector per input text.
pub fn fake_embedding(text: &str) -> Vec<f32> {
    let mut state: u64 = 0xcbf2_9ce4_8422_2325;
    let mut vector: Vec<f32> = (0..8)
        .map(|i| {
            for byte in text.bytes().chain([i as u8]) {
                state = (state ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
            }
            ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
        .collect();
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt().max(f32::EPSILON);
    vector.iter_mut().for_each(|x| *x /= norm);
    vector
}

fn embeddings(request: &Request) -> ResponseTemplate {
    let body = body_of(request);
    let inputs: Vec<String> = match &body["input"] {
        Value::String(text) => vec![text.clone()],
        Value::Array(items) => items.iter().map(|i| i.as_str().unwrap_or_default().to_owned()).collect(),
        _ => Vec::new(),
    };
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, text)| json!({"object": "embedding", "index": index, "embedding": fake_embedding(text)}))
        .collect();
    let tokens: usize = inputs.iter().map(|t| t.split_whitespace().count()).sum();
    volatile(ResponseTemplate::new(200)).set_body_json(json!({
        "object": "list",
        "data": data,
        "model": body["model"].as_str().unwrap_or("text-embedding-3-small"),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens}
    }))
}
