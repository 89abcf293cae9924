# Two commands do all the set-up on a fresh machine with only Python and pip (and, for the
# render check, Debian's apt to install Chromium when it is missing):
#   make book   build the Jupyter Book to _build/html (executes every chapter)
#   make test   build the book, then run the whole test suite: peers (torch, optax) included,
#               the render check of every built page in headless Chromium, and the core tests
#               with the oldest numpy and array-api-compat that pyproject.toml allows (make floors)
# Both create .venv if it is missing and reuse it afterwards.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: book test clean browser floors

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# A stamp per extra: reinstall only when pyproject.toml changes.
$(VENV)/.stamp-test: pyproject.toml tests/constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -c tests/constraints.txt -e '.[test,cuda-check,peers,dask]'
	touch $@

$(VENV)/.stamp-book: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[book]'
	$(BIN)/python -c "import matplotlib.pyplot"   # warm the font cache outside the build
	touch $@

# Chromium for tests/test_render.py, from Debian's packages.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "Installing Chromium (Debian package chromium) for the render check"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# REFIMPL_REQUIRE_BOOK turns "book not built" or "no Chromium" into failures instead of skips.
test: $(VENV)/.stamp-test browser book floors
	REFIMPL_REQUIRE_BOOK=1 $(BIN)/python -m pytest

# The declared floors, proved: a second, small environment with the oldest numpy and
# array-api-compat that pyproject.toml allows (pins written from its ">=" lines), on Python 3.10
# where one is installed, runs the tests that need no peer library and checks the golden vectors.
FLOORS        := .venv-floors
FLOORS_PYTHON ?= $(firstword $(shell python3.10 -c '' 2>/dev/null && echo python3.10) \
                   $(wildcard $(HOME)/.pyenv/versions/3.10.*/bin/python3.10) $(PYTHON))
FLOORS_TESTS  := refimpl tests/test_contract.py tests/test_errors.py tests/test_fast_paths.py \
                 tests/test_checkpoint.py tests/test_backend.py tests/test_vectors.py tests/test_environment.py \
                 tests/test_properties_adam.py tests/test_properties_ndadam.py tests/test_properties_adal.py \
                 tests/test_differential_tf_formula.py

$(FLOORS)/.stamp: pyproject.toml | $(BIN)/python
	rm -rf $(FLOORS)
	$(FLOORS_PYTHON) -m venv $(FLOORS)
	$(BIN)/python -c "import tomllib, re; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; \
	  print('\n'.join(re.sub(r'\s*>=\s*', '==', d) for d in deps))" > $(FLOORS)/floors.txt
	$(FLOORS)/bin/python -m pip install --quiet --upgrade pip
	$(FLOORS)/bin/python -m pip install --quiet -c $(FLOORS)/floors.txt -e '.[test]'
	touch $@

floors: $(FLOORS)/.stamp
	@$(FLOORS)/bin/python -c "import sys, numpy, array_api_compat; print('floors: Python', sys.version.split()[0], \
	  '| numpy', numpy.__version__, '| array-api-compat', array_api_compat.__version__)"
	cd $(FLOORS) && bin/python -m refimpl vectors check
	$(FLOORS)/bin/python -m pytest -q -p no:cacheprovider $(FLOORS_TESTS)

book: $(VENV)/.stamp-book
	TQDM_DISABLE=1 $(BIN)/jupyter-book build . --warningiserror --keep-going
	@echo "The book is at $(CURDIR)/_build/html/index.html"

clean:
	rm -rf _build .pytest_cache .hypothesis $(FLOORS)

# The benchmark suite (benchmarks/README.md): prints Markdown tables, writes _build/bench/results.json.
# `make bench BENCH=--quick` for the short version.
.PHONY: bench
bench: $(VENV)/.stamp-test
	$(BIN)/python -m benchmarks.run $(BENCH)
