//! Notary Project trust policy. (placeholder: being written)
