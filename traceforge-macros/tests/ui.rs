//! Compile-fail and pass UI tests for `#[traceforge::cassette]`.
//!
//! Regenerate the `.stderr` files with `TRYBUILD=overwrite cargo test -p traceforge-macros --test ui`
//! and review them: each error must point at the offending token.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/fail/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
