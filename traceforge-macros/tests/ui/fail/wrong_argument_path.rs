#[traceforge::cassette]
async fn wrong_argument_path(tf: traceforge::Recorder) {
    let _ = tf;
}

fn main() {}
