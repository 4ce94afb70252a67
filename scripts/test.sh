#!/usr/bin/env bash
# Installs what the tests need (Debian: containerd, docker-registry, dpkg-dev,
# binutils, golang-go, golang-google-grpc-dev; cargo-deb and cargo-deny from crates.io), then runs the whole suite:
# fmt, clippy, layering, dependency checks (cargo-deny, rust-version), tests
# (end-to-end included, and once more call by call, [server] frame_relay = false), the Debian package (scripts/deb.sh: build, install,
# doctor, purge), fuzz briefly, docs.
# The end-to-end tests start and stop their own containerd and registries
# under temp dirs on loopback; this script starts no service itself.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
command -v containerd >/dev/null 2>&1 || need_pkgs+=(containerd)
command -v docker-registry >/dev/null 2>&1 || need_pkgs+=(docker-registry)
# scripts/deb.sh: the package's Depends (dpkg-shlibdeps) and its stripped binary (strip)
command -v dpkg-shlibdeps >/dev/null 2>&1 || need_pkgs+=(dpkg-dev)
command -v strip >/dev/null 2>&1 || need_pkgs+=(binutils)
# The client-compatibility tests build a grpc-go client (the kubelet's and
# crictl's gRPC) against Debian's packaged grpc-go, offline.
command -v go >/dev/null 2>&1 || need_pkgs+=(golang-go)
[ -d /usr/share/gocode/src/google.golang.org/grpc ] || need_pkgs+=(golang-google-grpc-dev)
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
# scripts/deb.sh builds the Debian package with cargo-deb.
if ! cargo deb --version >/dev/null 2>&1; then
    echo "== installing cargo-deb (crates.io)"
    cargo install cargo-deb --locked --version 3.8.0
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
    cargo install --quiet --locked cargo-deny --version 0.20.2
fi
# cargo-deny reads every crate of the lock file, those built only for other
# targets too (windows-sys, android_system_properties, …), which a build here
# never downloads: fetch them all first, so the offline checks find them.
cargo fetch --locked
# Licences and sources of every crate (tests and bench included); duplicate
# versions of what the binary is built from (no dev-dependencies, no testkit, test or
# bench crate).
cargo deny --offline --locked check licenses sources
cargo deny --offline --locked --exclude-dev --exclude pullgate-tests --exclude pullgate-bench --exclude pullgate-testkit check bans
./scripts/msrv.sh
echo "== cargo build (binaries the end-to-end tests start)"
cargo build --workspace --locked --bins
echo "== cargo test"
cargo test --workspace --locked -- --include-ignored
echo "== end-to-end again, every CRI connection served call by call ([server] frame_relay = false)"
PULLGATE_E2E_FRAME_RELAY=0 cargo test -p pullgate-tests --test e2e --locked -- --include-ignored
echo "== Debian package (release build, dpkg -i, doctor, purge)"
./scripts/deb.sh
echo "== fuzz (briefly)"
./scripts/fuzz.sh "${PULLGATE_FUZZ_SECONDS:-20}"
echo "== cargo doc"
RUSTDOCFLAGS=-Dwarnings cargo doc --workspace --no-deps --locked --quiet
echo "test.sh: all checks passed"
