# `make run` serves the product on embedded defaults; `make test` runs every check.
# Both create the virtualenv in .venv and install the project into it first.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run stop test lint typecheck pytest fuzz bench clean install

$(STAMP): pyproject.toml constraints.txt setup.py peerspark_rt/actors/_fanout.c
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(PY) -m peerspark_rt serve

# Stop what `make run` left running: the node and its embedded PostgreSQL (also one a killed
# node left behind).
stop:
	@if [ -x $(PY) ]; then $(PY) -m peerspark_rt stop; else echo "nothing to stop (no $(VENV))"; fi

lint: $(STAMP)
	$(VENV)/bin/ruff check peerspark_rt tests bench
	$(VENV)/bin/ruff format --check peerspark_rt tests bench
	$(VENV)/bin/lint-imports

typecheck: $(STAMP)
	$(VENV)/bin/mypy

# Two test processes, a file's tests together (they share its servers); PYTEST_ARGS= runs them
# in one process.
PYTEST_ARGS ?= -n 2 --dist loadfile

pytest: $(STAMP)
	$(VENV)/bin/pytest $(PYTEST_ARGS)

test: lint typecheck pytest

# The contract fuzzer at length, with a fresh seed (printed in the summary, to replay a failure).
fuzz: $(STAMP)
	PEERSPARK_FUZZ_EXAMPLES=$${PEERSPARK_FUZZ_EXAMPLES:-200} PEERSPARK_FUZZ_SEED=$${PEERSPARK_FUZZ_SEED:-random} \
		$(VENV)/bin/pytest tests/test_contract_fuzz.py

bench: $(STAMP)
	@command -v npm >/dev/null || { echo "make bench needs npm (Socket.IO peer): apt-get install npm"; exit 1; }
	$(PY) -m bench all

# Removes what builds and runs made. .data (the embedded database with every account and
# message, uploads, generated secrets) only when you say so: asked on a terminal, or RESET=1.
clean: stop
	rm -rf .pytest_cache .mypy_cache .ruff_cache .hypothesis bench/out test-output
	@if [ -d .data ]; then \
	  if [ "$(RESET)" = 1 ]; then rm -rf .data && echo "removed .data"; \
	  elif [ -t 0 ]; then \
	    printf 'Also delete .data (the embedded database: every account, pod and message; uploads; secrets)? [y/N] '; \
	    read answer; case "$$answer" in \
	      y|Y|yes) rm -rf .data && echo "removed .data";; \
	      *) echo "kept .data (make clean RESET=1 deletes it without asking)";; esac; \
	  else echo "kept .data: make clean RESET=1 deletes it (the embedded database, uploads, secrets)"; fi; \
	fi
	rm -rf $(VENV)
