//! The `pullgate` binary: CLI only.
fn main() {}
