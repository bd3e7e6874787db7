#[traceforge::cassette]
async fn returns_result(tf: traceforge::Cassette) -> Result<(), String> {
    let _ = tf;
    Ok(())
}

#[traceforge::cassette]
#[tokio::test]
async fn returns_result_under_tokio_test() -> Result<(), String> {
    Err("not run: pass fixtures are binaries".to_owned())
}

fn main() {}
