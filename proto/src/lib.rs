//! Generated bindings for pullgate: the CRI v1 messages it decodes
//! (`runtime.v1`), containerd's native images service
//! (`containerd.services.images.v1`), the read call of its content service
//! (`containerd.services.content.v1`) and pullgate's own local image
//! verifier service (`pullgate.verifier.v1`), with tonic clients and servers.
//!
//! This crate holds generated code only. The `.proto` files under `proto/`
//! keep upstream field numbers; see their header comments for what was left
//! out and why. Module paths mirror protobuf packages, as prost's generated
//! cross-package references require.

/// CRI v1 (`package runtime.v1`).
pub mod runtime {
    /// `runtime.v1`.
    // Generated code: lints are relaxed on generated modules only.
    #[allow(
        missing_docs,
        unreachable_pub,
        missing_debug_implementations,
        unused_qualifications,
        clippy::all,
        clippy::pedantic
    )]
    pub mod v1 {
        tonic::include_proto!("runtime.v1");
    }
}

/// containerd API (`package containerd.*`).
pub mod containerd {
    /// `containerd.types`.
    #[allow(
        missing_docs,
        unreachable_pub,
        missing_debug_implementations,
        unused_qualifications,
        clippy::all,
        clippy::pedantic
    )]
    pub mod types {
        tonic::include_proto!("containerd.types");
    }

    /// `containerd.services`.
    pub mod services {
        /// `containerd.services.content`.
        pub mod content {
            /// `containerd.services.content.v1`.
            #[allow(
                missing_docs,
                unreachable_pub,
                missing_debug_implementations,
                unused_qualifications,
                clippy::all,
                clippy::pedantic
            )]
            pub mod v1 {
                tonic::include_proto!("containerd.services.content.v1");
            }
        }

        /// `containerd.services.images`.
        pub mod images {
            /// `containerd.services.images.v1`.
            #[allow(
                missing_docs,
                unreachable_pub,
                missing_debug_implementations,
                unused_qualifications,
                clippy::all,
                clippy::pedantic
            )]
            pub mod v1 {
                tonic::include_proto!("containerd.services.images.v1");
            }
        }
    }
}

/// pullgate's own services (`package pullgate.*`).
pub mod pullgate {
    /// `pullgate.verifier`.
    pub mod verifier {
        /// `pullgate.verifier.v1`: the local service `pullgate serve` answers
        /// containerd's image verifier on.
        #[allow(
            missing_docs,
            unreachable_pub,
            missing_debug_implementations,
            unused_qualifications,
            clippy::all,
            clippy::pedantic
        )]
        pub mod v1 {
            tonic::include_proto!("pullgate.verifier.v1");
        }
    }
}
