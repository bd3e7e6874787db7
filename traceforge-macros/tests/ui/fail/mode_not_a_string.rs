#[traceforge::cassette(mode = replay)]
async fn mode_not_a_string() {}

fn main() {}
