#!/usr/bin/env bash
# `rust-version` is true: every workspace member declares one, and it is at
# least the highest `rust-version` any package in Cargo.lock declares (all
# targets, build and dev dependencies included). Offline: reads the lock
# through `cargo metadata --locked`. Prints the offenders and fails.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 - <<'EOF'
import json, subprocess, sys

meta = json.loads(subprocess.run(
    ["cargo", "metadata", "--locked", "--offline", "--format-version", "1"],
    check=True, capture_output=True, text=True).stdout)

def parse(v):
    parts = [int(p) for p in v.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))

members = set(meta["workspace_members"])
ours = [p for p in meta["packages"] if p["id"] in members]
declared = [(parse(p["rust_version"]), p) for p in meta["packages"]
            if p["id"] not in members and p.get("rust_version")]
need, top = max(declared, key=lambda d: d[0])
needers = sorted("%s %s" % (p["name"], p["version"]) for v, p in declared if v == need)
named = ", ".join(needers[:4]) + (", ..." if len(needers) > 4 else "")
fail = False
for p in ours:
    have = p.get("rust_version")
    if not have:
        print("msrv: %s declares no rust-version" % p["name"])
        fail = True
    elif parse(have) < need:
        print("msrv: %s says rust-version %s, but %s is needed by %s"
              % (p["name"], have, top["rust_version"], named))
        fail = True
if fail:
    sys.exit(1)
print("msrv: rust-version holds; the highest a locked package needs is %s (%s)"
      % (top["rust_version"], named))
EOF
