# `make run` bootstraps .venv from the lock file and runs the pipeline; `make test` runs the test suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed

# DVC stage commands call `python`: make it the project's.
export PATH := $(BIN):$(PATH)

.PHONY: run test venv lock ui clean-outputs server server-stop server-status

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
	$(BIN)/python -m pytest

ui: $(STAMP)
	$(BIN)/python -m pipeline ui

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
