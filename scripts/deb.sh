#!/usr/bin/env bash
# The Debian package, end to end: builds it (`cargo deb`, the release
# profile), checks its contents against the lists below (files, modes,
# conffiles, maintainer scripts, control fields, a stripped binary), installs
# it with dpkg, verifies the installed unit (systemd-analyze, when present),
# runs `pullgate doctor --offline` from the installed files and
# checks what it says, removes it (state kept), installs it again, purges it
# and checks that nothing is left.
#
# Needs root, dpkg and cargo-deb (`cargo install cargo-deb --locked`;
# test.sh installs it when missing). Leaves the machine as it found it: it
# refuses to run when pullgate is installed or any path the package owns or
# makes exists, and purges the package on every exit, failure included.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
    echo "deb.sh: $*" >&2
    exit 1
}

[ "$(id -u)" -eq 0 ] || fail "needs root (dpkg -i)"
command -v dpkg-deb >/dev/null 2>&1 || fail "needs dpkg"
cargo deb --version >/dev/null 2>&1 || fail "needs cargo-deb: cargo install cargo-deb --locked"

# What the package owns or makes; none may exist before.
owned=(/usr/bin/pullgate /etc/pullgate /var/lib/pullgate /var/log/pullgate
    /usr/share/pullgate /usr/share/doc/pullgate /usr/lib/systemd/system/pullgate.service
    /lib/systemd/system/pullgate.service /etc/systemd/system/multi-user.target.wants/pullgate.service)
if dpkg-query -W -f='${db:Status-Abbrev}' pullgate 2>/dev/null | grep -q '^.[^n]'; then
    fail "refusing to run: package pullgate is installed (dpkg -l pullgate); this script installs and purges its own"
fi
for p in "${owned[@]}"; do
    if [ -e "$p" ] || [ -L "$p" ]; then
        fail "refusing to run: $p exists; this script would replace or remove it"
    fi
done

work=$(mktemp -d)
installed=0
cleanup() {
    local rc=$?
    if [ "$installed" -eq 1 ]; then
        echo "== cleanup: dpkg --purge pullgate"
        dpkg --purge pullgate >/dev/null || rc=1
    fi
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== cargo deb -p pullgate --locked --strip (release build)"
start=$SECONDS
# --strip: the release profile keeps line tables (debug = "line-tables-only"),
# which cargo-deb would otherwise ship (about 104 MiB instead of 18 MiB)
cargo deb -p pullgate --locked --strip --output "$work/pullgate.deb"
echo "cargo deb took $((SECONDS - start)) s"
deb="$work/pullgate.deb"

echo "== package contents"
# mode, owner and path of every entry (size and date vary)
dpkg-deb -c "$deb" | awk '{ print $1, $2, $6 }' | sort >"$work/contents"
sort >"$work/expected" <<'EOF'
drwxr-xr-x 0/0 ./etc/
drwxr-xr-x 0/0 ./etc/pullgate/
-rw-r--r-- 0/0 ./etc/pullgate/pullgate.toml
drwxr-xr-x 0/0 ./usr/
drwxr-xr-x 0/0 ./usr/bin/
-rwxr-xr-x 0/0 ./usr/bin/pullgate
drwxr-xr-x 0/0 ./usr/lib/
drwxr-xr-x 0/0 ./usr/lib/systemd/
drwxr-xr-x 0/0 ./usr/lib/systemd/system/
-rw-r--r-- 0/0 ./usr/lib/systemd/system/pullgate.service
drwxr-xr-x 0/0 ./usr/share/
drwxr-xr-x 0/0 ./usr/share/doc/
drwxr-xr-x 0/0 ./usr/share/doc/pullgate/
-rw-r--r-- 0/0 ./usr/share/doc/pullgate/README.md
-rw-r--r-- 0/0 ./usr/share/doc/pullgate/copyright
drwxr-xr-x 0/0 ./usr/share/pullgate/
-rw-r--r-- 0/0 ./usr/share/pullgate/kubelet-config.pullgate.yaml
drwxr-xr-x 0/0 ./usr/share/pullgate/kubelet.service.d/
-rw-r--r-- 0/0 ./usr/share/pullgate/kubelet.service.d/10-pullgate.conf
EOF
diff -u "$work/expected" "$work/contents" || fail "the package's files differ from the expected list (- expected, + in the package)"

mkdir "$work/control" "$work/root"
dpkg-deb -e "$deb" "$work/control"
dpkg-deb -x "$deb" "$work/root"
[ "$(cat "$work/control/conffiles")" = /etc/pullgate/pullgate.toml ] ||
    fail "conffiles: expected /etc/pullgate/pullgate.toml, got: $(cat "$work/control/conffiles")"
for s in postinst prerm postrm; do
    cmp "$work/control/$s" "deb/maintainer-scripts/$s" || fail "maintainer script $s is not deb/maintainer-scripts/$s"
    [ "$(stat -c %a "$work/control/$s")" = 755 ] || fail "maintainer script $s is not mode 755"
done
[ ! -e "$work/control/preinst" ] || fail "unexpected preinst"
cmp "$work/root/usr/lib/systemd/system/pullgate.service" systemd/pullgate.service
cmp "$work/root/etc/pullgate/pullgate.toml" deb/pullgate.toml
grep -qx 'ExecStart=/usr/bin/pullgate serve --config /etc/pullgate/pullgate.toml' \
    "$work/root/usr/lib/systemd/system/pullgate.service" || fail "the unit does not start /usr/bin/pullgate"
field() { dpkg-deb -f "$deb" "$1"; }
[ "$(field Package)" = pullgate ] || fail "Package: $(field Package)"
[ "$(field Section)" = admin ] || fail "Section: $(field Section)"
# the binary links libc only (and libgcc_s for unwinding): Depends is what dpkg-shlibdeps found
depends=$(field Depends)
[[ "$depends" =~ ^libc6\ \(\>=\ [0-9.]+\)(,\ libgcc-s1\ \(\>=\ [0-9.]+\))?$ ]] || fail "Depends: $depends"
if readelf -SW "$work/root/usr/bin/pullgate" | grep -qE '\.debug_(info|line|str|abbrev|ranges) '; then
    fail "/usr/bin/pullgate in the package is not stripped"
fi
echo "contents, conffiles, maintainer scripts, Depends ($depends): as expected"
echo "package $(stat -c %s "$deb") bytes, /usr/bin/pullgate $(stat -c %s "$work/root/usr/bin/pullgate") bytes"

echo "== dpkg -i"
installed=1
dpkg -i "$deb"
mode() { stat -c '%a %U:%G' "$1"; }
[ "$(mode /usr/bin/pullgate)" = "755 root:root" ] || fail "/usr/bin/pullgate: $(mode /usr/bin/pullgate)"
[ "$(mode /etc/pullgate/pullgate.toml)" = "644 root:root" ] || fail "pullgate.toml: $(mode /etc/pullgate/pullgate.toml)"
[ "$(mode /var/lib/pullgate)" = "700 root:root" ] || fail "/var/lib/pullgate: $(mode /var/lib/pullgate)"
[ "$(mode /var/log/pullgate)" = "750 root:root" ] || fail "/var/log/pullgate: $(mode /var/log/pullgate)"
[ ! -e /etc/systemd/system/multi-user.target.wants/pullgate.service ] || fail "the package enabled the unit"
if [ -d /run/systemd/system ]; then
    ! systemctl is-active --quiet pullgate.service || fail "the package started the unit"
fi
if command -v systemd-analyze >/dev/null 2>&1; then
    verify=$(systemd-analyze verify /usr/lib/systemd/system/pullgate.service 2>&1) ||
        fail "systemd-analyze verify pullgate.service: $verify"
    [ -z "$verify" ] || fail "systemd-analyze verify pullgate.service: $verify"
    echo "systemd-analyze verify pullgate.service: no finding"
fi
/usr/bin/pullgate config example | cmp - /etc/pullgate/pullgate.toml ||
    fail "/etc/pullgate/pullgate.toml is not what the installed pullgate's \`config example\` prints"

echo "== pullgate doctor --offline (the installed config)"
# expect_line OUTPUT LINE: OUTPUT holds LINE as a whole line.
expect_line() {
    grep -qxF -- "$2" <<<"$1" || fail "doctor printed no line
  $2
it printed:
$1"
}
# expect_prefix OUTPUT PREFIX: a line of OUTPUT starts with PREFIX.
expect_prefix() {
    grep -qxF -- "$2" <<<"$(cut -c "1-${#2}" <<<"$1")" || fail "doctor printed no line starting
  $2
it printed:
$1"
}
set +e
out=$(cd / && env -u PULLGATE_CONFIG /usr/bin/pullgate doctor --offline 2>/dev/null)
rc=$?
set -e
echo "$out"
[ "$rc" -eq 1 ] || fail "doctor exited $rc, expected 1 (no trust policy installed yet)"
expect_line "$out" "ok    pullgate.config: using /etc/pullgate/pullgate.toml"
# the package installs no trust policy: the operator puts notation's there
expect_line "$out" "fail  pullgate.policy: cannot read /etc/pullgate/trustpolicy.json: No such file or directory (os error 2)"
expect_line "$out" "ok    pullgate.state_dir: [cache] state_dir unset: verdicts are not persisted"
if [ ! -e /var/lib/kubelet/config.yaml ] && ! pgrep -x kubelet >/dev/null; then
    expect_line "$out" "warn  kubelet.process: no process named kubelet found: only its configuration file was checked"
    expect_prefix "$out" "warn  kubelet.config_file: cannot read /var/lib/kubelet/config.yaml"
    expect_line "$out" "fail  kubelet.image_service: the kubelet pulls through unix:///run/containerd/containerd.sock (from the kubelet's default, as the runtime endpoint), not pullgate's socket /run/pullgate/pullgate.sock: nothing verifies its pulls"
    expect_prefix "$out" "      fix: set \`imageServiceEndpoint: unix:///run/pullgate/pullgate.sock\` and \`containerRuntimeEndpoint: unix:///run/pullgate/pullgate.sock\` in the kubelet configuration file and restart the kubelet"
else
    echo "note: this machine has a kubelet; its wiring is not asserted"
fi

echo "== pullgate doctor --offline (state_dir = /var/lib/pullgate, through \$PULLGATE_CONFIG)"
sed 's|^# state_dir = "/var/lib/pullgate"$|state_dir = "/var/lib/pullgate"|' /etc/pullgate/pullgate.toml >"$work/state.toml"
grep -qx 'state_dir = "/var/lib/pullgate"' "$work/state.toml" || fail "the example has no commented state_dir line to set"
set +e
out=$(cd / && PULLGATE_CONFIG="$work/state.toml" /usr/bin/pullgate doctor --offline 2>/dev/null)
set -e
echo "$out"
expect_line "$out" "ok    pullgate.config: using $work/state.toml (\$PULLGATE_CONFIG)"
expect_line "$out" "ok    pullgate.state_dir: /var/lib/pullgate is safe"

echo "== dpkg -r: the binary goes, the config and the state stay"
echo marker >/var/lib/pullgate/marker
dpkg -r pullgate
[ ! -e /usr/bin/pullgate ] || fail "/usr/bin/pullgate left after dpkg -r"
[ ! -e /usr/lib/systemd/system/pullgate.service ] || fail "the unit left after dpkg -r"
[ -f /etc/pullgate/pullgate.toml ] || fail "dpkg -r removed the conffile"
[ -f /var/lib/pullgate/marker ] || fail "dpkg -r removed the state dir"
dpkg -i "$deb" >/dev/null
[ -f /var/lib/pullgate/marker ] || fail "dpkg -i again lost the state dir"
[ "$(mode /var/lib/pullgate)" = "700 root:root" ] || fail "/var/lib/pullgate after reinstall: $(mode /var/lib/pullgate)"

echo "== dpkg --purge: nothing is left"
dpkg --purge pullgate
installed=0
for p in "${owned[@]}"; do
    if [ -e "$p" ] || [ -L "$p" ]; then
        fail "$p left after dpkg --purge"
    fi
done
if dpkg-query -W pullgate >/dev/null 2>&1; then
    fail "dpkg still knows pullgate after --purge: $(dpkg-query -W -f='${db:Status-Abbrev}' pullgate)"
fi
echo "deb.sh: package built, checked, installed, doctor run, removed and purged"
