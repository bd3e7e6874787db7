#[traceforge::cassette]
#[test]
fn plain_test_attribute() {}

fn main() {}
