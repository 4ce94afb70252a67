#!/usr/bin/env bash
# pullgate quick start: a real containerd and a real registry on loopback, a
# signed and an unsigned image, two pulls through pullgate — one allowed, one
# denied. Everything runs under a temp dir and is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

need_pkgs=()
command -v containerd >/dev/null 2>&1 || need_pkgs+=(containerd)
command -v docker-registry >/dev/null 2>&1 || need_pkgs+=(docker-registry)
if [ ${#need_pkgs[@]} -gt 0 ]; then
    say "installing ${need_pkgs[*]} (Debian packages)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

say "building pullgate and the demo tool"
cargo build --locked --quiet --bins
bin="${CARGO_TARGET_DIR:-$root/target}/debug"

work=$(mktemp -d /tmp/pullgate-quickstart.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_for() { # what, command...
    local what=$1; shift
    for _ in $(seq 1 100); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
    echo "timed out waiting for $what" >&2; return 1
}

port=$(free_port)
registry="127.0.0.1:$port"
say "starting docker-registry on $registry"
mkdir -p "$work/registry"
cat > "$work/registry.yml" <<YML
version: 0.1
storage:
  filesystem:
    rootdirectory: $work/registry
  delete:
    enabled: true
http:
  addr: $registry
log:
  level: error
YML
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
pids+=($!)
wait_for "the registry" curl -sf "http://$registry/v2/"

say "starting containerd (CRI plugin, native snapshotter) on $work/containerd.sock"
mkdir -p "$work/certs.d/$registry"
cat > "$work/certs.d/$registry/hosts.toml" <<TOML
server = "http://$registry"
[host."http://$registry"]
  capabilities = ["pull", "resolve"]
TOML
cat > "$work/containerd.toml" <<TOML
version = 2
root = "$work/containerd/root"
state = "$work/containerd/state"
[grpc]
  address = "$work/containerd.sock"
[ttrpc]
  address = "$work/containerd.sock.ttrpc"
[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "native"
[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = "$work/certs.d"
TOML
containerd --config "$work/containerd.toml" >"$work/containerd.log" 2>&1 &
pids+=($!)
wait_for "containerd" test -S "$work/containerd.sock"

say "pushing demo/signed:v1 (signed with a demo key) and demo/unsigned:v1"
"$bin/pullgate-testbed" demo --registry "$registry" --dir "$work/trust"

say "starting pullgate on $work/pullgate.sock"
cat > "$work/pullgate.toml" <<TOML
[server]
socket = "$work/pullgate.sock"
upstream = "$work/containerd.sock"
[trust]
policy = "$work/trust/trustpolicy.json"
store = "$work/trust/truststore"
[registry]
plain_http = ["$registry"]
TOML
echo "--- $work/trust/trustpolicy.json"; cat "$work/trust/trustpolicy.json"; echo "---"
"$bin/pullgate" serve --config "$work/pullgate.toml" 2>"$work/pullgate.log" &
pids+=($!)
wait_for "pullgate" test -S "$work/pullgate.sock"

say "pull $registry/demo/signed:v1 through pullgate (expect: allowed)"
signed_rc=0
"$bin/pullgate-testbed" pull --socket "$work/pullgate.sock" "$registry/demo/signed:v1" || signed_rc=$?
say "pull $registry/demo/unsigned:v1 through pullgate (expect: denied)"
unsigned_rc=0
"$bin/pullgate-testbed" pull --socket "$work/pullgate.sock" "$registry/demo/unsigned:v1" || unsigned_rc=$?
say "what containerd holds now (ImageStatus through pullgate)"
"$bin/pullgate-testbed" status --socket "$work/pullgate.sock" "$registry/demo/signed:v1" || true
"$bin/pullgate-testbed" status --socket "$work/pullgate.sock" "$registry/demo/unsigned:v1" || true

say "pullgate's log"
cat "$work/pullgate.log"
say "done; stopping containerd, the registry and pullgate"
if [ "$signed_rc" -ne 0 ] || [ "$unsigned_rc" -ne 1 ]; then
    echo "quickstart: unexpected outcome (signed exit $signed_rc, want 0; unsigned exit $unsigned_rc, want 1)" >&2
    exit 1
fi
echo "quickstart: the signed image was allowed and the unsigned one denied, as expected"
