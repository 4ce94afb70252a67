//! Tests for Notary Project verification.
