//! A policy bundle as the node holds it: the layout its manifest may have
//! ([`layout`]) and the last good bundle on disk (`store`), below the
//! gate, which starts from it; fetching, verifying and following the
//! source is `policy_source`'s.

pub mod layout;
pub(crate) mod store;
