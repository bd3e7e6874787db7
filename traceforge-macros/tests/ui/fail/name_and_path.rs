#[traceforge::cassette(name = "greeting", path = "cassettes/greeting.json")]
async fn name_and_path() {}

fn main() {}
