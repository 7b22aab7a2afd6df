# Two commands for a fresh machine: `make serve` and `make test`.
PYTHON ?= python3
VENV ?= .venv
# The CPU wheel on CPU machines; never let a resolver pull the multi-GB CUDA build by accident.
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: setup serve test lint demo clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check "$(TORCH)"
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

serve: setup
	$(BIN)/vlserve serve

test: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

lint: setup
	$(BIN)/ruff check src tests bench

demo: setup
	$(BIN)/vlserve demo build

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
