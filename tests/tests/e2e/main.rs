//! End-to-end tests, one binary: a real containerd, real registries on
//! loopback, and the real `pullgate` binary. One module per area.

mod attestations;
mod aws_signer;
mod cache;
mod clients;
mod cosign;
mod doctor;
mod fault_matrix;
mod frame_relay;
mod harness;
mod hostile_load;
mod image_status;
mod image_verifier;
mod operator;
mod passthrough;
mod policy_source;
mod prefetch;
mod preflight;
mod pull_allow;
mod pull_deny;
mod registry_faults;
mod registry_identity;
mod reload;
mod revocation;
mod runtime_gate;
mod scope_globs;
mod signature_repository;
mod socket;
mod socket_surface;
mod upstream;
mod verdict_scope;
