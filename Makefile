# flowbase — `make serve` runs it, `make test` proves it. Both install what they need first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PORT ?= 7800

.PHONY: install serve test test-deps lint typecheck bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

serve: install
	$(BIN)/flowbase serve --host 127.0.0.1 --port $(PORT) --data-dir .flowbase

# What the tests drive besides Python: Debian's Chromium (web UI tests, needs root or a preinstalled
# browser) and the agent CLIs from npm (Claude Code, Codex), pinned in tests/install_agents.sh.
test-deps:
	@command -v chromium >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core; }
	bash tests/install_agents.sh

test: install test-deps
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: install
	$(BIN)/ruff check host plugin_runner plugin_sdk plugins tests bench

typecheck: install
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .flowbase .pytest_cache .mypy_cache

include bench/Makefile.inc
