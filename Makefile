# The two commands a reader needs: `make book` and `make test`. Both build .venv themselves.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BOOK_ARGS := --config book/_config.yml --toc book/_toc.yml
PORT ?= 8000

.PHONY: book test lab serve lint clean venv

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

## Execute every chapter in full mode and write the site to _build/html.
book: $(STAMP)
	env -u MPLBACKEND GAN_BOOK_QUICK=0 $(BIN)/jupyter-book build . $(BOOK_ARGS) --builder html
	@echo "Open _build/html/index.html, or run 'make serve'."

## Unit tests, nbval over every chapter in quick mode, and browser tests on a quick build.
test: $(STAMP)
	GAN_BOOK_QUICK=1 $(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check gan_utils tests benchmarks chapters
	$(BIN)/ruff format --check gan_utils tests benchmarks

## JupyterLab on the chapters (full mode unless GAN_BOOK_QUICK=1 is exported).
lab: $(STAMP)
	$(BIN)/jupyter lab chapters

serve:
	@test -f _build/html/index.html || { echo "No site yet: run 'make book' first."; exit 1; }
	$(BIN)/python -m http.server $(PORT) --bind 127.0.0.1 --directory _build/html

clean:
	rm -rf _build .pytest_cache .ruff_cache
	find . -path ./.venv -prune -o -name __pycache__ -type d -print -exec rm -rf {} +
