# The two commands of the README, plus a few for maintainers. Each creates or reuses the
# local virtual environment .venv, reinstalling when requirements.txt or pyproject.toml change.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: book test notebooks lint bench fuzz screenshot clean

book: $(STAMP)                  ## build the site into _build/html, strictly (warnings are errors)
	$(BIN)/jupyter-book build . -W -n --keep-going

test: $(STAMP)                  ## unit tests, doctests and nbval over every notebook
	$(BIN)/python -m pytest

notebooks: $(STAMP)             ## re-execute the notebooks in place (after changing qlearn): make notebooks [NB=book/x.ipynb]
	$(BIN)/python .ci/execute_notebooks.py $(NB)

lint: $(STAMP)
	$(BIN)/python -m pip install -q ruff mypy
	$(BIN)/ruff check qlearn tests benchmarks && $(BIN)/ruff format --check qlearn tests benchmarks && $(BIN)/mypy

fuzz: $(STAMP)                  ## property tests randomized, thousands of examples each (HYPOTHESIS_PROFILE=fuzz)
	HYPOTHESIS_PROFILE=fuzz $(BIN)/python -m pytest -p no:nbval -o addopts="-p no:cacheprovider" -q tests

bench: $(STAMP)                 ## speed benchmark against PyTorch (installs the CPU build of torch)
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python benchmarks/quantize_speed.py

screenshot:                     ## save a PNG of a built page: make screenshot PAGE=book/affine_map [OUT=_build/page.png]
	chromium --headless --no-sandbox --disable-gpu --no-first-run --disable-background-networking \
	  --hide-scrollbars --window-size=1280,2400 --screenshot=$(abspath $(or $(OUT),_build/screenshot.png)) \
	  file://$(abspath _build/html/$(or $(PAGE),book/intro).html)

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -r requirements.txt -e .
	touch $(STAMP)

clean:
	rm -rf _build
