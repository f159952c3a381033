# Shared by the packaging/build-*.sh scripts (sourced, not run).
# shellcheck shell=bash

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PY:-python3}
DIST=${DIST:-$ROOT/dist}

say() { printf '%s: %s\n' "$(basename "$0")" "$*"; }
die() { printf '%s: error: %s\n' "$(basename "$0")" "$*" >&2; exit 1; }

project_version() {
    "$PY" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' \
        "$ROOT/pyproject.toml"
}

# The exact pins of the named packages from requirements-dev.lock (packaging tools).
dev_pins() {
    local name
    for name in "$@"; do
        grep -i -E "^${name}==" "$ROOT/requirements-dev.lock" \
            || die "requirements-dev.lock has no pin for $name"
    done
}

# pip without the machine's pip configuration (no index, no find-links, no constraints):
# what the offline box will see. offline_pip PYTHON WHEELDIR pip-args...
offline_pip() {
    local python=$1 wheels=$2
    shift 2
    env -u PIP_FIND_LINKS -u PIP_INDEX_URL -u PIP_EXTRA_INDEX_URL -u PIP_CONSTRAINT \
        PIP_CONFIG_FILE=/dev/null PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
        "$python" -m pip "$@" --no-index --find-links "$wheels"
}

# A venv with pip from the wheelhouse: needs neither the network nor ensurepip (Debian's
# python3-venv). offline_venv PYTHON DIR WHEELDIR
offline_venv() {
    local python=$1 dir=$2 wheels=$3 pip_wheel
    pip_wheel=$(find "$wheels" -maxdepth 1 -name "pip-*.whl" | head -n 1)
    [ -n "$pip_wheel" ] || die "$wheels has no pip wheel"
    "$python" -m venv --without-pip "$dir"
    env -u PIP_FIND_LINKS -u PIP_INDEX_URL -u PIP_EXTRA_INDEX_URL -u PIP_CONSTRAINT \
        PIP_CONFIG_FILE=/dev/null PIP_DISABLE_PIP_VERSION_CHECK=1 \
        "$dir/bin/python" "$pip_wheel/pip" install -q --no-index --find-links "$wheels" pip
}

# dist/SHA256SUMS over every artifact in dist/ (checked on the box before installing).
write_checksums() {
    (cd "$DIST" && find . -maxdepth 1 -type f \( -name 'hazardgw*.tar.gz' -o -name 'hazardgw_*.deb' \) -printf '%P\n' \
        | LC_ALL=C sort | xargs -r sha256sum > SHA256SUMS)
}

git_commit() { git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null || echo unknown; }
