# genai-lab: two commands on a fresh clone
#   make book   set up .venv, execute every notebook, build the site into _build/html
#   make test   set up .venv, run the whole test suite (unit, bench bars, notebooks, book, site)
# Also: make lab (JupyterLab), make clean.

SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
STAGE := _stage
export PYTHONUNBUFFERED := 1

# Notebooks: one profile for all; CI=true (or no GPU) means smoke unless the user sets it.
# `make book` uses the automatic profile (gpu with CUDA, else cpu; smoke under CI);
# `make test` always uses smoke. Each of the JOBS parallel notebooks gets nproc/JOBS threads.
JOBS ?= 2
THREADS ?= $(shell n=$$(nproc); t=$$(( n / $(JOBS) )); echo $$(( t > 0 ? t : 1 )))
NB_ENV = GENAI_LAB_STRICT_CHECKS=1 HF_HUB_OFFLINE=1 GENAI_LAB_OFFLINE=1 GENAI_LAB_THREADS=$(THREADS) \
  $(if $(PROFILE),GENAI_LAB_PROFILE=$(PROFILE))
NB_TIMEOUT ?= 1800

.PHONY: all setup book test unit notebooks html site-check lab clean sysdeps

all: book

$(STAMP): requirements.txt requirements-nodeps.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	$(PY) -m pip install --disable-pip-version-check -q --no-deps -r requirements-nodeps.txt
	$(PY) -m pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
	@touch $(STAMP)

setup: $(STAMP)
	@bash .ci/sysdeps || true

# Copy the book's sources into _stage, execute every notebook there once (outputs are
# written into the copies, never into the repository), then build the HTML from the copies.
notebooks: setup
	rm -rf $(STAGE) && mkdir -p $(STAGE)
	cp -r _config.yml _toc.yml book labs $(STAGE)/
	cp genai_lab/assets/require.js $(STAGE)/book/_vendor/   # one vendored copy serves bertviz and widgets
	$(NB_ENV) bash .ci/offline $(PY) -m pytest -p no:cacheprovider --nbmake --overwrite \
	  --nbmake-timeout=$(NB_TIMEOUT) -n $(JOBS) $(STAGE)/book $(STAGE)/labs

html:
	$(VENV)/bin/jupyter-book build $(STAGE) --builder html --warningiserror --quiet --keep-going
	rm -rf _build/html && mkdir -p _build && cp -r $(STAGE)/_build/html _build/html
	@echo "site: _build/html/index.html"

book: notebooks html

unit: setup
	GENAI_LAB_PROFILE=smoke GENAI_LAB_THREADS=$(THREADS) HF_HUB_OFFLINE=1 GENAI_LAB_OFFLINE=1 \
	  $(PY) -m pytest -n $(JOBS) tests --ignore=tests/site

site-check: setup
	$(PY) -m pytest tests/site

test: unit
	$(MAKE) --no-print-directory notebooks PROFILE=smoke
	$(MAKE) --no-print-directory html
	$(MAKE) --no-print-directory site-check

lab: setup
	$(VENV)/bin/jupyter lab --notebook-dir=.

sysdeps:
	bash .ci/sysdeps

clean:
	rm -rf _build .pytest_cache
	find . -name __pycache__ -not -path "./$(VENV)/*" -prune -exec rm -rf {} +
