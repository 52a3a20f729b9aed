# The blending companion. Two commands do all the set-up on a fresh machine:
#   make book    regenerate every figure (papermill) and build the book into _build/html
#   make check   run every check: unit tests, nbval, the book build, the browser check
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of PyTorch is enough for the embedded model; pinned so that pip does not pull a
# multi-GB CUDA build. On a GPU machine: make book TORCH=torch MODEL=... DEVICE=cuda
TORCH ?= torch==2.13.0
# Which model draws the figures, on which device (empty: the best available).
MODEL ?= embedded
DEVICE ?=
SITE := _build/html

.PHONY: setup figures book check browser clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

figures: setup
	$(BIN)/python -m blending.figures --model "$(MODEL)" $(if $(DEVICE),--device "$(DEVICE)")

book: figures
	$(BIN)/jupyter-book build . --warningiserror --keep-going
	@echo "The book: $(SITE)/index.html"

# Debian's Chromium drives the browser check (browser downloads do not work offline).
browser:
	@command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }

check: setup browser
	$(BIN)/python -m pytest tests notebooks --nbval-lax --nbval-current-env
	$(MAKE) book
	$(BIN)/python -m pytest tests/site --site $(SITE)

clean:
	rm -rf $(VENV) _build .pytest_cache notebooks/figures
