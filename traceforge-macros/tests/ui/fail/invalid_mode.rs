#[traceforge::cassette(mode = "replya")]
async fn invalid_mode() {}

fn main() {}
