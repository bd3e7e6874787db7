struct Suite;

impl Suite {
    #[traceforge::cassette]
    async fn takes_self(self) {}
}

fn main() {}
