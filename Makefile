# Two commands do all the set-up on a fresh machine with only Python and pip:
#   make book   build the Jupyter Book to _build/html (executes every chapter)
#   make test   run the whole test suite, peers (torch, optax) included
# Both create .venv if it is missing and reuse it afterwards.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: book test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# A stamp per extra: reinstall only when pyproject.toml changes.
$(VENV)/.stamp-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,peers]'
	touch $@

$(VENV)/.stamp-book: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[book]'
	$(BIN)/python -c "import matplotlib.pyplot"   # warm the font cache outside the build
	touch $@

test: $(VENV)/.stamp-test
	$(BIN)/python -m pytest

book: $(VENV)/.stamp-book
	TQDM_DISABLE=1 $(BIN)/jupyter-book build . --warningiserror --keep-going
	@echo "The book is at $(CURDIR)/_build/html/index.html"

clean:
	rm -rf _build .pytest_cache .hypothesis
