//! Streaming and every major provider's wire format, recorded and replayed faithfully: one
//! record-then-strict-replay test per format against a fake upstream that really streams
//! (tests/support/fake_llm.rs), with the upstream gone at replay time.

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt as _;
use serde_json::{json, Value};
use support::fake_llm::{answer_for, FakeLlm, TOOL_ARGUMENTS};
use support::{cassette_in, read, scratch};
use traceforge::provider::{Answer, WireFormat};
use traceforge::stream::{parse_ndjson, parse_sse, Pacing};
use traceforge::{Mode, Recorder, RecorderBuilder};

/// A base URL where nothing listens, for replay runs that must never reach an upstream.
const NOWHERE: &str = "http://127.0.0.1:9";

/// The pause the fake makes between events while recording: long enough to tell a client that
/// gets each event as it comes from one that waits for the whole body.
const DELAY_MS: u64 = 200;

fn start(builder: RecorderBuilder) -> Recorder {
    builder.start().unwrap_or_else(|e| panic!("recorder did not start: {e}"))
}

async fn finish(recorder: Recorder) -> traceforge::Report {
    recorder.finish().await.unwrap_or_else(|e| panic!("finish failed: {e}"))
}

/// One call: the path below the upstream (with its query) and what to send.
#[derive(Clone)]
struct Call {
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Value,
}

impl Call {
    fn new(path: &str, body: Value) -> Call {
        Call { path: path.to_owned(), headers: Vec::new(), body }
    }

    fn header(mut self, name: &'static str, value: &str) -> Call {
        self.headers.push((name, value.to_owned()));
        self
    }
}

/// What the client saw, chunk by chunk, with timings.
struct Seen {
    status: u16,
    headers: reqwest::header::HeaderMap,
    version: reqwest::Version,
    chunks: Vec<Bytes>,
    error: Option<String>,
    first_chunk: Duration,
    total: Duration,
}

impl Seen {
    fn bytes(&self) -> Vec<u8> {
        self.chunks.concat()
    }

    fn outcome(&self) -> &str {
        self.headers.get(traceforge::OUTCOME_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
}

fn client(http2: bool) -> reqwest::Client {
    let builder = reqwest::Client::builder();
    let builder = if http2 { builder.http2_prior_knowledge() } else { builder.http1_only() };
    builder.build().unwrap_or_else(|e| panic!("client: {e}"))
}

async fn send(client: &reqwest::Client, base: &str, call: &Call) -> Seen {
    let started = Instant::now();
    let mut request = client.post(format!("{base}{}", call.path)).json(&call.body);
    for (name, value) in &call.headers {
        request = request.header(*name, value);
    }
    let response = request.send().await.unwrap_or_else(|e| panic!("request failed: {e}"));
    let (status, headers, version) = (response.status().as_u16(), response.headers().clone(), response.version());
    let mut stream = response.bytes_stream();
    let (mut chunks, mut error, mut first_chunk) = (Vec::new(), None, None);
    while let Some(next) = stream.next().await {
        match next {
            Ok(chunk) => {
                first_chunk.get_or_insert_with(|| started.elapsed());
                chunks.push(chunk);
            }
            Err(e) => {
                error = Some(format!("{e:?}"));
                break;
            }
        }
    }
    Seen {
        status,
        headers,
        version,
        chunks,
        error,
        first_chunk: first_chunk.unwrap_or_default(),
        total: started.elapsed(),
    }
}

/// A stored response body of the cassette at `path`.
fn stored_body(path: &std::path::Path, response: usize) -> Value {
    let file: Value = serde_json::from_str(&read(path)).unwrap_or(Value::Null);
    file["interactions"][0]["responses"][response]["body"].clone()
}

/// The outcome of recording one call and replaying it strictly with the upstream gone.
struct Run {
    recorded: Seen,
    replayed: Seen,
    recorded_answers: Vec<Answer>,
    replayed_answers: Vec<Answer>,
    cassette: String,
    body: Value,
}

/// Records `call` against the fake (mounted as upstream `name` at `fake.url() + prefix`), stops
/// the fake, and replays it strictly.
async fn record_and_replay(name: &str, prefix: &str, call: Call, http2: bool) -> Run {
    let dir = scratch();
    let path = cassette_in(&dir, name);
    let fake = FakeLlm::start();
    let client = client(http2);
    let upstream = format!("{}{prefix}", fake.url());
    let rec = start(Recorder::builder().cassette(&path).upstream(name, &upstream).force_mode(Mode::Record));
    let recorded = send(&client, &rec.url(name), &call.clone().header("x-fake-delay-ms", &DELAY_MS.to_string())).await;
    let recorded_answers = rec.answers();
    assert_eq!(finish(rec).await.recorded, 1);
    assert_eq!(recorded.outcome(), "recorded");
    drop(fake);

    let rec = start(
        Recorder::builder().cassette(&path).upstream(name, &format!("{NOWHERE}{prefix}")).force_mode(Mode::Strict),
    );
    let replayed = send(&client, &rec.url(name), &call).await;
    let replayed_answers = rec.answers();
    assert_eq!(finish(rec).await.hits, 1);
    assert_eq!(replayed.outcome(), "hit");
    let expected_version = if http2 { reqwest::Version::HTTP_2 } else { reqwest::Version::HTTP_11 };
    assert_eq!((recorded.version, replayed.version), (expected_version, expected_version));
    assert_eq!(recorded.status, replayed.status);
    let body = stored_body(&path, 0);
    Run { recorded, replayed, recorded_answers, replayed_answers, cassette: read(&path), body }
}

/// Streamed bodies: the replay yields exactly the recorded events, in order, one chunk each,
/// as many chunks as the client got while recording; and while recording the client got the
/// first event long before the upstream had finished.
fn assert_faithful_sse(run: &Run) -> Vec<traceforge::stream::SseEvent> {
    let (recorded, leftover) = parse_sse(&run.recorded.bytes());
    assert!(!leftover && !recorded.is_empty());
    let (replayed, _) = parse_sse(&run.replayed.bytes());
    assert_eq!(replayed, recorded, "the replay must yield exactly the recorded events");
    assert_eq!(run.body["kind"], "sse");
    assert_eq!(run.body["events"].as_array().map(Vec::len), Some(recorded.len()));
    assert_chunks(run, recorded.len());
    for chunk in run.replayed.chunks.iter().filter(|c| !c.is_empty()) {
        assert_eq!(parse_sse(chunk).0.len(), 1, "a chunk holds exactly one event: {chunk:?}");
    }
    assert_streamed_through(&run.recorded, recorded.len());
    recorded
}

/// One chunk per event, on replay as while recording. Over HTTP/2 the body ends with an empty
/// DATA frame (END_STREAM), which reqwest hands over as an empty chunk, in both runs alike.
fn assert_chunks(run: &Run, events: usize) {
    let non_empty = |seen: &Seen| seen.chunks.iter().filter(|c| !c.is_empty()).count();
    assert_eq!(non_empty(&run.replayed), events, "one chunk per event on replay");
    assert_eq!(non_empty(&run.recorded), events, "one chunk per event while recording");
    assert_eq!(run.replayed.chunks.len(), run.recorded.chunks.len(), "as many chunks as while recording");
}

fn assert_streamed_through(seen: &Seen, events: usize) {
    let upstream_time = Duration::from_millis(DELAY_MS * (events as u64 - 1));
    assert!(seen.total >= upstream_time, "total {:?} < {upstream_time:?}", seen.total);
    // The first event comes at once and the rest 200 ms apart: a client that got the body only
    // when the upstream finished would see its first chunk after all of them.
    assert!(
        seen.first_chunk * 4 < seen.total,
        "the client waited for the body: first chunk after {:?}, all after {:?}",
        seen.first_chunk,
        seen.total
    );
}

fn assert_answers(run: &Run, expected: &Answer) {
    assert_eq!(run.recorded_answers.len(), 1);
    assert_eq!(run.replayed_answers, run.recorded_answers);
    let answer = &run.recorded_answers[0];
    assert_eq!(
        (answer.format, &answer.text, &answer.tool_calls, &answer.finish_reason, answer.complete),
        (expected.format, &expected.text, &expected.tool_calls, &expected.finish_reason, true)
    );
    if expected.usage.is_some() {
        assert!(answer.usage.is_some_and(|u| u.input_tokens.is_some() && u.output_tokens.is_some()), "{answer:?}");
    } else {
        assert_eq!(answer.usage, None, "OpenAI streams report usage only with include_usage");
    }
}

fn expected(format: WireFormat, text: &str, tool: Option<(&str, &str)>, finish: &str) -> Answer {
    Answer {
        format,
        text: text.to_owned(),
        tool_calls: tool
            .map(|(id, name)| {
                vec![traceforge::provider::ToolCall {
                    id: Some(id.to_owned()),
                    name: name.to_owned(),
                    arguments: TOOL_ARGUMENTS.to_owned(),
                }]
            })
            .unwrap_or_default(),
        finish_reason: Some(finish.to_owned()),
        usage: Some(traceforge::provider::Usage::default()),
        complete: true,
    }
}

const PARIS: &str = "What is the capital of France?";

fn openai_chat(stream: bool) -> Value {
    json!({"model": "gpt-4o-mini", "stream": stream, "messages": [{"role": "user", "content": PARIS}]})
}

fn weather_tool() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"type": "string"}}}}}])
}

#[tokio::test]
async fn openai_chat_stream_with_usage_chunk_and_done() {
    let mut body = openai_chat(true);
    body["stream_options"] = json!({"include_usage": true});
    let call =
        Call::new("/chat/completions", body).header("authorization", "Bearer sk-proj-STREAMSECRETSTREAMSECRET12");
    let run = record_and_replay("openai", "/v1", call, false).await;
    let events = assert_faithful_sse(&run);
    assert_eq!(events.last().and_then(|e| e.text.as_deref()), Some("[DONE]"));
    let usage_chunk = &events[events.len() - 2];
    assert_eq!(usage_chunk.data.as_ref().map(|d| d["choices"].clone()), Some(json!([])));
    assert_eq!(run.body["assembled"], json!({"text": answer_for(PARIS)}));
    assert!(!run.cassette.contains("STREAMSECRET"));
    assert!(!run.cassette.contains("offsets_ms"), "offsets are recorded only when asked for");
    assert_answers(&run, &expected(WireFormat::OpenAiChat, &answer_for(PARIS), None, "stop"));
}

#[tokio::test]
async fn openai_chat_stream_of_tool_calls() {
    let mut body = openai_chat(true);
    body["tools"] = weather_tool();
    let run = record_and_replay("openai", "/v1", Call::new("/chat/completions", body), false).await;
    assert_faithful_sse(&run);
    assert_eq!(
        run.body["assembled"],
        json!({"tool_calls": [{"id": "call_fake1", "name": "get_weather", "arguments": TOOL_ARGUMENTS}]})
    );
    let without_usage = Answer {
        usage: None,
        ..expected(WireFormat::OpenAiChat, "", Some(("call_fake1", "get_weather")), "tool_calls")
    };
    assert_answers(&run, &without_usage);
    let answer = &run.replayed_answers[0];
    assert_eq!(
        answer.tool_call("get_weather").and_then(|c| c.arguments_json()),
        Some(json!({"city": "Paris", "unit": "celsius"}))
    );
}

#[tokio::test]
async fn openai_chat_not_streamed_with_tool_calls() {
    let mut body = openai_chat(false);
    body["tools"] = weather_tool();
    let run = record_and_replay("openai", "/v1", Call::new("/chat/completions", body), false).await;
    assert_eq!(run.body["kind"], "json");
    let recorded: Value = serde_json::from_slice(&run.recorded.bytes()).unwrap_or(Value::Null);
    let replayed: Value = serde_json::from_slice(&run.replayed.bytes()).unwrap_or(Value::Null);
    assert_eq!(replayed, recorded);
    assert_answers(&run, &expected(WireFormat::OpenAiChat, "", Some(("call_fake1", "get_weather")), "tool_calls"));
    // The same answer, read from the live body in one call.
    assert_eq!(Answer::parse(Some("application/json"), &run.recorded.bytes()), run.recorded_answers[0]);
}

#[tokio::test]
async fn openai_responses_api_typed_events_over_http2() {
    let body = json!({"model": "gpt-4o-mini", "stream": true, "input": PARIS, "tools": [{"type": "function", "name": "get_weather"}]});
    let run = record_and_replay("openai", "/v1", Call::new("/responses", body), true).await;
    let events = assert_faithful_sse(&run);
    let names: Vec<&str> = events.iter().filter_map(|e| e.event.as_deref()).collect();
    for expected in [
        "response.created",
        "response.output_text.delta",
        "response.function_call_arguments.delta",
        "response.completed",
    ] {
        assert!(names.contains(&expected), "missing {expected} in {names:?}");
    }
    assert_eq!(names.first(), Some(&"response.created"));
    assert_eq!(names.last(), Some(&"response.completed"));
    assert_answers(
        &run,
        &expected(WireFormat::OpenAiResponses, &answer_for(PARIS), Some(("call_fake1", "get_weather")), "completed"),
    );
}

#[tokio::test]
async fn openai_embeddings() {
    let body = json!({"model": "text-embedding-3-small", "input": ["Rust ownership", "borrowing"]});
    let run = record_and_replay("openai", "/v1", Call::new("/embeddings", body), false).await;
    assert_eq!(run.body["kind"], "json");
    assert_eq!(run.body["json"]["data"].as_array().map(Vec::len), Some(2));
    let json = |seen: &Seen| serde_json::from_slice::<Value>(&seen.bytes()).unwrap_or(Value::Null);
    assert_eq!(json(&run.replayed), json(&run.recorded));
    let answer = &run.replayed_answers[0];
    assert_eq!((answer.format, answer.usage.and_then(|u| u.input_tokens)), (WireFormat::OpenAiEmbeddings, Some(3)));
}

#[tokio::test]
async fn anthropic_messages_stream_with_tool_use_over_http2() {
    let body = json!({"model": "claude-sonnet-4-5", "max_tokens": 256, "stream": true,
        "messages": [{"role": "user", "content": PARIS}],
        "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}]});
    let call = Call::new("/v1/messages", body)
        .header("x-api-key", "sk-ant-api03-ANTHROPICSECRETANTHROPICSECRET")
        .header("anthropic-version", "2023-06-01");
    let run = record_and_replay("anthropic", "", call, true).await;
    let events = assert_faithful_sse(&run);
    let names: Vec<&str> = events.iter().filter_map(|e| e.event.as_deref()).collect();
    for expected in [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ] {
        assert!(names.contains(&expected), "missing {expected} in {names:?}");
    }
    let kinds: Vec<&str> = events.iter().filter_map(|e| e.data.as_ref()?["delta"]["type"].as_str()).collect();
    assert!(kinds.contains(&"text_delta") && kinds.contains(&"input_json_delta"), "{kinds:?}");
    assert!(!run.cassette.contains("ANTHROPICSECRET"));
    assert!(run.cassette.contains("\"anthropic-version\": \"2023-06-01\""));
    assert_answers(
        &run,
        &expected(WireFormat::Anthropic, &answer_for(PARIS), Some(("toolu_fake1", "get_weather")), "tool_use"),
    );
}

#[tokio::test]
async fn anthropic_messages_not_streamed() {
    let body =
        json!({"model": "claude-sonnet-4-5", "max_tokens": 256, "messages": [{"role": "user", "content": PARIS}]});
    let call = Call::new("/v1/messages", body).header("x-api-key", "k").header("anthropic-version", "2023-06-01");
    let run = record_and_replay("anthropic", "", call, false).await;
    assert_eq!(run.body["kind"], "json");
    assert_answers(&run, &expected(WireFormat::Anthropic, &answer_for(PARIS), None, "end_turn"));
}

const GEMINI_KEY: &str = "AIzaSyFAKEFAKEFAKEFAKEFAKEFAKEFAKE12345";

fn gemini_body() -> Value {
    json!({"contents": [{"role": "user", "parts": [{"text": PARIS}]}]})
}

#[tokio::test]
async fn gemini_stream_generate_content_with_the_key_in_the_query() {
    let path = format!("/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse&key={GEMINI_KEY}");
    let run = record_and_replay("gemini", "", Call::new(&path, gemini_body()), false).await;
    assert_faithful_sse(&run);
    assert!(!run.cassette.contains("AIzaSy"), "the key must never be stored:\n{}", run.cassette);
    let file: Value = serde_json::from_str(&run.cassette).unwrap_or(Value::Null);
    assert_eq!(file["interactions"][0]["request"]["query"], json!({"alt": ["sse"]}));
    assert_answers(&run, &expected(WireFormat::Gemini, &answer_for(PARIS), None, "STOP"));
}

#[tokio::test]
async fn gemini_generate_content_with_the_key_in_a_header() {
    let call = Call::new("/v1beta/models/gemini-2.0-flash:generateContent", gemini_body())
        .header("x-goog-api-key", GEMINI_KEY);
    let run = record_and_replay("gemini", "", call, false).await;
    assert_eq!(run.body["kind"], "json");
    assert!(!run.cassette.contains("AIzaSy") && !run.cassette.contains("x-goog-api-key"));
    assert_answers(&run, &expected(WireFormat::Gemini, &answer_for(PARIS), None, "STOP"));
}

fn assert_faithful_ndjson(run: &Run) {
    let (recorded, leftover) = parse_ndjson(&run.recorded.bytes());
    assert!(!leftover && !recorded.is_empty());
    assert_eq!(parse_ndjson(&run.replayed.bytes()).0, recorded);
    assert_eq!(run.body["kind"], "ndjson");
    assert_chunks(run, recorded.len());
    assert_eq!(recorded.last().map(|l| l["done"].clone()), Some(json!(true)));
    assert_eq!(run.replayed.headers.get("content-type").map(|v| v.as_bytes()), Some(&b"application/x-ndjson"[..]));
    assert_streamed_through(&run.recorded, recorded.len());
}

#[tokio::test]
async fn ollama_chat_ndjson() {
    let body = json!({"model": "llama3.2", "messages": [{"role": "user", "content": PARIS}]});
    let run = record_and_replay("ollama", "", Call::new("/api/chat", body), false).await;
    assert_faithful_ndjson(&run);
    assert_eq!(run.body["assembled"], json!({"text": answer_for(PARIS)}));
    assert_answers(&run, &expected(WireFormat::Ollama, &answer_for(PARIS), None, "stop"));
}

#[tokio::test]
async fn ollama_generate_ndjson_over_http2() {
    let body = json!({"model": "llama3.2", "prompt": "Count to ten."});
    let run = record_and_replay("ollama", "", Call::new("/api/generate", body), true).await;
    assert_faithful_ndjson(&run);
    assert_answers(&run, &expected(WireFormat::Ollama, &answer_for("count to ten"), None, "stop"));
}

#[tokio::test]
async fn azure_openai_deployment_path_with_the_api_key_header() {
    let call = Call::new("/deployments/gpt-4o/chat/completions?api-version=2024-10-21", openai_chat(true))
        .header("api-key", "AZURESECRETAZURESECRET0123456789");
    let run = record_and_replay("azure", "/openai", call, false).await;
    assert_eq!(run.recorded.status, 200, "the fake needs the api-key header to be forwarded");
    assert_faithful_sse(&run);
    assert!(!run.cassette.contains("AZURESECRET"));
    let file: Value = serde_json::from_str(&run.cassette).unwrap_or(Value::Null);
    let request = &file["interactions"][0]["request"];
    assert_eq!(
        (request["path"].as_str(), request["upstream"].as_str()),
        (Some("/deployments/gpt-4o/chat/completions"), Some("azure"))
    );
    assert_eq!(request["query"], json!({"api-version": ["2024-10-21"]}));
    assert_answers(&run, &Answer { usage: None, ..expected(WireFormat::OpenAiChat, &answer_for(PARIS), None, "stop") });
}

#[tokio::test]
async fn a_stream_cut_off_mid_way_fails_the_client_in_record_and_in_replay() {
    for http2 in [false, true] {
        let call = Call::new("/chat/completions", openai_chat(true)).header("x-fake-cut-after", "3");
        let dir = scratch();
        let path = cassette_in(&dir, "cut");
        let fake = FakeLlm::start();
        let client = client(http2);
        let rec =
            start(Recorder::builder().cassette(&path).upstream("openai", &fake.openai_url()).force_mode(Mode::Record));
        let recorded = send(&client, &rec.url("openai"), &call).await;
        let answers = rec.answers();
        finish(rec).await;
        drop(fake);
        assert!(recorded.error.is_some(), "http2={http2}: the client must see the cut while recording");
        let body = stored_body(&path, 0);
        assert_eq!(body["complete"], json!(false));
        assert_eq!(body["events"].as_array().map(Vec::len), Some(3));
        assert!(!answers[0].complete);

        let rec = start(Recorder::builder().cassette(&path).upstream("openai", NOWHERE).force_mode(Mode::Strict));
        let replayed = send(&client, &rec.url("openai"), &call).await;
        finish(rec).await;
        assert!(replayed.error.is_some(), "http2={http2}: the client must see the cut on replay");
        assert_eq!(replayed.chunks.len(), 3);
        assert_eq!(parse_sse(&replayed.bytes()).0, parse_sse(&recorded.bytes()).0);
    }
}

#[tokio::test]
async fn async_openai_create_stream_records_and_replays() {
    use async_openai::config::OpenAIConfig;
    use async_openai::types::chat::{
        ChatCompletionRequestUserMessageArgs, ChatCompletionStreamOptions, CreateChatCompletionRequestArgs,
    };

    async fn run(base: String) -> (Vec<String>, Option<u32>) {
        let client = async_openai::Client::with_config(
            OpenAIConfig::new().with_api_base(base).with_api_key("sk-test-not-a-key"),
        );
        let message =
            ChatCompletionRequestUserMessageArgs::default().content(PARIS).build().unwrap_or_else(|e| panic!("{e}"));
        let request = CreateChatCompletionRequestArgs::default()
            .model("gpt-4o-mini")
            .messages(vec![message.into()])
            .stream(true)
            .stream_options(ChatCompletionStreamOptions { include_usage: Some(true), include_obfuscation: None })
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let mut stream = client.chat().create_stream(request).await.unwrap_or_else(|e| panic!("create_stream: {e}"));
        let (mut deltas, mut usage) = (Vec::new(), None);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.unwrap_or_else(|e| panic!("stream: {e}"));
            if let Some(text) = chunk.choices.first().and_then(|c| c.delta.content.clone()) {
                deltas.push(text);
            }
            if let Some(u) = chunk.usage {
                usage = Some(u.total_tokens);
            }
        }
        (deltas, usage)
    }

    let dir = scratch();
    let path = cassette_in(&dir, "sdk-stream");
    let fake = FakeLlm::start();
    let rec =
        start(Recorder::builder().cassette(&path).upstream("openai", &fake.openai_url()).force_mode(Mode::Record));
    let recorded = run(rec.url("openai")).await;
    finish(rec).await;
    drop(fake);
    assert_eq!(recorded.0.concat(), answer_for(PARIS));
    assert!(recorded.1.is_some(), "the usage chunk reaches the SDK");

    let rec = start(Recorder::builder().cassette(&path).upstream("openai", NOWHERE).force_mode(Mode::Strict));
    let replayed = run(rec.url("openai")).await;
    let answer = rec.last_answer().unwrap_or_else(|| panic!("no answer"));
    finish(rec).await;
    assert_eq!(replayed, recorded);
    assert_eq!(answer.text, answer_for(PARIS));
    assert_eq!(answer.usage.and_then(|u| u.total_tokens), recorded.1.map(u64::from));
}

/// Every event of an SSE response, as the `eventsource-stream` client reads them.
async fn client_events(request: reqwest::RequestBuilder) -> Vec<eventsource_stream::Event> {
    use eventsource_stream::Eventsource as _;
    let response = request.send().await.unwrap_or_else(|e| panic!("{e}"));
    let mut stream = response.bytes_stream().eventsource();
    let mut out = Vec::new();
    while let Some(event) = stream.next().await {
        out.push(event.unwrap_or_else(|e| panic!("sse: {e}")));
    }
    out
}

/// What `client` sees through upstream `name` (the fake at `fake.url() + prefix`) while
/// recording, then in a strict replay with the fake gone; and the stored response body.
async fn seen_recording_and_replaying<T, Fut>(name: &str, prefix: &str, client: impl Fn(String) -> Fut) -> (T, T, Value)
where
    Fut: std::future::Future<Output = T>,
{
    let dir = scratch();
    let path = cassette_in(&dir, name);
    let fake = FakeLlm::start();
    let upstream = format!("{}{prefix}", fake.url());
    let rec = start(Recorder::builder().cassette(&path).upstream(name, &upstream).force_mode(Mode::Record));
    let recorded = client(rec.url(name)).await;
    finish(rec).await;
    drop(fake);
    let rec = start(Recorder::builder().cassette(&path).upstream(name, NOWHERE).force_mode(Mode::Strict));
    let replayed = client(rec.url(name)).await;
    assert_eq!(finish(rec).await.hits, 1);
    (recorded, replayed, stored_body(&path, 0))
}

#[tokio::test]
async fn raw_reqwest_with_an_sse_parser_sees_the_same_events() {
    let events = |base: String| async move {
        let body = json!({"model": "claude-sonnet-4-5", "max_tokens": 64, "stream": true, "messages": [{"role": "user", "content": PARIS}]});
        let request = reqwest::Client::new()
            .post(format!("{base}/v1/messages"))
            .header("x-api-key", "k")
            .header("anthropic-version", "2023-06-01")
            .json(&body);
        client_events(request).await.into_iter().map(|event| (event.event, event.data)).collect::<Vec<_>>()
    };
    let (recorded, replayed, _) = seen_recording_and_replaying("anthropic", "", events).await;
    assert_eq!(recorded.first().map(|e| e.0.as_str()), Some("message_start"));
    assert_eq!(recorded.last().map(|e| e.0.as_str()), Some("message_stop"));
    // Event names and payloads as JSON: the replay writes JSON compactly, as the fake does.
    let parse = |events: &[(String, String)]| -> Vec<(String, Value)> {
        events.iter().map(|(name, data)| (name.clone(), serde_json::from_str(data).unwrap_or(Value::Null))).collect()
    };
    assert_eq!(parse(&replayed), parse(&recorded));
}

#[tokio::test]
async fn an_sse_retry_field_is_stored_and_replayed() {
    // Each event's `retry` and data, as an SSE client reads them.
    let events = |base: String| async move {
        let request = reqwest::Client::new()
            .post(format!("{base}/chat/completions"))
            .header("x-fake-sse-retry", "2500")
            .header("x-fake-delay-ms", "0")
            .json(&openai_chat(true));
        client_events(request).await.into_iter().map(|event| (event.retry, event.data)).collect::<Vec<_>>()
    };
    let (recorded, replayed, stored) = seen_recording_and_replaying("openai", "/v1", events).await;
    let retries: Vec<Option<Duration>> = recorded.iter().map(|(retry, _)| *retry).collect();
    assert!(retries.len() > 2, "{recorded:?}");
    assert_eq!(retries[0], Some(Duration::from_millis(2500)));
    assert!(retries[1..].iter().all(Option::is_none), "{retries:?}");
    assert_eq!(stored["events"][0]["retry"], 2500, "{stored}");
    assert_eq!(stored["events"][1].get("retry"), None, "{stored}");
    assert_eq!(replayed, recorded, "the replay must carry the same retry and data");
}

#[tokio::test]
async fn compressed_bodies_are_stored_decoded_and_replayed_as_identity() {
    for encoding in ["gzip", "deflate", "br", "zstd"] {
        for stream in [false, true] {
            let dir = scratch();
            let path = cassette_in(&dir, encoding);
            let fake = FakeLlm::start();
            let call = Call::new("/chat/completions", openai_chat(stream)).header("x-fake-encoding", encoding);
            // A client that accepts no encoding at all, so that it would choke on compressed bytes.
            let plain = reqwest::Client::builder()
                .no_gzip()
                .no_brotli()
                .no_deflate()
                .no_zstd()
                .build()
                .unwrap_or_else(|e| panic!("{e}"));
            let accepting = reqwest::Client::new();
            let rec = start(
                Recorder::builder().cassette(&path).upstream("openai", &fake.openai_url()).force_mode(Mode::Record),
            );
            let recorded = send(&plain, &rec.url("openai"), &call).await;
            finish(rec).await;
            drop(fake);
            assert_eq!(recorded.headers.get("content-encoding"), None, "{encoding}: the client gets identity");
            let body = stored_body(&path, 0);
            let kind = if stream { "sse" } else { "json" };
            assert_eq!(body["kind"], kind, "{encoding}: stored decoded: {body}");
            let text = read(&path);
            assert!(text.contains("Paris") && !text.contains("content-encoding"), "{encoding}:\n{text}");

            for client in [&plain, &accepting] {
                let rec =
                    start(Recorder::builder().cassette(&path).upstream("openai", NOWHERE).force_mode(Mode::Strict));
                let replayed = send(client, &rec.url("openai"), &call).await;
                finish(rec).await;
                assert_eq!(replayed.headers.get("content-encoding"), None);
                let answer = Answer::parse(
                    replayed.headers.get("content-type").and_then(|v| v.to_str().ok()),
                    &replayed.bytes(),
                );
                assert_eq!(answer.text, answer_for(PARIS), "{encoding} stream={stream}");
                if stream {
                    assert_eq!(parse_sse(&replayed.bytes()).0, parse_sse(&recorded.bytes()).0);
                } else {
                    assert_eq!(replayed.bytes(), recorded.bytes());
                }
            }
        }
    }
}

#[tokio::test]
async fn binary_bodies_audio_out_multipart_in_and_a_large_blob() {
    let dir = scratch();
    let path = cassette_in(&dir, "binary");
    let upload = |boundary: &str| {
        let mut body = format!("--{boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"hello.wav\"\r\nContent-Type: audio/wav\r\n\r\n").into_bytes();
        body.extend((0..200_000u32).map(|i| (i % 256) as u8));
        body.extend(format!("\r\n--{boundary}--\r\n").into_bytes());
        (format!("multipart/form-data; boundary={boundary}"), body)
    };
    async fn exchange(base: &str, boundary_upload: (String, Vec<u8>)) -> (Vec<u8>, Value, Vec<u8>) {
        let client = reqwest::Client::new();
        let speech = client
            .post(format!("{base}/audio/speech"))
            .json(&json!({"model": "tts-1", "input": "hello", "voice": "alloy"}))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let speech = speech.bytes().await.unwrap_or_else(|e| panic!("{e}")).to_vec();
        let (content_type, body) = boundary_upload;
        let text = client
            .post(format!("{base}/audio/transcriptions"))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let text: Value = text.json().await.unwrap_or(Value::Null);
        let blob = client
            .post(format!("{base}/blob"))
            .json(&json!({"bytes": 3_000_000}))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let blob = blob.bytes().await.unwrap_or_else(|e| panic!("{e}")).to_vec();
        (speech, text, blob)
    }
    let fake = FakeLlm::start();
    let rec =
        start(Recorder::builder().cassette(&path).upstream("openai", &fake.openai_url()).force_mode(Mode::Record));
    let recorded = exchange(&rec.url("openai"), upload("first-random-boundary")).await;
    finish(rec).await;
    drop(fake);
    assert!(std::str::from_utf8(&recorded.0).is_err(), "the audio is not text");
    assert_eq!(recorded.2.len(), 3_000_000);
    assert!(recorded.1["text"].as_str().is_some_and(|t| t.contains("bytes of multipart")), "{}", recorded.1);

    let text = read(&path);
    let file: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let interactions = file["interactions"].as_array().cloned().unwrap_or_default();
    let multipart =
        interactions.iter().find(|i| i["request"]["path"] == "/audio/transcriptions").cloned().unwrap_or(Value::Null);
    let parts = &multipart["request"]["body"]["parts"];
    assert_eq!(multipart["request"]["body"]["kind"], "multipart");
    assert_eq!(parts[0], json!({"name": "model", "text": "whisper-1"}));
    assert_eq!(parts[1]["size"], 200_000);
    assert_eq!(parts[1]["sha256"].as_str().map(str::len), Some(64));
    assert!(!text.contains("first-random-boundary"));
    let speech = interactions.iter().find(|i| i["request"]["path"] == "/audio/speech").cloned().unwrap_or(Value::Null);
    assert_eq!(speech["responses"][0]["body"]["kind"], "binary");

    // A new boundary, as every client picks at random, still matches.
    let rec = start(Recorder::builder().cassette(&path).upstream("openai", NOWHERE).force_mode(Mode::Strict));
    let replayed = exchange(&rec.url("openai"), upload("another-boundary-42")).await;
    finish(rec).await;
    assert!(replayed == recorded, "binary bodies replay byte for byte");
}

#[tokio::test]
async fn offsets_are_recorded_on_request_and_pace_the_replay() {
    let dir = scratch();
    let path = cassette_in(&dir, "paced");
    let fake = FakeLlm::start();
    let call = Call::new("/chat/completions", openai_chat(true));
    let rec = start(
        Recorder::builder()
            .cassette(&path)
            .upstream("openai", &fake.openai_url())
            .force_mode(Mode::Record)
            .record_offsets(true),
    );
    let recorded = send(&client(false), &rec.url("openai"), &call.clone().header("x-fake-delay-ms", "100")).await;
    finish(rec).await;
    drop(fake);
    let body = stored_body(&path, 0);
    let offsets: Vec<u64> = body["offsets_ms"].as_array().into_iter().flatten().filter_map(Value::as_u64).collect();
    let events = parse_sse(&recorded.bytes()).0.len();
    assert_eq!(offsets.len(), events);
    assert!(offsets.windows(2).all(|w| w[1] >= w[0] + 90), "{offsets:?}");

    let replay = |pacing: Pacing| {
        let path = path.clone();
        let call = call.clone();
        async move {
            let rec = start(
                Recorder::builder()
                    .cassette(&path)
                    .upstream("openai", NOWHERE)
                    .force_mode(Mode::Strict)
                    .replay_pacing(pacing),
            );
            let seen = send(&client(false), &rec.url("openai"), &call).await;
            finish(rec).await;
            assert_eq!(seen.chunks.len(), events);
            seen.total
        }
    };
    let recorded_span = Duration::from_millis(offsets[events - 1]);
    let unpaced = replay(Pacing::None).await;
    let quarter = replay(Pacing::Recorded { scale: 0.25 }).await;
    let fixed = replay(Pacing::Fixed(Duration::from_millis(30))).await;
    // Lower bounds are exact (sleeps never end early); upper bounds leave room for a loaded machine.
    assert!(unpaced < recorded_span / 3, "no pacing by default: {unpaced:?} for {recorded_span:?}");
    assert!(
        quarter >= recorded_span / 4 && quarter < recorded_span,
        "quarter speed: {quarter:?} for {recorded_span:?}"
    );
    assert!(fixed >= Duration::from_millis(30) * events as u32, "fixed: {fixed:?}");
}

#[tokio::test]
async fn the_recorder_speaks_h2c_to_prior_knowledge_clients() {
    let fake = FakeLlm::start();
    let dir = scratch();
    let rec = start(
        Recorder::builder()
            .cassette(cassette_in(&dir, "h2"))
            .upstream("openai", &fake.openai_url())
            .force_mode(Mode::Record),
    );
    let seen = send(&client(true), &rec.url("openai"), &Call::new("/chat/completions", openai_chat(false))).await;
    finish(rec).await;
    assert_eq!((seen.version, seen.status), (reqwest::Version::HTTP_2, 200));
}

#[tokio::test]
async fn old_cassettes_without_the_new_fields_still_replay() {
    let dir = scratch();
    let path = cassette_in(&dir, "old");
    let request = json!({"method": "POST", "upstream": "openai", "path": "/chat/completions",
        "body": {"kind": "json", "json": {"model": "m", "stream": true}}});
    let key = traceforge::cassette::canonical::request_key(
        &serde_json::from_value(request.clone()).unwrap_or_else(|e| panic!("{e}")),
    );
    let file = json!({"format_version": 1, "interactions": [{"key": key, "request": request, "responses": [{"status": 200,
        "headers": {"content-type": "text/event-stream"},
        "body": {"kind": "sse", "events": [{"data": {"choices": [{"index": 0, "delta": {"content": "Hi"}}]}}, {"text": "[DONE]"}]}}]}]});
    std::fs::write(&path, file.to_string()).unwrap_or_else(|e| panic!("{e}"));
    let rec = start(Recorder::builder().cassette(&path).upstream("openai", NOWHERE).force_mode(Mode::Strict));
    let seen = send(
        &client(false),
        &rec.url("openai"),
        &Call::new("/chat/completions", json!({"model": "m", "stream": true})),
    )
    .await;
    let answer = rec.last_answer().unwrap_or_else(|| panic!("no answer"));
    finish(rec).await;
    assert_eq!((seen.chunks.len(), answer.text.as_str()), (2, "Hi"));
}
