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
# what the offline box will see.
offline_pip() {  # offline_pip PYTHON WHEELDIR pip-args...
    local python=$1 wheels=$2
    shift 2
    env -u PIP_FIND_LINKS -u PIP_INDEX_URL -u PIP_EXTRA_INDEX_URL -u PIP_CONSTRAINT \
        PIP_CONFIG_FILE=/dev/null PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
        "$python" -m pip "$@" --no-index --find-links "$wheels"
}

git_commit() { git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null || echo unknown; }
