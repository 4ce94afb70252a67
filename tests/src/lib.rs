//! End-to-end harness (placeholder: being written).
pub mod oci_registry;
