#[traceforge::cassette]
#[tokio::test]
async fn above_tokio_test(tf: traceforge::Cassette) {
    let _ = tf;
}

#[traceforge::cassette(mode = "replay")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn above_multi_thread_tokio_test() {}

fn main() {}
