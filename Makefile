# The two commands of the README:
#   make run    create the virtual environment if needed and start lazyreg on 127.0.0.1:5000
#   make test   install what the tests need (Debian packages, Python packages) and run them all
#               (after ruff, the import-layer check and mypy --strict)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
SHARED ?= $(abspath ../shared)
HOST ?= 127.0.0.1
PORT ?= 5000
DATA_DIR ?= ./lazyreg-data
PYTEST_ARGS ?=

.PHONY: run test unit deps venv lint dist bench bench-quick demo clean

$(VENV)/.installed: pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev,bench]'
	touch $@

venv: $(VENV)/.installed

# --migrate: a developer's database follows the schema of the code checked out.
run: venv
	$(VENV)/bin/lazyreg serve --host $(HOST) --port $(PORT) --data-dir $(DATA_DIR) --migrate

# The wheel (dist/lazyreg-VERSION-py3-none-any.whl) that `pipx install` takes.
dist: venv
	$(VENV)/bin/pip wheel --quiet --no-deps --no-build-isolation --wheel-dir dist .

# Debian packages for the end-to-end tests: the CNCF registry, skopeo, podman
# (via the rig's install-deps), the S3 server (Swift with its S3 API, via s3-server
# install), a PostgreSQL server, Chromium (the status page test), umoci (it reads
# the OCI layouts that exports write), promtool and systemd-analyze (deploy/), and
# containerd (`ctr --user` logs in through POST /token; the test runs its own daemon).
deps:
	@test -x $(SHARED)/upstream/install-deps || { echo "no test rig in $(SHARED): set SHARED=/path/to/shared"; exit 1; }
	@set -e; if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	$$SUDO $(SHARED)/upstream/install-deps; \
	$$SUDO $(SHARED)/s3/s3-server install >/dev/null; \
	if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq postgresql >/dev/null; \
	fi; \
	if ! command -v chromium >/dev/null 2>&1; then \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; \
	fi; \
	if ! command -v umoci >/dev/null 2>&1; then \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq umoci >/dev/null; \
	fi; \
	if ! command -v promtool >/dev/null 2>&1 || ! command -v systemd-analyze >/dev/null 2>&1; then \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq prometheus systemd >/dev/null; \
	fi; \
	if ! command -v containerd >/dev/null 2>&1 || ! command -v ctr >/dev/null 2>&1; then \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq containerd >/dev/null; \
	fi

test: deps venv
	LAZYREG_SHARED=$(SHARED) $(VENV)/bin/ruff check .
	$(VENV)/bin/python -m tools.layers
	$(VENV)/bin/mypy
	LAZYREG_SHARED=$(SHARED) $(VENV)/bin/pytest $(PYTEST_ARGS)

# Tests that need no root and no server outside the test process (no registry,
# skopeo, podman or PostgreSQL): the end-to-end tests are left out.
unit: venv
	$(VENV)/bin/pytest -q -n auto -m "not e2e and not postgres" --ignore=tests/e2e $(PYTEST_ARGS)

# Style, layering (imports point down: tools/layers.py) and types (mypy --strict).
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python -m tools.layers --quiet
	$(VENV)/bin/mypy

bench: deps venv
	LAZYREG_SHARED=$(SHARED) $(VENV)/bin/python -m bench.run

bench-quick: deps venv
	LAZYREG_SHARED=$(SHARED) $(VENV)/bin/python -m bench.run --quick

demo: deps venv
	SHARED=$(SHARED) ./demo.sh

clean:
	rm -rf $(VENV) lazyreg-data .pytest_cache .ruff_cache *.egg-info build dist
