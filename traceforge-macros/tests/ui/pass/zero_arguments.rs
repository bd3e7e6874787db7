// Pass fixtures are built as binaries, where libtest strips `#[test]` items: this checks that
// the attribute accepts the input and expands without error, not that the test runs.

#[traceforge::cassette]
async fn zero_arguments() {}

#[traceforge::cassette]
async fn takes_the_cassette(tf: traceforge::Cassette) {
    let _ = tf;
}

fn main() {}
