//! (placeholder: being written)

pub(crate) mod authority;
