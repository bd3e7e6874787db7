#[traceforge::cassette(flavor = "multi_thread")]
#[tokio::test]
async fn flavor_with_tokio_test() {}

fn main() {}
