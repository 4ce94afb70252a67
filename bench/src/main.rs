//! pullgate-bench: end-to-end benchmark harness (issue 5).
fn main() {}
