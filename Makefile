# The two commands of the README, plus a few for maintainers (`make help` lists them). Each
# creates or reuses the local virtual environment .venv, reinstalling when requirements.txt
# or pyproject.toml change, and starting afresh when .venv was made by an unsupported Python.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
MIN_PY := 3.11
# nbval's flags live here, not in pyproject's addopts, so `pytest -p no:nbval` works
NBVAL  := --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg
# `make test NB=book/ptq.ipynb`: that chapter's nbval run and the notebook checks for it
NB_TESTS = $(if $(NB),$(NB) tests/test_notebooks.py tests/test_colab.py -k "$(basename $(notdir $(NB)))",)

.PHONY: help book test notebooks colab sync-install-cell lab lint bench fuzz screenshot model weightonly-demo clean

help:                           ## list the targets
	@awk -F':.*## ' '/^[a-z-]+:.*## / {printf "  make %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

book: $(STAMP)                  ## build the site into _build/html, strictly (renders the stored outputs)
	$(BIN)/jupyter-book build . -W -n --keep-going

test: $(STAMP)                  ## unit tests, doctests, nbval over every chapter; one chapter: make test NB=book/ptq.ipynb
	$(BIN)/python -m pytest $(NBVAL) $(NB_TESTS)

notebooks: $(STAMP)             ## re-execute the notebooks in place (after changing qlearn): make notebooks [NB=book/x.ipynb]
	$(BIN)/python .ci/execute_notebooks.py $(NB)

colab: $(STAMP)                 ## write the Colab edition into _build/colab (plain notebooks, no MyST)
	$(BIN)/python .ci/colab.py $(NB)

sync-install-cell: $(STAMP)     ## rewrite every chapter's Colab install cell from _config.yml [NB=book/x.ipynb]
	$(BIN)/python .ci/sync_install_cell.py $(NB)

lab: $(STAMP)                   ## open the chapters in JupyterLab, with the venv's kernel
	$(BIN)/python -c "import jupyterlab" 2>/dev/null || $(BIN)/python -m pip install -q jupyterlab
	$(BIN)/jupyter lab book

model: $(STAMP)                 ## retrain the language model and rewrite qlearn/lm/data/model.npz (seed 0, ~15 min, 1 BLAS thread)
	OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 $(BIN)/python -m qlearn.lm.train

weightonly-demo: $(STAMP)       ## recompute the GPTQ/AWQ 3-bit results that book/lm_gptq_awq.ipynb loads (~2 CPU-minutes)
	$(BIN)/python -m qlearn.weightonly.demo

lint: $(STAMP)                  ## ruff and mypy; chapters' code lines at most 80 characters
	$(BIN)/python -m pip install -q ruff mypy
	$(BIN)/ruff check qlearn tests benchmarks .ci && $(BIN)/ruff format --check qlearn tests benchmarks \
	  && $(BIN)/ruff check --line-length 80 --select E501 --force-exclude book && $(BIN)/mypy

fuzz: $(STAMP)                  ## property tests randomized, thousands of examples each (HYPOTHESIS_PROFILE=fuzz)
	HYPOTHESIS_PROFILE=fuzz $(BIN)/python -m pytest -p no:nbval -q tests

bench: $(STAMP)                 ## speed benchmark against PyTorch (installs the CPU build of torch)
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python benchmarks/quantize_speed.py

screenshot:                     ## save a PNG of a built page: make screenshot PAGE=book/affine_map [OUT=_build/page.png]
	chromium --headless --no-sandbox --disable-gpu --no-first-run --disable-background-networking \
	  --hide-scrollbars --window-size=1280,2400 --screenshot=$(abspath $(or $(OUT),_build/screenshot.png)) \
	  file://$(abspath _build/html/$(or $(PAGE),book/intro).html)

$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "qlearn needs Python $(MIN_PY) or newer; $(PYTHON) is $$($(PYTHON) -V 2>&1). Run: make PYTHON=python3.12"; exit 1; }
	@if test -x $(BIN)/python && ! $(BIN)/python -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then \
	  echo "$(VENV) was made by $$($(BIN)/python -V 2>&1), older than $(MIN_PY): making a fresh one"; rm -rf $(VENV); fi
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -r requirements.txt -e .
	touch $(STAMP)

clean:                          ## remove _build (site, Colab edition, local MathJax)
	rm -rf _build
