#[traceforge::cassette(upstream(openai = "http://127.0.0.1:1/v1", openai = "http://127.0.0.1:2/v1"))]
async fn duplicate_upstream(tf: traceforge::Cassette) {
    let _ = tf;
}

fn main() {}
