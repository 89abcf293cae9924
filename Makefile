# Two commands do all the set-up on a fresh machine with only Python and pip (and, for the
# render check, Debian's apt to install Chromium when it is missing):
#   make book   build the Jupyter Book to _build/html (executes every chapter)
#   make test   build the book, then run the whole test suite: peers (torch, optax) included,
#               and the render check of every built page in headless Chromium
# Both create .venv if it is missing and reuse it afterwards.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: book test clean browser

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# A stamp per extra: reinstall only when pyproject.toml changes.
$(VENV)/.stamp-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,peers,dask]'
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
test: $(VENV)/.stamp-test browser book
	REFIMPL_REQUIRE_BOOK=1 $(BIN)/python -m pytest

book: $(VENV)/.stamp-book
	TQDM_DISABLE=1 $(BIN)/jupyter-book build . --warningiserror --keep-going
	@echo "The book is at $(CURDIR)/_build/html/index.html"

clean:
	rm -rf _build .pytest_cache .hypothesis

# The benchmark suite (benchmarks/README.md): prints Markdown tables, writes _build/bench/results.json.
# `make bench BENCH=--quick` for the short version.
.PHONY: bench
bench: $(VENV)/.stamp-test
	$(BIN)/python -m benchmarks.run $(BENCH)
