# flowbase — `make serve` runs it, `make test` proves it. Both install what they need first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PORT ?= 7800

.PHONY: install serve test lint typecheck bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

serve: install
	$(BIN)/flowbase serve --host 127.0.0.1 --port $(PORT) --data-dir .flowbase

test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: install
	$(BIN)/ruff check host plugin_runner plugin_sdk plugins tests bench

typecheck: install
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .flowbase .pytest_cache .mypy_cache
