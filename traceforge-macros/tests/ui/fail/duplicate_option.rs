#[traceforge::cassette(name = "first", name = "second")]
async fn duplicate_option() {}

fn main() {}
