//! Generated bindings for pullgate: the CRI v1 messages it decodes
//! (`runtime.v1`), containerd's native images service
//! (`containerd.services.images.v1`), the read, info and write calls of its
//! content service (`containerd.services.content.v1`), its leases service
//! (`containerd.services.leases.v1`) and pullgate's own local image
//! verifier service (`pullgate.verifier.v1`), with tonic clients and servers.
//!
//! This crate holds generated code only. The `.proto` files under `proto/`
//! keep upstream field numbers; see their header comments for what was left
//! out and why. Module paths mirror protobuf packages, as prost's generated
//! cross-package references require.

/// A module of generated code for a protobuf package: lints are relaxed
/// on generated modules only.
macro_rules! generated {
    ($(#[$doc:meta])* $name:ident = $package:literal) => {
        $(#[$doc])*
        #[allow(
            missing_docs,
            unreachable_pub,
            missing_debug_implementations,
            unused_qualifications,
            clippy::all,
            clippy::pedantic
        )]
        pub mod $name {
            tonic::include_proto!($package);
        }
    };
}

/// CRI v1 (`package runtime.v1`).
pub mod runtime {
    generated! {
        /// `runtime.v1`.
        v1 = "runtime.v1"
    }
}

/// containerd API (`package containerd.*`).
pub mod containerd {
    generated! {
        /// `containerd.types`.
        types = "containerd.types"
    }

    /// `containerd.services`.
    pub mod services {
        /// `containerd.services.content`.
        pub mod content {
            generated! {
                /// `containerd.services.content.v1`.
                v1 = "containerd.services.content.v1"
            }
        }

        /// `containerd.services.leases`.
        pub mod leases {
            generated! {
                /// `containerd.services.leases.v1`.
                v1 = "containerd.services.leases.v1"
            }
        }

        /// `containerd.services.images`.
        pub mod images {
            generated! {
                /// `containerd.services.images.v1`.
                v1 = "containerd.services.images.v1"
            }
        }
    }
}

/// pullgate's own services (`package pullgate.*`).
pub mod pullgate {
    /// `pullgate.verifier`.
    pub mod verifier {
        generated! {
            /// `pullgate.verifier.v1`: the local service `pullgate serve` answers
            /// containerd's image verifier on.
            v1 = "pullgate.verifier.v1"
        }
    }
}
