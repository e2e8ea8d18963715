# `make run` bootstraps .venv from the lock file and runs the pipeline; `make test` runs the test suite; `make audit`
# looks the locked packages up in a vulnerability database.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed

# DVC stage commands call `python`: make it the project's.
export PATH := $(BIN):$(PATH)

.PHONY: run test venv lock ui clean-outputs server server-stop server-status audit audit-service

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || \
		{ echo "error: Python 3.11 is required, got $$($(PYTHON) --version)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	$(BIN)/python -m pip check
	@touch $@

run: $(STAMP)
	$(BIN)/dvc repro
	@$(BIN)/python -m pipeline summary

test: $(STAMP)
	$(BIN)/python -m pytest --durations=15  # the slowest tests, printed: what CI time is spent on

ui: $(STAMP)
	$(BIN)/python -m pipeline ui

# Known vulnerabilities in the pinned packages: pip-audit (pinned; installed into .venv, within the lock's pins, on
# first use) asks a vulnerability service about every line of requirements.lock: PyPI's JSON API by default,
# AUDIT_SERVICE=osv for osv.dev. --strict: a package it could not look up fails the audit, so an unreachable service
# fails it too, never passes it silently; audit-service checks the service answers first and says so in one line.
# Accepted findings go in audit-ignore.txt, one ID per line with the reason after a #.
PIP_AUDIT_VERSION := 2.10.1
AUDIT_SERVICE ?= pypi
AUDIT_IGNORES = $(foreach id,$(shell sed -e 's/\#.*//' audit-ignore.txt 2>/dev/null),--ignore-vuln $(id))
define AUDIT_PROBE
import json, sys, urllib.request
service, version = sys.argv[1], sys.argv[2]
if service == "osv":
    url = "https://api.osv.dev/v1/query"
    body = json.dumps({"package": {"name": "pip-audit", "ecosystem": "PyPI"}, "version": version}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
else:
    url = request = f"https://pypi.org/pypi/pip-audit/{version}/json"
try:
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.loads(response.read())
    if service != "osv" and "vulnerabilities" not in answer:
        raise ValueError("no 'vulnerabilities' field in the answer")
except Exception as exc:
    other = "pypi" if service == "osv" else "osv"
    sys.exit(f"audit: error: the vulnerability service ({service}) does not answer at {url}: {exc}; the audit "
             f"cannot run from here (try AUDIT_SERVICE={other}, or a machine that reaches it)")
endef
export AUDIT_PROBE

audit-service: $(STAMP)
	@$(BIN)/python -c "$$AUDIT_PROBE" $(AUDIT_SERVICE) $(PIP_AUDIT_VERSION)

audit: audit-service
	@$(BIN)/pip-audit --version 2>/dev/null | grep -qx 'pip-audit $(PIP_AUDIT_VERSION)' || \
		$(BIN)/python -m pip install --quiet --disable-pip-version-check -c requirements.lock \
		pip-audit==$(PIP_AUDIT_VERSION)
	$(BIN)/pip-audit --requirement requirements.lock --no-deps --disable-pip --strict --progress-spinner off \
		--vulnerability-service $(AUDIT_SERVICE) $(AUDIT_IGNORES)

# A team tracking server on 127.0.0.1: PostgreSQL (backend store) + `mlflow server` serving artifacts, all in
# .server/. Then: export MLFLOW_TRACKING_URI=http://127.0.0.1:$(SERVER_PORT). SERVER_ARGS=--auth for basic auth.
SERVER_DIR ?= .server
SERVER_HOST ?= 127.0.0.1
SERVER_PORT ?= 5000
PG_PORT ?= 5433
SERVER_ARGS ?=
server: $(STAMP)
	$(BIN)/python -m pipeline server start --dir $(SERVER_DIR) --host $(SERVER_HOST) --port $(SERVER_PORT) \
		--pg-port $(PG_PORT) $(SERVER_ARGS)

server-stop:
	$(BIN)/python -m pipeline server stop --dir $(SERVER_DIR)

server-status:
	$(BIN)/python -m pipeline server status --dir $(SERVER_DIR)

# Re-pin every package from pyproject.toml's ranges into requirements.lock (needs the package registry).
# torch is written without its local build tag so a CUDA machine installs the CUDA build of the same version.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet -e '.[dev]'
	.lock-venv/bin/python -m pip freeze --exclude-editable | sed -E 's/^(torch==[^+]+)\+.*/\1/' > requirements.lock
	rm -rf .lock-venv
