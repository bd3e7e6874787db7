#[traceforge::cassette(ignore("$.user", "metadata"))]
async fn ignores(tf: traceforge::Cassette) {
    let _ = tf;
}

fn main() {}
