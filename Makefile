# Two commands do all the set-up on a fresh machine with only Python and pip (and Debian's apt,
# for Chromium and TeX Live when they are missing):
#   make book   build the Jupyter Book to _build/html (executes every chapter)
#   make pdf    the book as one PDF, _build/latex/refimpl.pdf, also copied to
#               _build/html/refimpl.pdf where the website links it
#   make test   build the book and the PDF, then run the whole test suite: peers (torch,
#               optax) included, the render check of every built page in headless Chromium,
#               the website's search, the PDF, five pages run as notebooks, and the core
#               tests with the oldest numpy and array-api-compat allowed (make floors)
# All create .venv if it is missing and reuse it afterwards.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: book pdf test clean browser tex floors

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

# TeX Live for `make pdf`, from Debian's packages (31 with their dependencies: 116 MB to
# download, 356 MiB installed, about 1.5 minutes):
# XeLaTeX, the LaTeX packages Sphinx uses, latexmk, the fonts the PDF is set in (FreeSerif,
# TeX Gyre Termes Math, DejaVu Sans Mono), and poppler-utils (pdftotext, pdftoppm) for its test.
TEX_PACKAGES := texlive-xetex texlive-latex-recommended texlive-latex-extra \
                texlive-fonts-recommended latexmk fonts-freefont-otf fonts-texgyre-math \
                fonts-dejavu-core poppler-utils
tex:
	@{ command -v xelatex && command -v latexmk && command -v pdftotext && \
	   kpsewhich fncychap.sty unicode-math.sty && fc-list | grep -q "TeX Gyre Termes Math" && \
	   fc-list | grep -q FreeSerif && fc-list | grep -q "DejaVu Sans Mono"; } >/dev/null 2>&1 || { \
	  echo "Installing TeX Live (Debian packages) for the PDF"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    $(TEX_PACKAGES) >/dev/null; }

# REFIMPL_REQUIRE_BOOK turns "book or PDF not built", "no Chromium" or "no poppler" into
# failures instead of skips.
test: $(VENV)/.stamp-test browser book pdf floors
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

# The PDF reuses what `make book` read and executed (Sphinx's environment in _build/.doctrees),
# so it only writes LaTeX and runs XeLaTeX (latexmk: up to three passes).
pdf: $(VENV)/.stamp-book tex book
	TQDM_DISABLE=1 $(BIN)/jupyter-book build . --builder pdflatex --warningiserror --keep-going
	cp _build/latex/refimpl.pdf _build/html/refimpl.pdf
	@echo "The PDF is at $(CURDIR)/_build/latex/refimpl.pdf"

clean:
	rm -rf _build .pytest_cache .hypothesis $(FLOORS)

# The benchmark suite (benchmarks/README.md): prints Markdown tables, writes _build/bench/results.json.
# `make bench BENCH=--quick` for the short version.
.PHONY: bench
bench: $(VENV)/.stamp-test
	$(BIN)/python -m benchmarks.run $(BENCH)
