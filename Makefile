# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint types unit integration bench reliability clean browser

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first: the pinned version resolves to a local CPU build here; any
	# other torch requirement would pull gigabytes of CUDA packages.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/driftline up --demo credit

# The web console's browser test drives headless Chromium from the system's packages
# (as root, as CI runs); where none can be installed the test skips with the reason.
browser:
	test -x /usr/bin/chromium || (apt-get update -q && apt-get install -y -q chromium chromium-driver) || echo "no chromium installed: the console's browser test will skip"

test: install browser lint types
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check schemas services bench tests feature_repo
	$(BIN)/ruff format --check schemas services bench tests feature_repo

types: install
	$(BIN)/mypy

unit: install
	$(BIN)/python -m pytest -m "not integration"

integration: install
	$(BIN)/python -m pytest -m integration

bench: install
	$(BIN)/driftline bench

# The long reliability runs (every service's broker-absent start, 60 s load);
# their fast subset runs in `make test`.
reliability: install
	DRIFTLINE_RELIABILITY=1 $(BIN)/python -m pytest tests/reliability tests/common/test_security.py

clean:
	rm -rf $(VENV) .driftline .pytest_cache .mypy_cache .ruff_cache *.egg-info
