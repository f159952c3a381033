# Shared by install.sh and uninstall.sh (sourced, not run). Ships beside them wherever they
# go: the bundle, the wheelhouse, every installed version (/opt/hazardgw/<version>/).
# The sourcing script sets PROG (its name in messages) and ROOT (--root, or "").
# shellcheck shell=bash

say() { printf '%s: %s\n' "$PROG" "$*"; }
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }

# --help: the script's header comment (line 2 up to `set -euo`)
usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }

# ROOT made absolute (it must exist); without --root the script must run as root.
resolve_root() {
    if [ -n "$ROOT" ]; then
        [ -d "$ROOT" ] || die "--root $ROOT: no such directory"
        ROOT=$(cd "$ROOT" && pwd)
    elif [ "$(id -u)" != 0 ]; then
        die "run as root (sudo $0), or pass --root DIR"
    fi
}

# True on a box (no --root) where dpkg manages hazardgw (installed from the .deb).
deb_installed() {
    [ -z "$ROOT" ] && command -v dpkg-query >/dev/null 2>&1 \
        && dpkg-query -W -f='${Status}' hazardgw 2>/dev/null | grep ' installed$' >/dev/null
}

systemd_running() { [ -z "$ROOT" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; }
