# hazardgw: the two commands are `make demo` and `make test`. Both set everything up first.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
APT_PKGS := mosquitto mosquitto-clients influxdb victoria-metrics chromium
# Binaries that prove the apt packages are present.
APT_BINS := mosquitto mosquitto_pub influxd victoria-metrics chromium

# The node-opcua server of the OPC UA interoperability test (tests/test_opcua_interop.py),
# installed from its lock file with the machine's Node.js (>= 18) and npm.
INTEROP := devkit/interop/node-opcua

.PHONY: all setup system-deps venv interop demo test lint bench bundle deb wheels clean

all: test

setup: system-deps venv

# Installs the Debian packages when a binary is missing. Services are never enabled or
# started here: the demo and the tests run their own copies as child processes.
system-deps:
	@missing=0; for b in $(APT_BINS); do command -v $$b >/dev/null 2>&1 || [ -x /usr/sbin/$$b ] || missing=1; done; \
	if [ $$missing = 1 ]; then \
	  echo "installing Debian packages: $(APT_PKGS)"; \
	  SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends $(APT_PKGS); \
	fi

$(BIN)/.installed: requirements.lock requirements-dev.lock pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.lock -r requirements-dev.lock
	$(BIN)/pip install -q --no-deps -e .
	touch $@

venv: $(BIN)/.installed

$(INTEROP)/node_modules/.installed: $(INTEROP)/package.json $(INTEROP)/package-lock.json
	cd $(INTEROP) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

interop: $(INTEROP)/node_modules/.installed

demo: setup
	$(BIN)/hazardgw demo -c config/demo-site.yaml

test: setup interop
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/ruff format --check .

bench: setup
	$(BIN)/python -m bench

# Edge-box artifacts (packaging/README.md, README "Install on an edge box"), in dist/.
# bundle: self-contained (interpreter + dependencies) for this machine's architecture, built in
# its own venv of requirements.lock + PyInstaller. With WHEELHOUSE=<wheelhouse tarball or dir
# from `make wheels`> it needs no network (and no dev venv): an aarch64 box builds its own.
bundle: $(if $(WHEELHOUSE),,venv)
	PY=$(PY) packaging/build-bundle.sh $(if $(WHEELHOUSE),--wheelhouse $(WHEELHOUSE))

# deb: dist/hazardgw_<version>_<arch>.deb from the bundle (lintian when installed).
deb: bundle
	PY=$(PY) packaging/build-deb.sh

# wheels: wheelhouses for x86_64 and aarch64, CPython 3.11 and 3.12 (needs the package index).
wheels: venv
	PY=$(abspath $(BIN)/python) packaging/build-wheels.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache build dist *.egg-info $(INTEROP)/node_modules
