#[traceforge::cassette]
fn not_async(tf: traceforge::Cassette) {
    let _ = tf;
}

fn main() {}
