#[traceforge::cassette(upstream(openai = "http://127.0.0.1:1/v1"))]
async fn with_upstream(tf: traceforge::Cassette) {
    let _ = tf.url("openai");
}

#[traceforge::cassette(name = "x")]
async fn with_name() {}

#[traceforge::cassette(mode = "replay")]
async fn with_mode() {}

#[traceforge::cassette(flavor = "multi_thread")]
async fn with_flavor() {}

#[traceforge::cassette(
    upstream(openai = "http://127.0.0.1:1/v1", anthropic = "https://127.0.0.1:2"),
    name = "all_options",
    mode = "strict",
    flavor = "current_thread",
    crate = "::traceforge"
)]
async fn with_every_option(tf: traceforge::Cassette) {
    let _ = tf;
}

fn main() {}
