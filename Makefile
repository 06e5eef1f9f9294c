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
# `make test` always uses smoke. Notebooks whose lesson is a timing (.ci/notebooks.toml,
# `timing = true`) run alone afterwards with every core; the others run JOBS at a time with
# nproc/JOBS threads each, and those marked `late = true` (they reuse a model a timing notebook
# or another notebook trains, e.g. the LoRA chapter's GPT) JOBS at a time after the timing ones. Every notebook has a wall-time budget per profile in
# .ci/notebooks.toml: one over its budget fails with its name and time (.ci/nbbudget.py), and
# the times go to _build/notebook-times-<profile>.json.
JOBS ?= 2
CORES := $(shell nproc 2>/dev/null || echo 1)
THREADS ?= $(shell t=$$(( $(CORES) / $(JOBS) )); echo $$(( t > 0 ? t : 1 )))
NB_PROFILE = $(or $(PROFILE),$(GENAI_LAB_PROFILE),$(shell $(PY) -c "from genai_lab.config import default_profile as p; print(p())"))
NB_ENV = GENAI_LAB_PROGRESS=0 TQDM_DISABLE=1 GENAI_LAB_AUDIT_FIGURES=1 HF_HUB_OFFLINE=1 GENAI_LAB_OFFLINE=1 \
  GENAI_LAB_PROFILE=$(NB_PROFILE) PYTHONPATH=$(CURDIR)/.ci
NB_TIMEOUT ?= 900
NB_RUN = bash .ci/offline $(PY) -m pytest -p no:cacheprovider -p nbbudget --nb-times _build/notebook-times-$(NB_PROFILE).json \
  --nbmake --overwrite --nbmake-timeout=$(NB_TIMEOUT)
# NB_CACHE=folder reuses the executed copies of unchanged notebooks (.ci/nbcache.py); the
# book workflow sets it, `make test` never does.
NB_CACHE ?=
# run one group of notebooks (timing / others) with the given environment; nothing if none is left
# (longest budget first, handed out one at a time, so no long notebook is left to run last on one thread).
# A failing group is noted and the next groups still run, so one build reports every notebook's time;
# the build fails at the end (.ci/nbbudget.py report) when any notebook failed.
NB_GROUP = list=$$($(PY) .ci/nbbudget.py $(1) --stage $(STAGE) --profile $(NB_PROFILE)); if [ -n "$$list" ]; then $(NB_ENV) $(2) $(NB_RUN) $(3) $$list || echo $(1) >> _build/failed-groups; fi

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
# The labs run as shipped (learner stubs: each check says "not implemented yet"), which the site
# shows; the unit tests run each lab twice: as shipped, and with the reference solutions filled
# in (`labs solved`) where every check must pass (tests/test_labs.py).
notebooks: setup
	rm -rf $(STAGE) && mkdir -p $(STAGE) _build
	rm -f _build/notebook-times-$(NB_PROFILE).json _build/failed-groups
	cp -r _config.yml _toc.yml book labs $(STAGE)/
	cp genai_lab/assets/require.js $(STAGE)/book/_vendor/   # one vendored copy serves bertviz and widgets
	$(PY) -m genai_lab launch-links $(STAGE)
	$(if $(NB_CACHE),$(PY) .ci/nbcache.py restore $(STAGE) $(NB_PROFILE) $(NB_CACHE))
	@echo "[notebooks] profile $(NB_PROFILE): $(JOBS) at a time with $(THREADS) threads each, then timing notebooks alone with $(CORES)"
	$(call NB_GROUP,others,GENAI_LAB_THREADS=$(THREADS),-n $(JOBS) --maxschedchunk=1)
	$(call NB_GROUP,timing,GENAI_LAB_THREADS=$(CORES),)
	$(call NB_GROUP,late,GENAI_LAB_THREADS=$(THREADS),-n $(JOBS) --maxschedchunk=1)
	$(PY) .ci/nbbudget.py report _build/notebook-times-$(NB_PROFILE).json _build/failed-groups
	$(if $(NB_CACHE),$(PY) .ci/nbcache.py save $(STAGE) $(NB_PROFILE) $(NB_CACHE))
	$(PY) -m pytest -p no:cacheprovider -q tests/site/test_outputs.py

html:
	$(VENV)/bin/jupyter-book build $(STAGE) --builder html --warningiserror --quiet --keep-going
	rm -rf _build/html && mkdir -p _build && cp -r $(STAGE)/_build/html _build/html
	@echo "site: _build/html/index.html"

book: notebooks html

unit: setup
	GENAI_LAB_PROFILE=smoke GENAI_LAB_THREADS=$(THREADS) HF_HUB_OFFLINE=1 GENAI_LAB_OFFLINE=1 \
	  $(PY) -m pytest -n $(JOBS) tests --ignore=tests/site

site-check: setup
	$(PY) -m pytest tests/site --ignore=tests/site/test_outputs.py

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
