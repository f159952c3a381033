#!/usr/bin/env bash
# hazardgw uninstaller (README.md, "Install on an edge box"): stops and disables the
# service, removes the unit and every version in /opt/hazardgw.
#
# KEEPS the configuration (/etc/hazardgw), the data (/var/lib/hazardgw: spool, alarm
# journal, outbox) and the user hazardgw: a reinstall carries on where this one stopped.
#
#   ./uninstall.sh [--root DIR]
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PROG=uninstall.sh
ROOT=""
[ -r "$HERE/install-lib.sh" ] || { echo "$PROG: error: $HERE/install-lib.sh is missing (it ships beside $PROG)" >&2; exit 1; }
# shellcheck source=packaging/install-lib.sh
. "$HERE/install-lib.sh"

while [ $# -gt 0 ]; do
    case $1 in
        --root) [ $# -ge 2 ] || die "--root needs a directory"; ROOT=${2%/}; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done

resolve_root

if deb_installed; then
    die "hazardgw is installed from the .deb here: apt remove hazardgw (keeps config and data too)"
fi

OPT=$ROOT/opt/hazardgw
UNIT=$ROOT/etc/systemd/system/hazardgw.service

if systemd_running; then
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
