#[traceforge::cassette]
async fn takes_a_string(tf: String) {
    let _ = tf;
}

fn main() {}
