#!/usr/bin/env bash
# The layering rules of STYLE.md §1, as greps. Prints offenders and fails.
set -uo pipefail
cd "$(dirname "$0")/.."
fail=0
check() { # description, pattern, paths...
    local what=$1 pattern=$2; shift 2
    local hits
    hits=$(grep -rnE "$pattern" "$@" 2>/dev/null | grep -vE '^[^:]+:[0-9]+:\s*//' || true)
    if [ -n "$hits" ]; then
        echo "layering: $what"; echo "$hits"; fail=1
    fi
}
check "verify/ must not name tonic, hyper, registry or cri" 'tonic|hyper|crate::registry|crate::cri' proxy/src/verify
check "registry/ must not name verify" 'crate::verify' proxy/src/registry
check "prost types stay in cri/" 'pullgate_proto|prost::' proxy/src/gate proxy/src/cache.rs proxy/src/registry proxy/src/verify
check "gate/verdict.rs is pure: no registry, tokio, verifier or clock" 'tokio|crate::registry|crate::verify|SystemTime::now|Instant::now' proxy/src/gate/verdict.rs
check "gate/notary/judge.rs, gate/cosign/judge.rs and gate/attestation/judge.rs judge reports: no registry or tokio" 'tokio|crate::registry' proxy/src/gate/notary/judge.rs proxy/src/gate/cosign/judge.rs proxy/src/gate/attestation/judge.rs
check "gate/outcome.rs maps an outcome: no registry, tokio or verifier" 'tokio|crate::registry|crate::verify' proxy/src/gate/outcome.rs
check "authority/ is protocol code: it names no other pullgate crate" 'pullgate_(policy|proto)|pullgate::|use pullgate\b' authority/src authority/benches
check "testkit/ mints bytes: it names no other pullgate crate (the proxy dev-depends on it)" 'pullgate_(policy|proto|authority|tests)|pullgate::|use pullgate\b' testkit/src
if cargo tree -p pullgate-testkit -e normal --locked 2>/dev/null | grep -qE '\bpullgate(-policy|-proto|-authority|-tests)? v'; then
    echo "layering: pullgate-testkit depends on another pullgate crate"; fail=1
fi
if cargo tree -p pullgate-authority -e normal --locked 2>/dev/null | grep -qE 'pullgate-(policy|proto) v|^\S*.*\bpullgate v'; then
    echo "layering: pullgate-authority depends on another pullgate crate"; fail=1
fi
if cargo tree -p pullgate-policy -e normal --locked 2>/dev/null | grep -qE '^\S*.*\b(tokio|tonic|hyper) v'; then
    echo "layering: pullgate-policy depends on tokio, tonic or hyper"; fail=1
fi
exit $fail
