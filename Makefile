# `make run` serves the product on embedded defaults; `make test` runs every check.
# Both create the virtualenv in .venv and install the project into it first.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck pytest fuzz bench clean install

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(PY) -m peerspark_rt serve

lint: $(STAMP)
	$(VENV)/bin/ruff check peerspark_rt tests bench
	$(VENV)/bin/ruff format --check peerspark_rt tests bench
	$(VENV)/bin/lint-imports

typecheck: $(STAMP)
	$(VENV)/bin/mypy

pytest: $(STAMP)
	$(VENV)/bin/pytest $(PYTEST_ARGS)

test: lint typecheck pytest

# The contract fuzzer at length, with a fresh seed (printed in the summary, to replay a failure).
fuzz: $(STAMP)
	PEERSPARK_FUZZ_EXAMPLES=$${PEERSPARK_FUZZ_EXAMPLES:-200} PEERSPARK_FUZZ_SEED=$${PEERSPARK_FUZZ_SEED:-random} \
		$(VENV)/bin/pytest tests/test_contract_fuzz.py

bench: $(STAMP)
	$(PY) -m bench all

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
