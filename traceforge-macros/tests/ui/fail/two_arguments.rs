#[traceforge::cassette]
async fn two_arguments(tf: traceforge::Cassette, extra: u32) {
    let _ = (tf, extra);
}

fn main() {}
