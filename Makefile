# rqes: `make run` serves with embedded defaults, `make test` runs the whole suite.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SOFTHSM := /usr/bin/softhsm2-util
export RQES_DATA_DIR ?= $(CURDIR)/var

.PHONY: run test test-unit test-integration demo bench conformance init deps softhsm clean

$(SOFTHSM):
	@if ! command -v softhsm2-util >/dev/null; then \
	  echo "installing softhsm2 (Debian package)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq softhsm2 >/dev/null; \
	fi

softhsm: $(SOFTHSM)

# Debian's Chromium drives the web pages in the tests (Playwright with executable_path; no browser download).
/usr/bin/chromium:
	@if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

deps: $(STAMP) $(SOFTHSM)

init: deps
	$(BIN)/rqes init

run: init
	RQES_DEMO=$${RQES_DEMO:-1} $(BIN)/rqes serve --host 127.0.0.1 --port 8080

test: deps /usr/bin/chromium
	$(BIN)/python -m pytest -q -p no:cacheprovider tests

test-unit: deps
	$(BIN)/python -m pytest -q tests/unit

demo: deps
	$(BIN)/python -m demo.run

bench: deps
	$(BIN)/python -m bench.run

conformance: deps
	$(BIN)/python -m conformance --help

clean:
	rm -rf $(VENV) var .pytest_cache
