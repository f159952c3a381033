#!/usr/bin/env bash
# hazardgw uninstaller (README.md, "Install on an edge box"): stops and disables the
# service, removes the unit and every version in /opt/hazardgw.
#
# KEEPS the configuration (/etc/hazardgw), the data (/var/lib/hazardgw: spool, alarm
# journal, outbox) and the user hazardgw: a reinstall carries on where this one stopped.
#
#   ./uninstall.sh [--root DIR]
set -euo pipefail

PROG=uninstall.sh
ROOT=""
say() { printf '%s: %s\n' "$PROG" "$*"; }
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case $1 in
        --root) [ $# -ge 2 ] || die "--root needs a directory"; ROOT=${2%/}; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done

if [ -n "$ROOT" ]; then
    [ -d "$ROOT" ] || die "--root $ROOT: no such directory"
    ROOT=$(cd "$ROOT" && pwd)
elif [ "$(id -u)" != 0 ]; then
    die "run as root (sudo $0), or pass --root DIR"
fi

if [ -z "$ROOT" ] && command -v dpkg-query >/dev/null 2>&1 \
        && dpkg-query -W -f='${Status}' hazardgw 2>/dev/null | grep ' installed$' >/dev/null; then
    die "hazardgw is installed from the .deb here: apt remove hazardgw (keeps config and data too)"
fi

OPT=$ROOT/opt/hazardgw
UNIT=$ROOT/etc/systemd/system/hazardgw.service

if [ -z "$ROOT" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now hazardgw 2>/dev/null || true
    rm -f "$UNIT"
    systemctl daemon-reload
    say "stopped and disabled hazardgw.service"
else
    rm -f "$UNIT"
    say "systemd not running here (or --root): systemctl skipped"
fi
rm -rf "$OPT"
say "removed $OPT and $UNIT"
say "kept: $ROOT/etc/hazardgw (config, secrets), $ROOT/var/lib/hazardgw (store.path: spool, alarm journal," \
    "outbox) and the user hazardgw."
say "to remove them too (after a backup of the alarm journal): rm -rf $ROOT/etc/hazardgw $ROOT/var/lib/hazardgw; userdel hazardgw"
