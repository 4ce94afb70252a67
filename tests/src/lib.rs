//! End-to-end harness (placeholder: being written).
