#[traceforge::cassette(upstream(openai = "127.0.0.1:1/v1"))]
async fn upstream_url_scheme() {}

fn main() {}
