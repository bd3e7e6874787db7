#[tokio::test]
#[traceforge::cassette]
async fn tokio_test_above() {}

fn main() {}
