#!/usr/bin/env bash
# Install hazardgw from this wheelhouse (hazardgw-<version>-wheels-<arch>-cp<XY>.tar.gz)
# with the box's own CPython, without any network (README.md, "Install on an edge box").
#
#   sudo ./install-wheels.sh [--python PYTHON] [--root DIR] [--force] [--rollback]
#
#   --python PYTHON   the interpreter (default: python3.<minor of this wheelhouse>, else python3);
#                     it must be CPython of the wheelhouse's version
#   --root, --force, --rollback: as for install.sh
#
# Creates a venv at /opt/hazardgw/<version> (pip from the wheelhouse, so python3-venv /
# ensurepip is not needed), installs requirements.lock and the hazardgw wheel with
# --no-index, links /opt/hazardgw/<version>/hazardgw -> bin/hazardgw, then runs install.sh
# (user, /etc/hazardgw, /var/lib/hazardgw, hazardgw check, current/previous, systemd unit).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PROG=install-wheels.sh
say() { printf '%s: %s\n' "$PROG" "$*"; }
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }
buildinfo() { sed -n "s/^$1=//p" "$HERE/BUILDINFO" | head -n 1; }

VERSION=$(buildinfo version)
PYVER=$(buildinfo python)
ARCH=$(buildinfo arch)
GLIBC_MIN=$(buildinfo glibc_min)
WHEELS=$HERE/wheels
if [ -z "$VERSION" ] || [ -z "$PYVER" ]; then die "$HERE/BUILDINFO is incomplete"; fi

PYTHON=""
ROOT=""
FORCE=0
PASS=()
while [ $# -gt 0 ]; do
    case $1 in
        --python) PYTHON=$2; shift 2 ;;
        --root) ROOT=${2%/}; PASS+=("$1" "$2"); shift 2 ;;
        --force) FORCE=1; PASS+=("$1"); shift ;;
        --rollback) exec "$HERE/install.sh" "$@" ;;
        -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done
if [ -z "$PYTHON" ]; then
    PYTHON=$(command -v "python$PYVER" || command -v python3 || true)
    [ -n "$PYTHON" ] || die "no python$PYVER or python3 found: pass --python"
fi
if [ -n "$ROOT" ]; then
    [ -d "$ROOT" ] || die "--root $ROOT: no such directory"
    ROOT=$(cd "$ROOT" && pwd)
elif [ "$(id -u)" != 0 ]; then
    die "run as root (sudo $0), or pass --root DIR"
fi

# ------------------------------------------------------------------ preflight
[ "$(uname -m)" = "$ARCH" ] || die "this wheelhouse is for $ARCH, this machine is $(uname -m)"
have=$("$PYTHON" -c 'import platform, sys; print(platform.python_implementation(), "%d.%d" % sys.version_info[:2])') \
    || die "$PYTHON does not run"
[ "$have" = "CPython $PYVER" ] || die "this wheelhouse is for CPython $PYVER, $PYTHON is $have"
if [ -n "$GLIBC_MIN" ]; then
    libc=$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{ print $2 }')
    [ -n "$libc" ] || die "these wheels need GNU libc >= $GLIBC_MIN (manylinux); this system has none"
    [ "$(printf '%s\n%s\n' "$GLIBC_MIN" "$libc" | sort -V | head -n 1)" = "$GLIBC_MIN" ] \
        || die "these wheels need GNU libc >= $GLIBC_MIN, the system has $libc"
fi

# pip sees only the wheelhouse: no index, no find-links or constraints from pip.conf / PIP_*
pip_offline() {
    env -u PIP_FIND_LINKS -u PIP_INDEX_URL -u PIP_EXTRA_INDEX_URL -u PIP_CONSTRAINT \
        PIP_CONFIG_FILE=/dev/null PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
        "$@" --no-index --find-links "$WHEELS"
}

# ------------------------------------------------------------------ the venv
DEST=$ROOT/opt/hazardgw/$VERSION
if [ -e "$DEST" ] && [ ! -e "$DEST/.incomplete" ] && [ "$FORCE" = 0 ]; then
    say "$DEST is already installed: kept as it is (--force recreates it)"
else
    # A venv cannot be moved after it is made: build it in place, marked incomplete until done.
    rm -rf "$DEST"
    mkdir -p "$(dirname "$DEST")"
    "$PYTHON" -m venv --without-pip "$DEST"
    touch "$DEST/.incomplete"
    pip_wheel=$(ls "$WHEELS"/pip-*.whl)
    say "venv $DEST ($have), pip from the wheelhouse"
    pip_offline "$DEST/bin/python" "$pip_wheel/pip" install -q pip
    pip_offline "$DEST/bin/python" -m pip install -q -r "$HERE/requirements.lock"
    pip_offline "$DEST/bin/python" -m pip install -q --no-deps "hazardgw==$VERSION"
    ln -sfn bin/hazardgw "$DEST/hazardgw"
    install -m 0755 "$HERE/install.sh" "$HERE/uninstall.sh" "$DEST/"
    install -m 0644 "$HERE/install-lib.sh" "$HERE/BUILDINFO" "$HERE/INSTALL.txt" "$DEST/"
    cp -r "$HERE/share" "$DEST/share"
    "$DEST/hazardgw" --help >/dev/null
    rm -f "$DEST/.incomplete"
    say "installed $DEST"
fi

exec "$HERE/install.sh" --in-place ${PASS[@]+"${PASS[@]}"}
