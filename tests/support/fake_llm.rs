//! A fake LLM upstream that really streams: a hyper 1.x server (HTTP/1.1 and h2c) on
//! `127.0.0.1:0`, on its own thread and runtime, speaking each provider's documented wire format.
//! wiremock cannot do this: it buffers whole bodies.
//!
//! Endpoints (answers are a pure function of the request, so recordings are deterministic):
//!
//! | path | format |
//! |---|---|
//! | `POST /v1/chat/completions` | OpenAI chat; SSE with `stream: true` (tool calls when `tools` is set, a usage chunk with `stream_options.include_usage`, then `data: [DONE]`) |
//! | `POST /openai/deployments/{d}/chat/completions?api-version=…` | Azure OpenAI, same answers; 401 without an `api-key` header, 400 without `api-version` |
//! | `POST /v1/responses` | OpenAI Responses API; typed SSE events with `stream: true` |
//! | `POST /v1/embeddings` | OpenAI embeddings |
//! | `POST /v1/messages` | Anthropic Messages; `event:` lines with `stream: true`, `tool_use` when `tools` is set |
//! | `POST /v1beta/models/{m}:generateContent`, `:streamGenerateContent?alt=sse` | Gemini; 403 without a key (`key` query parameter or `x-goog-api-key`) |
//! | `POST /api/chat`, `POST /api/generate` | Ollama; NDJSON unless `"stream": false` |
//! | `POST /v1/audio/speech` | binary `audio/mpeg` bytes |
//! | `POST /v1/audio/transcriptions` | multipart upload in, JSON out |
//! | `POST /v1/blob` | `{"bytes": n}` in, `n` bytes of `application/octet-stream` out |
//!
//! Request headers steer it: `x-fake-delay-ms` (pause before each event after the first, 5 ms by
//! default), `x-fake-cut-after: n` (send n events and half of the next, then abort the
//! connection), `x-fake-encoding: gzip|deflate|br|zstd` (compress the body whatever the client
//! accepts), `x-fake-sse-retry: ms` (an SSE stream's first event carries `retry: ms`).

use std::convert::Infallible;
use std::io::Write as _;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use http_body_util::{BodyExt as _, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::sync::oneshot;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type FrameStream = Pin<Box<dyn Stream<Item = Result<Frame<Bytes>, BoxError>> + Send>>;
type Body = StreamBody<FrameStream>;

/// The fake server. Dropping it stops it and closes its connections.
pub struct FakeLlm {
    address: SocketAddr,
    received: Arc<AtomicUsize>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeLlm {
    /// Starts the server on its own thread.
    pub fn start() -> FakeLlm {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
        listener.set_nonblocking(true).unwrap_or_else(|e| panic!("nonblocking: {e}"));
        let address = listener.local_addr().unwrap_or_else(|e| panic!("address: {e}"));
        let received = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&received);
        let (shutdown, mut stop) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap_or_else(|e| panic!("runtime: {e}"));
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap_or_else(|e| panic!("listener: {e}"));
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let mut connections = tokio::task::JoinSet::new();
                loop {
                    tokio::select! {
                        _ = &mut stop => break,
                        accepted = listener.accept() => {
                            let Ok((stream, _)) = accepted else { continue };
                            let _ = stream.set_nodelay(true);
                            let builder = builder.clone();
                            let counter = Arc::clone(&counter);
                            connections.spawn(async move {
                                let service = hyper::service::service_fn(move |request| {
                                    counter.fetch_add(1, Ordering::SeqCst);
                                    respond(request)
                                });
                                let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                            });
                        }
                    }
                }
                connections.abort_all();
            });
        });
        FakeLlm { address, received, shutdown: Some(shutdown), thread: Some(thread) }
    }

    /// `http://127.0.0.1:<port>`; OpenAI clients want [`FakeLlm::openai_url`].
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// `http://127.0.0.1:<port>/v1`.
    pub fn openai_url(&self) -> String {
        format!("{}/v1", self.url())
    }

    /// How many requests reached the fake.
    pub fn received(&self) -> usize {
        self.received.load(Ordering::SeqCst)
    }
}

impl Drop for FakeLlm {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// How the request asked the body to be sent.
struct Shape {
    delay: Duration,
    cut_after: Option<usize>,
    encoding: Option<String>,
    sse_retry: Option<u64>,
}

fn header(request: &Request<Incoming>, name: &str) -> Option<String> {
    request.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

async fn respond(request: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let shape = Shape {
        delay: Duration::from_millis(header(&request, "x-fake-delay-ms").and_then(|v| v.parse().ok()).unwrap_or(5)),
        cut_after: header(&request, "x-fake-cut-after").and_then(|v| v.parse().ok()),
        encoding: header(&request, "x-fake-encoding"),
        sse_retry: header(&request, "x-fake-sse-retry").and_then(|v| v.parse().ok()),
    };
    let path = request.uri().path().to_owned();
    let query: Vec<(String, String)> = request
        .uri()
        .query()
        .map(|q| {
            q.split('&')
                .filter_map(|pair| pair.split_once('='))
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
                .collect()
        })
        .unwrap_or_default();
    let has_query = |name: &str| query.iter().any(|(n, v)| n == name && !v.is_empty());
    let api_key = header(&request, "api-key");
    let goog_key = header(&request, "x-goog-api-key");
    let anthropic_ok = header(&request, "x-api-key").is_some() && header(&request, "anthropic-version").is_some();
    let content_type = header(&request, "content-type").unwrap_or_default();
    let bytes = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let streaming = body["stream"] == Value::Bool(true);

    let reply = if path == "/v1/chat/completions" {
        openai_chat(&body, streaming)
    } else if path.starts_with("/openai/deployments/") && path.ends_with("/chat/completions") {
        if api_key.is_none() {
            Reply::json(401, json!({"error": {"code": "401", "message": "Access denied due to missing api-key."}}))
        } else if !has_query("api-version") {
            Reply::json(400, json!({"error": {"code": "404", "message": "api-version is required"}}))
        } else {
            openai_chat(&body, streaming)
        }
    } else if path == "/v1/responses" {
        openai_responses(&body, streaming)
    } else if path == "/v1/embeddings" {
        embeddings(&body)
    } else if path == "/v1/messages" {
        if anthropic_ok {
            anthropic(&body, streaming)
        } else {
            Reply::json(
                401,
                json!({"type": "error", "error": {"type": "authentication_error", "message": "x-api-key and anthropic-version are required"}}),
            )
        }
    } else if path.starts_with("/v1beta/models/") {
        if !has_query("key") && goog_key.is_none() {
            Reply::json(
                403,
                json!({"error": {"code": 403, "message": "Method doesn't allow unregistered callers.", "status": "PERMISSION_DENIED"}}),
            )
        } else if path.ends_with(":streamGenerateContent") && query.iter().any(|(n, v)| n == "alt" && v == "sse") {
            gemini(&body, true)
        } else if path.ends_with(":generateContent") {
            gemini(&body, false)
        } else {
            Reply::json(404, json!({"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}}))
        }
    } else if path == "/api/chat" || path == "/api/generate" {
        let streaming = body["stream"] != Value::Bool(false);
        ollama(&body, path == "/api/chat", streaming)
    } else if path == "/v1/audio/speech" {
        Reply { status: 200, content_type: "audio/mpeg", chunks: vec![Bytes::from(audio_bytes(&body))] }
    } else if path == "/v1/audio/transcriptions" {
        let text = if content_type.starts_with("multipart/form-data") {
            format!("I heard {} bytes of multipart upload.", bytes.len())
        } else {
            "expected a multipart upload".to_owned()
        };
        Reply::json(200, json!({"text": text}))
    } else if path == "/v1/blob" {
        let size = body["bytes"].as_u64().unwrap_or(0) as usize;
        // 64 KiB chunks, as a real server streams a large file.
        let blob: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let chunks = blob.chunks(64 * 1024).map(Bytes::copy_from_slice).collect();
        Reply { status: 200, content_type: "application/octet-stream", chunks }
    } else {
        Reply::json(404, json!({"error": {"message": format!("no route for {path}")}}))
    };
    Ok(reply.into_response(shape))
}

/// A response before it is shaped: a status, a content type and its events (or one chunk).
struct Reply {
    status: u16,
    content_type: &'static str,
    chunks: Vec<Bytes>,
}

impl Reply {
    fn json(status: u16, body: Value) -> Reply {
        Reply { status, content_type: "application/json", chunks: vec![Bytes::from(body.to_string())] }
    }

    fn sse(events: Vec<String>) -> Reply {
        Reply { status: 200, content_type: "text/event-stream", chunks: events.into_iter().map(Bytes::from).collect() }
    }

    fn into_response(self, shape: Shape) -> Response<Body> {
        let mut builder = Response::builder()
            .status(self.status)
            .header("content-type", self.content_type)
            .header("x-request-id", format!("req_{}", std::process::id()));
        let mut chunks = self.chunks;
        if let (Some(retry), "text/event-stream", Some(first)) =
            (shape.sse_retry, self.content_type, chunks.first_mut())
        {
            let mut with_retry = format!("retry: {retry}\n").into_bytes();
            with_retry.extend_from_slice(first);
            *first = Bytes::from(with_retry);
        }
        if let Some(encoding) = &shape.encoding {
            let whole: Vec<u8> = chunks.concat();
            let compressed = compress(encoding, &whole);
            // Sent in three pieces, so that the decoder works across chunk boundaries.
            let third = compressed.len() / 3 + 1;
            chunks = compressed.chunks(third).map(Bytes::copy_from_slice).collect();
            builder = builder.header("content-encoding", encoding.as_str());
        }
        let delay = shape.delay;
        let cut_after = shape.cut_after;
        let frames = futures_util::stream::unfold((chunks.into_iter().enumerate(), false), move |(mut it, cut)| {
            async move {
                if cut {
                    return None;
                }
                let (index, chunk) = it.next()?;
                if index > 0 && !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                if cut_after == Some(index) {
                    // Half an event, then the connection breaks: no final event, no clean end.
                    let half = chunk.slice(..chunk.len() / 2);
                    return Some((
                        vec![Ok(Frame::data(half)), Err::<_, BoxError>("fake upstream cut the stream".into())],
                        (it, true),
                    ));
                }
                Some((vec![Ok(Frame::data(chunk))], (it, false)))
            }
        });
        let frames: FrameStream = Box::pin(futures_util::StreamExt::flat_map(frames, futures_util::stream::iter));
        builder.body(StreamBody::new(frames)).unwrap_or_else(|e| panic!("response: {e}"))
    }
}

fn compress(encoding: &str, bytes: &[u8]) -> Vec<u8> {
    match encoding {
        "gzip" => {
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(bytes).unwrap_or_else(|e| panic!("{e}"));
            encoder.finish().unwrap_or_else(|e| panic!("{e}"))
        }
        // HTTP's `deflate` is the zlib format.
        "deflate" => {
            let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(bytes).unwrap_or_else(|e| panic!("{e}"));
            encoder.finish().unwrap_or_else(|e| panic!("{e}"))
        }
        "br" => {
            let mut out = Vec::new();
            {
                let mut encoder = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
                encoder.write_all(bytes).unwrap_or_else(|e| panic!("{e}"));
            }
            out
        }
        "zstd" => zstd::encode_all(bytes, 3).unwrap_or_else(|e| panic!("{e}")),
        other => panic!("unknown encoding {other}"),
    }
}

/// Deterministic bytes that are not UTF-8, with an MP3 frame header in front.
fn audio_bytes(body: &Value) -> Vec<u8> {
    let text = body["input"].as_str().unwrap_or("silence");
    let mut out = vec![0xFF, 0xFB, 0x90, 0x64];
    out.extend(
        text.bytes().cycle().take(2048).enumerate().map(|(i, b)| b.wrapping_mul(31).wrapping_add(i as u8) | 0x80),
    );
    out
}

fn sse_event(name: Option<&str>, data: &Value) -> String {
    match name {
        Some(name) => format!("event: {name}\ndata: {data}\n\n"),
        None => format!("data: {data}\n\n"),
    }
}

/// The last user message's text, whatever the provider's shape.
fn prompt_of(body: &Value) -> String {
    let from_messages = body["messages"].as_array().and_then(|messages| {
        messages.iter().rev().find(|m| m["role"] == "user").map(|m| match &m["content"] {
            Value::String(text) => text.clone(),
            Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect::<Vec<_>>().join(" "),
            _ => String::new(),
        })
    });
    let from_input = match &body["input"] {
        Value::String(text) => Some(text.clone()),
        Value::Array(items) => items.iter().rev().find_map(|i| i["content"].as_str().map(str::to_owned)),
        _ => None,
    };
    let from_gemini = body["contents"].as_array().and_then(|contents| {
        contents
            .last()
            .map(|c| c["parts"].as_array().into_iter().flatten().filter_map(|p| p["text"].as_str()).collect::<String>())
    });
    from_messages
        .or(from_input)
        .or(from_gemini)
        .or_else(|| body["prompt"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The deterministic answer to a prompt.
pub fn answer_for(prompt: &str) -> String {
    let lower = prompt.to_lowercase();
    if lower.contains("capital of france") {
        "The capital of France is Paris.".to_owned()
    } else if lower.contains("count to") {
        (1..=10).map(|n| n.to_string()).collect::<Vec<_>>().join(", ")
    } else {
        format!("You said: {prompt}")
    }
}

/// The answer in word-sized deltas that join back to it exactly.
pub fn deltas(answer: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for word in answer.split_inclusive(' ') {
        out.push(word.to_owned());
    }
    out
}

/// The weather tool's arguments, and the pieces they stream in.
pub const TOOL_ARGUMENTS: &str = r#"{"city":"Paris","unit":"celsius"}"#;
const TOOL_PIECES: [&str; 3] = [r#"{"city":"#, r#""Paris","#, r#""unit":"celsius"}"#];

fn wants_tool(body: &Value) -> Option<String> {
    let tool = &body["tools"][0];
    tool["function"]["name"].as_str().or_else(|| tool["name"].as_str()).map(str::to_owned)
}

fn tokens(text: &str) -> u64 {
    text.split_whitespace().count() as u64 + 3
}

fn openai_chat(body: &Value, streaming: bool) -> Reply {
    let prompt = prompt_of(body);
    let model = body["model"].as_str().unwrap_or("gpt-4o-mini").to_owned();
    let tool = wants_tool(body);
    let answer = if tool.is_some() { String::new() } else { answer_for(&prompt) };
    let (input, output) = (tokens(&prompt), tokens(&answer));
    let usage = json!({"prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output});
    let finish = if tool.is_some() { "tool_calls" } else { "stop" };
    if !streaming {
        let mut message = json!({"role": "assistant", "content": if tool.is_some() { Value::Null } else { json!(answer) }, "refusal": null});
        if let Some(name) = &tool {
            message["tool_calls"] = json!([{"id": "call_fake1", "type": "function", "function": {"name": name, "arguments": TOOL_ARGUMENTS}}]);
        }
        return Reply::json(
            200,
            json!({
                "id": "chatcmpl-fake1", "object": "chat.completion", "created": 1_764_000_000, "model": model,
                "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
                "usage": usage, "system_fingerprint": "fp_fake"
            }),
        );
    }
    let include_usage = body["stream_options"]["include_usage"] == Value::Bool(true);
    let chunk = |delta: Value, finish: Value| {
        let mut chunk = json!({
            "id": "chatcmpl-fake1", "object": "chat.completion.chunk", "created": 1_764_000_000, "model": model,
            "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]
        });
        if include_usage {
            chunk["usage"] = Value::Null;
        }
        sse_event(None, &chunk)
    };
    let mut events = vec![chunk(json!({"role": "assistant", "content": "", "refusal": null}), Value::Null)];
    match &tool {
        Some(name) => {
            events.push(chunk(
                json!({"tool_calls": [{"index": 0, "id": "call_fake1", "type": "function", "function": {"name": name, "arguments": ""}}]}),
                Value::Null,
            ));
            for piece in TOOL_PIECES {
                events
                    .push(chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}), Value::Null));
            }
        }
        None => {
            for delta in deltas(&answer) {
                events.push(chunk(json!({"content": delta}), Value::Null));
            }
        }
    }
    events.push(chunk(json!({}), json!(finish)));
    if include_usage {
        events.push(sse_event(
            None,
            &json!({
                "id": "chatcmpl-fake1", "object": "chat.completion.chunk", "created": 1_764_000_000, "model": model,
                "system_fingerprint": "fp_fake", "choices": [], "usage": usage
            }),
        ));
    }
    events.push("data: [DONE]\n\n".to_owned());
    Reply::sse(events)
}

fn openai_responses(body: &Value, streaming: bool) -> Reply {
    let prompt = prompt_of(body);
    let model = body["model"].as_str().unwrap_or("gpt-4o-mini").to_owned();
    let tool = wants_tool(body);
    let answer = answer_for(&prompt);
    let (input, output) = (tokens(&prompt), tokens(&answer));
    let message = json!({"id": "msg_fake1", "type": "message", "status": "completed", "role": "assistant",
        "content": [{"type": "output_text", "text": answer, "annotations": []}]});
    let call = tool.as_ref().map(|name| {
        json!({"id": "fc_fake1", "type": "function_call", "status": "completed",
        "call_id": "call_fake1", "name": name, "arguments": TOOL_ARGUMENTS})
    });
    let mut output_items = vec![message.clone()];
    output_items.extend(call.clone());
    let response = |status: &str, output_items: Value, usage: Value| {
        json!({
            "id": "resp_fake1", "object": "response", "created_at": 1_764_000_000, "status": status, "model": model,
            "output": output_items, "usage": usage
        })
    };
    let usage = json!({"input_tokens": input, "output_tokens": output, "total_tokens": input + output});
    if !streaming {
        return Reply::json(200, response("completed", json!(output_items), usage));
    }
    let mut sequence = 0;
    let mut events = Vec::new();
    let mut push = |kind: &str, mut data: Value| {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(sequence);
        sequence += 1;
        events.push(sse_event(Some(kind), &data));
    };
    push("response.created", json!({"response": response("in_progress", json!([]), Value::Null)}));
    push("response.in_progress", json!({"response": response("in_progress", json!([]), Value::Null)}));
    push(
        "response.output_item.added",
        json!({"output_index": 0, "item": {"id": "msg_fake1", "type": "message", "status": "in_progress", "role": "assistant", "content": []}}),
    );
    push(
        "response.content_part.added",
        json!({"item_id": "msg_fake1", "output_index": 0, "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}}),
    );
    for delta in deltas(&answer) {
        push(
            "response.output_text.delta",
            json!({"item_id": "msg_fake1", "output_index": 0, "content_index": 0, "delta": delta}),
        );
    }
    push(
        "response.output_text.done",
        json!({"item_id": "msg_fake1", "output_index": 0, "content_index": 0, "text": answer}),
    );
    push(
        "response.content_part.done",
        json!({"item_id": "msg_fake1", "output_index": 0, "content_index": 0, "part": message["content"][0]}),
    );
    push("response.output_item.done", json!({"output_index": 0, "item": message}));
    if let (Some(name), Some(call)) = (&tool, &call) {
        push(
            "response.output_item.added",
            json!({"output_index": 1, "item": {"id": "fc_fake1", "type": "function_call", "status": "in_progress", "call_id": "call_fake1", "name": name, "arguments": ""}}),
        );
        for piece in TOOL_PIECES {
            push(
                "response.function_call_arguments.delta",
                json!({"item_id": "fc_fake1", "output_index": 1, "delta": piece}),
            );
        }
        push(
            "response.function_call_arguments.done",
            json!({"item_id": "fc_fake1", "output_index": 1, "arguments": TOOL_ARGUMENTS}),
        );
        push("response.output_item.done", json!({"output_index": 1, "item": call}));
    }
    push("response.completed", json!({"response": response("completed", json!(output_items), usage)}));
    Reply::sse(events)
}

fn embeddings(body: &Value) -> Reply {
    let inputs: Vec<String> = match &body["input"] {
        Value::String(text) => vec![text.clone()],
        Value::Array(items) => items.iter().map(|i| i.as_str().unwrap_or_default().to_owned()).collect(),
        _ => Vec::new(),
    };
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, text)| json!({"object": "embedding", "index": index, "embedding": super::fake_openai::fake_embedding(text)}))
        .collect();
    let used: u64 = inputs.iter().map(|t| t.split_whitespace().count() as u64).sum();
    Reply::json(
        200,
        json!({"object": "list", "data": data, "model": body["model"], "usage": {"prompt_tokens": used, "total_tokens": used}}),
    )
}

fn anthropic(body: &Value, streaming: bool) -> Reply {
    let prompt = prompt_of(body);
    let model = body["model"].as_str().unwrap_or("claude-sonnet-4-5").to_owned();
    let tool = wants_tool(body);
    let answer = answer_for(&prompt);
    let (input, output) = (tokens(&prompt), tokens(&answer));
    let stop = if tool.is_some() { "tool_use" } else { "end_turn" };
    if !streaming {
        let mut content = vec![json!({"type": "text", "text": answer})];
        if let Some(name) = &tool {
            content.push(json!({"type": "tool_use", "id": "toolu_fake1", "name": name, "input": {"city": "Paris", "unit": "celsius"}}));
        }
        return Reply::json(
            200,
            json!({"id": "msg_fake1", "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": stop, "stop_sequence": null, "usage": {"input_tokens": input, "output_tokens": output}}),
        );
    }
    let mut events = Vec::new();
    let mut push = |kind: &str, mut data: Value| {
        data["type"] = json!(kind);
        events.push(sse_event(Some(kind), &data));
    };
    push(
        "message_start",
        json!({"message": {"id": "msg_fake1", "type": "message", "role": "assistant", "model": model,
        "content": [], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": input, "output_tokens": 1}}}),
    );
    push("content_block_start", json!({"index": 0, "content_block": {"type": "text", "text": ""}}));
    push("ping", json!({}));
    for delta in deltas(&answer) {
        push("content_block_delta", json!({"index": 0, "delta": {"type": "text_delta", "text": delta}}));
    }
    push("content_block_stop", json!({"index": 0}));
    if let Some(name) = &tool {
        push(
            "content_block_start",
            json!({"index": 1, "content_block": {"type": "tool_use", "id": "toolu_fake1", "name": name, "input": {}}}),
        );
        for piece in TOOL_PIECES {
            push(
                "content_block_delta",
                json!({"index": 1, "delta": {"type": "input_json_delta", "partial_json": piece}}),
            );
        }
        push("content_block_stop", json!({"index": 1}));
    }
    push(
        "message_delta",
        json!({"delta": {"stop_reason": stop, "stop_sequence": null}, "usage": {"output_tokens": output}}),
    );
    push("message_stop", json!({}));
    Reply::sse(events)
}

fn gemini(body: &Value, streaming: bool) -> Reply {
    let prompt = prompt_of(body);
    let answer = answer_for(&prompt);
    let (input, output) = (tokens(&prompt), tokens(&answer));
    let usage = json!({"promptTokenCount": input, "candidatesTokenCount": output, "totalTokenCount": input + output});
    let chunk = |text: &str, last: bool| {
        let mut candidate = json!({"content": {"parts": [{"text": text}], "role": "model"}, "index": 0});
        if last {
            candidate["finishReason"] = json!("STOP");
        }
        let mut chunk = json!({"candidates": [candidate], "modelVersion": "gemini-2.0-flash", "responseId": "fake1"});
        if last {
            chunk["usageMetadata"] = usage.clone();
        }
        chunk
    };
    if !streaming {
        return Reply::json(200, chunk(&answer, true));
    }
    let pieces = deltas(&answer);
    let events =
        pieces.iter().enumerate().map(|(i, piece)| sse_event(None, &chunk(piece, i + 1 == pieces.len()))).collect();
    Reply::sse(events)
}

fn ollama(body: &Value, chat: bool, streaming: bool) -> Reply {
    let prompt = prompt_of(body);
    let model = body["model"].as_str().unwrap_or("llama3.2").to_owned();
    let answer = answer_for(&prompt);
    let line = |text: &str, done: bool| {
        let mut line = json!({"model": model, "created_at": "2026-01-01T00:00:00Z", "done": done});
        if chat {
            line["message"] = json!({"role": "assistant", "content": text});
        } else {
            line["response"] = json!(text);
        }
        if done {
            line["done_reason"] = json!("stop");
            line["prompt_eval_count"] = json!(tokens(&prompt));
            line["eval_count"] = json!(tokens(&answer));
            line["total_duration"] = json!(123_456);
        }
        line
    };
    if !streaming {
        return Reply::json(200, line(&answer, true));
    }
    let mut lines: Vec<Bytes> = deltas(&answer).iter().map(|d| Bytes::from(format!("{}\n", line(d, false)))).collect();
    lines.push(Bytes::from(format!("{}\n", line("", true))));
    Reply { status: 200, content_type: "application/x-ndjson", chunks: lines }
}
