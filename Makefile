# The blending companion. Two commands do all the set-up on a fresh machine:
#   make book    regenerate every figure (papermill) and build the book into _build/html
#   make check   run every check: lint and format (ruff), unit tests, nbval, the book build, the browser checks (the site;
#                the chapters in JupyterLab), and the unit tests with the oldest versions (make check-oldest)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# PyTorch, installed before the package. Which build a machine gets:
#   - with an NVIDIA GPU (nvidia-smi works): PyPI's default build, CUDA on Linux;
#   - without one, where PyTorch's CPU index is reachable: the CPU build from that index (~200 MB);
#   - where only PyPI is reachable: PyPI's wheel, which on Linux is the CUDA build (several GB, and
#     it runs on the CPU too); on macOS and Windows PyPI's wheel is the CPU build.
# Overrides: TORCH=... (e.g. TORCH=torch for the newest; TORCH_INDEX= for PyPI's build, or another
# index such as https://download.pytorch.org/whl/cu126).
TORCH ?= torch==2.13.0
TORCH_CPU_INDEX := https://download.pytorch.org/whl/cpu
# The probe runs once, when an install needs it.
TORCH_INDEX ?= $(eval TORCH_INDEX := $$(shell nvidia-smi >/dev/null 2>&1 || $(PYTHON) -c "import urllib.request as u; u.urlopen('$(TORCH_CPU_INDEX)/torch/', timeout=5)" >/dev/null 2>&1 && echo $(TORCH_CPU_INDEX)))$(TORCH_INDEX)
PIP_TORCH = python -m pip install --quiet $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
# The versions that drew the committed figures, made with Python 3.11: used there; another Python
# resolves afresh within pyproject.toml's bounds. LOCK= resolves afresh on 3.11 too.
LOCK ?= $(if $(filter 3.11,$(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)),constraints/lock.txt)
# The oldest supported versions (pyproject.toml's lower bounds), checked in their own venv.
OLDEST_VENV ?= .venv-oldest
OLDEST_TORCH = $(shell sed -n 's/^torch==//p' constraints/oldest.txt)
# make check: the regenerated notebooks must equal the committed ones, byte for byte. The figures
# are drawn on pinned numeric paths (blending/numerics.py), the same on every x86-64 CPU with
# AVX2; elsewhere the check is skipped with one line (0 turns it off everywhere).
RERUN_CHECK ?= 1
# Which model draws the figures, on which device (empty: the best available).
MODEL ?= embedded
DEVICE ?=
SITE := _build/html

.PHONY: setup figures book verify lint check check-oldest browser clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@echo "PyTorch: $(TORCH) from $(or $(TORCH_INDEX),PyPI)"
	$(BIN)/$(PIP_TORCH) "$(TORCH)"
	$(BIN)/python -m pip install --quiet $(if $(LOCK),-c $(LOCK)) -e ".[test]"
	touch $@

# The unit tests with the oldest supported versions (constraints/oldest.txt), torch included; the
# slow ones test the companion's own machinery, which make check runs with the locked versions.
check-oldest: $(OLDEST_VENV)/.installed
	$(OLDEST_VENV)/bin/python -m pytest tests --ignore=tests/site -m "not slow" -p no:cacheprovider

$(OLDEST_VENV)/.installed: pyproject.toml constraints/oldest.txt
	rm -rf $(OLDEST_VENV)
	$(PYTHON) -m venv $(OLDEST_VENV)
	$(OLDEST_VENV)/bin/python -m pip install --quiet --upgrade pip
	@echo "PyTorch: torch==$(OLDEST_TORCH) from $(or $(TORCH_INDEX),PyPI)"
	$(OLDEST_VENV)/bin/$(PIP_TORCH) "torch==$(OLDEST_TORCH)"
	$(OLDEST_VENV)/bin/python -m pip install --quiet -c constraints/oldest.txt -e ".[test]"
	touch $@

# Regenerate the figures with MODEL: the explicit way to replace notebooks another model drew.
figures: setup
	$(BIN)/python -m blending.companion.figures --model "$(MODEL)" $(if $(DEVICE),--device "$(DEVICE)")

# The book: notebooks that another model drew (Stable Diffusion on a GPU, say) are kept as committed.
book: setup
	$(BIN)/python -m blending.companion.figures --model "$(MODEL)" --keep-other-models $(if $(DEVICE),--device "$(DEVICE)")
	$(BIN)/jupyter-book build . --warningiserror --keep-going
	@echo "The book: $(SITE)/index.html"

# Regenerate every notebook in a temporary folder, with the model that drew it, and compare each
# figure with the committed one (the committed files are not touched); exit 1 names what differs.
verify: setup
	$(BIN)/python -m blending.companion.figures --check $(if $(DEVICE),--device "$(DEVICE)")

# The browser check's Chromium; tests/site/conftest.py looks for one: CHROMIUM=/path/to/chrome, else
# chromium on the PATH, else Playwright's download. Where there is none, root on Debian or Ubuntu
# apt-installs chromium, and failing that Playwright's download is tried (it fails offline); neither
# stops make. Still none: one line says how to get one, and the browser tests are skipped (they fail
# under CI=true). It needs the venv (made first if missing, never remade here).
FIND_CHROMIUM = $(BIN)/python -m tests.site.conftest
browser: $(if $(wildcard $(BIN)/python),,setup)
	@$(FIND_CHROMIUM) >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } || true
	@$(FIND_CHROMIUM) >/dev/null 2>&1 || $(BIN)/python -m playwright install chromium >/dev/null 2>&1 || true
	@$(FIND_CHROMIUM) || true

# Lint and format (ruff, configured in pyproject.toml): `ruff format .` fixes what the second line finds.
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

check: setup browser lint
	$(BIN)/python -m pytest tests notebooks --nbval-lax --nbval-current-env --ignore-glob="*.failed.ipynb"
	$(MAKE) book
ifeq ($(RERUN_CHECK),1)
	@if $(BIN)/python -m blending.companion.numerics --can-pin; then \
	  git diff --quiet -- notebooks || { git diff --stat -- notebooks; \
	  echo "The regenerated notebooks differ from the committed ones (above): a rerun must change nothing."; exit 1; }; \
	else echo "Rerun check skipped: this $$(uname -m) CPU cannot take the pinned numeric paths (x86-64 with AVX2), so its bytes differ; the fingerprints' tolerance checked the pictures."; fi
endif
	$(BIN)/python -m pytest tests/site --site $(SITE) --jupyterlab
	$(MAKE) check-oldest

clean:
	rm -rf $(VENV) $(OLDEST_VENV) _build .pytest_cache notebooks/figures
