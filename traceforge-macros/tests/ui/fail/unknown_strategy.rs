#[traceforge::cassette(strategy = "fuzzy")]
async fn matches(tf: traceforge::Cassette) {
    let _ = tf;
}

fn main() {}
