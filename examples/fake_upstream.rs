//! A fake OpenAI-compatible server on loopback, for recording this project's example cassettes
//! without network access (the answers are canned, the wire format is OpenAI's):
//!
//! ```sh
//! cargo run --example fake_upstream &          # prints the base URL
//! TRACEFORGE_UPSTREAM_OPENAI=http://127.0.0.1:PORT/v1 TRACEFORGE_VCR_MODE=record cargo test --test attribute
//! ```

#[allow(dead_code)] // the tests use more of it than this example
#[path = "../tests/support/fake_openai.rs"]
mod fake_openai;

#[tokio::main]
async fn main() {
    let fake = fake_openai::FakeOpenAi::start().await;
    println!("{}", fake.base_url());
    // Serve until interrupted.
    let () = std::future::pending().await;
}
