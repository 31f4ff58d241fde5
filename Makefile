# rlbook: every command bootstraps its own virtual environment in .venv.
#   make book       build the website into _build/html (warnings fail) and check its links and images
#   make test       unit tests + every chapter in quick mode (RLBOOK_QUICK=1) under nbval
#   make lab        JupyterLab on the chapters
#   make notebooks  re-run every chapter in full mode in place (refreshes the committed outputs)
#   make bench      re-measure every number the book quotes (writes results/)
#   make mutants    mutation testing over the RL math (slow: tens of minutes; not part of make test)
#   make clean      remove the build and caches (keeps .venv; `make distclean` removes it too)

PYTHON ?= python3
VENV   ?= .venv
# CPU wheels keep CI small; readers with a GPU can run e.g. `make lab TORCH=torch`.
TORCH  ?= torch==2.13.0
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-rlbook
NOTEBOOKS := $(sort $(wildcard book/[0-9][0-9]_*.ipynb))

.PHONY: all book check-site test lint lab notebooks bench mutants clean distclean venv

all: test book

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[atari,book,dev]"
	@touch $(STAMP)

book: $(STAMP)
	$(BIN)/jupyter-book build . -W -n --keep-going
	$(MAKE) check-site

check-site: $(STAMP)
	$(BIN)/python tools/check_site.py _build/html

test: $(STAMP)
	RLBOOK_QUICK=1 $(BIN)/python -m pytest -q -p no:cacheprovider \
		tests book --nbval-lax --nbval-current-env

lint: $(STAMP)
	$(BIN)/ruff check rlbook tests bench tools

lab: $(STAMP)
	$(BIN)/jupyter lab book/

notebooks: $(STAMP)
	RLBOOK_QUICK=0 $(BIN)/python tools/run_notebooks.py $(NOTEBOOKS)

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	$(BIN)/python bench/tabular.py --seeds 10
	$(BIN)/python bench/cem.py --seeds 10
	$(BIN)/python bench/dqn_cartpole.py --seeds 10

# Break the RL math on purpose, one small change at a time, and check that a test goes red (tools/mutants.py).
# ONLY="replay dqn" restricts it to some targets.
mutants: $(STAMP)
	$(BIN)/python tools/mutants.py $(if $(ONLY),--only $(ONLY)) --summary results/quality/mutants.json

clean:
	rm -rf _build .pytest_cache .hypothesis .ruff_cache runs
	find . -name __pycache__ -not -path "./$(VENV)/*" -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
