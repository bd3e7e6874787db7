//! The quickstart: ask a model a question through a traceforge recorder.
//!
//! By default this replays `cassettes/examples/quickstart.json` (committed), so it runs offline
//! and prints the recorded answer. With `TRACEFORGE_VCR_MODE=record` and an `OPENAI_API_KEY` it
//! calls the real API and rewrites the cassette.
//!
//! ```sh
//! cargo run --example quickstart
//! ```

use async_openai::config::OpenAIConfig;
use async_openai::types::chat::{ChatCompletionRequestUserMessageArgs, CreateChatCompletionRequestArgs};
use traceforge::Recorder;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let recorder = Recorder::builder()
        .cassette(concat!(env!("CARGO_MANIFEST_DIR"), "/cassettes/examples/quickstart.json"))
        .test_name("examples/quickstart")
        .rerecord_command("TRACEFORGE_VCR_MODE=record OPENAI_API_KEY=sk-... cargo run --example quickstart")
        .start()?;

    // The only change a test makes to its client: the base URL points at the recorder.
    let api_key = std::env::var("OPENAI_API_KEY").unwrap_or_else(|_| "unused-when-replaying".to_owned());
    let client = async_openai::Client::with_config(
        OpenAIConfig::new().with_api_base(recorder.url("openai")).with_api_key(api_key),
    );

    let question = "What is the capital of France? Answer in French, in one sentence.";
    let request = CreateChatCompletionRequestArgs::default()
        .model("gpt-4o-mini")
        .temperature(0.0)
        .messages(vec![ChatCompletionRequestUserMessageArgs::default().content(question).build()?.into()])
        .build()?;
    let response = client.chat().create(request).await;
    let mode = recorder.mode();
    // Finish before looking at the response: on a miss it explains what differed.
    let report = recorder.finish().await?;
    let response = response?;

    let answer = response.choices.first().and_then(|choice| choice.message.content.clone()).unwrap_or_default();
    println!("question: {question}");
    println!("model:    {answer}");
    println!(
        "traceforge: mode {mode}, {} replayed, {} recorded, cassette {}",
        report.hits,
        report.recorded,
        report.cassette.display()
    );
    Ok(())
}
