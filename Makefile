# Two commands do all set-up on a fresh machine (see README.md):
#   make serve   create .venv, install the site's dependencies, start the study site
#   make test    create .venv, install everything, run the whole test suite
# Both are idempotent: dependencies are re-installed only when pyproject.toml or constraints.txt
# changes. constraints.txt pins every package to the versions tested together (`make lock`).
# The page's face mesh (webcam gaze computed in the browser) comes from npm: `npm ci` installs the
# versions pinned in capture_site/web/package-lock.json into capture_site/web/node_modules (not in
# git), which the site serves under /vendor/.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 5000
PYTEST_ARGS ?=

WEB    := capture_site/web

.PHONY: serve test install install-all web browser postgres lock clean

$(BIN)/python:
	$(PYTHON) scripts/check_python.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade "pip>=24" "setuptools>=68" wheel

# Site dependencies only (no torch/transformers): enough to run the study site.
# --no-compile: Python compiles each module on its first import instead; compiling all ~18,000
# files of the ML stack at install time costs about a minute of CI, and most are never imported.
PIN := -c constraints.txt --no-compile

$(VENV)/.deps-site: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install -q $(PIN) -e . --config-settings editable_mode=strict
	touch $@

# Everything: the ML stack (torch CPU wheel from disk) and the test tools.
$(VENV)/.deps-all: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install -q $(PIN) "torch==2.13.0"
	$(BIN)/pip install -q $(PIN) -e ".[ml,test]" --config-settings editable_mode=strict
	touch $(VENV)/.deps-site $@

# The editable install links each module file; new modules need this quick refresh.
install: $(VENV)/.deps-site
	$(BIN)/pip install -q --no-deps --no-build-isolation -e . --config-settings editable_mode=strict

install-all: $(VENV)/.deps-all
	$(BIN)/pip install -q --no-deps --no-build-isolation -e . --config-settings editable_mode=strict

# npm packages of the page, re-installed when the lock file changes.
$(WEB)/node_modules/.installed: $(WEB)/package.json $(WEB)/package-lock.json
	bash scripts/ensure_node.sh
	cd $(WEB) && npm ci --ignore-scripts --no-audit --no-fund
	touch $@

web: $(WEB)/node_modules/.installed

browser:
	bash scripts/ensure_chromium.sh

# The PostgreSQL tests start a throwaway server from Debian's binaries.
postgres:
	bash scripts/ensure_postgres.sh

serve: install web
	$(BIN)/gazepref serve --host $(HOST) --port $(PORT)

# The suite runs on two pytest-xdist workers (the 2-core machines CI runs on), each test file on
# one worker so that its module fixtures are built once; much of a test's time is spent waiting on
# servers, browsers and subprocesses. TEST_WORKERS=0 runs every test in this one process;
# TEST_WORKERS=auto one worker a core.
TEST_WORKERS ?= 2

test: install-all web browser postgres
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# Re-pin constraints.txt to what is installed now (after changing dependencies in pyproject.toml).
lock: install-all
	$(BIN)/pip freeze --exclude gazepref | grep -v '^-e' > constraints.txt

clean:
	rm -rf $(VENV) build *.egg-info $(WEB)/node_modules
