#[traceforge::cassette]
struct NotAFunction;

fn main() {}
