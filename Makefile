# Set-up and checks of the blending companion. `make check` runs every check from a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of PyTorch is enough for the embedded model; pin it so pip does not pull a
# multi-GB CUDA build. On a GPU machine: make TORCH=torch ...
TORCH ?= torch==2.13.0

.PHONY: setup check clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

check: setup
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .pytest_cache
