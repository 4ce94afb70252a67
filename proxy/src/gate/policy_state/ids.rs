//! The ids a [`PolicyState`](super::PolicyState) gives what it holds, and its
//! generation: what a verdict key is made of. The ids' fields are visible
//! to `policy_state` only, so no other module can make one.

/// Increments whenever the trust policy or trust store changes; part of every cache key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyGeneration(pub u64);

/// A trust policy statement of one `PolicyState`: its position in the
/// document. Only this module makes one, and only for the state whose
/// document holds it, so `PolicyState::statement` always finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct StatementId(pub(super) u16);

/// A requirements scope of one `PolicyState`: a `[[scope]]` entry, or the
/// built-in default (its own variant: a user's entry may be called
/// `default` too). Made only by this module, as [`StatementId`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ScopeId(pub(super) Scope);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Scope {
    /// The `[[scope]]` entry at this position of the requirements file.
    Entry(u16),
    /// No entry covers the repository.
    BuiltIn,
}
