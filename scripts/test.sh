#!/usr/bin/env bash
# Installs what the tests need (Debian: containerd, docker-registry), then runs
# the whole suite: fmt, clippy, layering, dependency checks (cargo-deny,
# rust-version), tests (end-to-end included), docs.
# The end-to-end tests start and stop their own containerd and registries
# under temp dirs on loopback; this script starts no service itself.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
command -v containerd >/dev/null 2>&1 || need_pkgs+=(containerd)
command -v docker-registry >/dev/null 2>&1 || need_pkgs+=(docker-registry)
if [ ${#need_pkgs[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "test.sh: need root to install ${need_pkgs[*]}" >&2
        exit 1
    fi
    echo "== installing ${need_pkgs[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi
# The client-compatibility tests drive a real gRPC C-core client (Python grpcio).
if ! python3 -c 'import grpc' >/dev/null 2>&1; then
    echo "== installing grpcio (PyPI)"
    python3 -m pip install --quiet grpcio
fi
# The Debian packages would start services on a systemd host; the tests run their own.
for svc in containerd docker-registry; do
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
        echo "note: system $svc is running; the tests use their own instances on temp sockets"
    fi
done

echo "== cargo fmt"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== layering"
./scripts/layering.sh
echo "== dependencies (deny.toml, rust-version)"
# cargo-deny is not in the toolchain: a clean machine installs it once
# (18 minutes on 2 busy cores). The checks themselves run offline.
if ! command -v cargo-deny >/dev/null 2>&1; then
    echo "== installing cargo-deny (crates.io)"
    cargo install --quiet --locked cargo-deny
fi
# Licences and sources of every crate (tests and bench included); duplicate
# versions of what the binary is built from (no dev-dependencies, no test or
# bench crate).
cargo deny --offline --locked check licenses sources
cargo deny --offline --locked --exclude-dev --exclude pullgate-tests --exclude pullgate-bench check bans
./scripts/msrv.sh
echo "== cargo build (binaries the end-to-end tests start)"
cargo build --workspace --locked --bins
echo "== cargo test"
cargo test --workspace --locked -- --include-ignored
echo "== fuzz (briefly)"
./scripts/fuzz.sh "${PULLGATE_FUZZ_SECONDS:-20}"
echo "== cargo doc"
RUSTDOCFLAGS=-Dwarnings cargo doc --workspace --no-deps --locked --quiet
echo "test.sh: all checks passed"
