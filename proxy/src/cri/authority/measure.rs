//! The rewrite step's entry point for `bench/` (criterion micro-benchmarks):
//! a small public wrapper over the crate-private `AuthorityRewrite`, so the
//! benchmarks measure exactly the step the server runs without making its
//! types public.
//!
//! Published as `cri::authority_measure`. Nothing here is meant for other
//! callers: `cri::serve` wraps each accepted connection itself.

use tokio::io::{AsyncRead, AsyncWrite};

use super::{AuthorityLimits, AuthorityRewrite};

/// Wraps a client connection in the `:authority` rewrite step with the
/// default `AuthorityLimits`, as `cri::serve` does for every accepted
/// socket: read it as the server would read the client.
pub fn wrap<IO>(io: IO) -> impl AsyncRead + AsyncWrite + Unpin
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    AuthorityRewrite::new(io, AuthorityLimits::default())
}
