#[traceforge::cassette(nmae = "greeting")]
async fn unknown_option() {}

fn main() {}
