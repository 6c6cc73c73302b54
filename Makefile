# Two commands on a fresh machine: `make run` (the bot) and `make test` (lint + tests).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: run test lint serve train clean

$(VENV)/.run-installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

# The tests cover the training code too (transforms, the FaceBoxes teacher), so they install the train
# extra; torch 2.13.0 is named first so pip takes the CPU build.
$(VENV)/.dev-installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -e ".[dev,train]"
	touch $@ $(VENV)/.run-installed

run: $(VENV)/.run-installed
	$(PY) bot.py

serve: $(VENV)/.run-installed
	$(PY) -m inference serve

lint: $(VENV)/.dev-installed
	$(VENV)/bin/ruff check .

test: $(VENV)/.dev-installed
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

train:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -e ".[train]"

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
