# rlbook: every command bootstraps its own virtual environment in .venv.
#   make book       build the website into _build/html (warnings fail) and check it in headless Chromium
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
	$(BIN)/python -m pip install --quiet -e ".[atari,book,dev,scale]"
	@touch $(STAMP)

# The site ships MathJax, so that math renders offline (and in the headless check, which has no network): npm fetches
# it once into _build/npm and it is copied to _build/static/mathjax, which Sphinx copies into the site
# (html_static_path and mathjax_path in _config.yml).
MATHJAX       ?= mathjax@3.2.2
MATHJAX_STAMP := _build/npm/$(MATHJAX).installed
# The book's repository, e.g. https://github.com/<org>/rlbook: ONE setting, book/repository.txt (written with
# `python tools/set_repository.py URL`, which also puts it in every chapter's install cell for Colab readers; a make
# or environment variable overrides it for one build). Empty until the repository is public; set, the site gets
# repository and issue buttons and Binder and Colab launch buttons, from a copy of _config.yml completed by
# BOOK_CONFIG_WITH_REPOSITORY below.
RLBOOK_REPO_URL ?= $(strip $(file < book/repository.txt))
export RLBOOK_REPO_URL
BOOK_CONFIG := $(if $(RLBOOK_REPO_URL),_build/_config.yml,_config.yml)

book: $(STAMP) $(MATHJAX_STAMP)
	$(if $(RLBOOK_REPO_URL),$(BIN)/python -c "$$BOOK_CONFIG_WITH_REPOSITORY" _config.yml $(BOOK_CONFIG))
	$(BIN)/jupyter-book build . --config $(BOOK_CONFIG) -W -n --keep-going
	$(MAKE) check-site

# Every page in headless Chromium (Debian's chromium package driven by Playwright, see tools/check_site.py) plus
# the link and anchor checks. `make check-site CHECK_SITE=--all` lists every problem, CHECK_SITE=--static skips the
# browser.
check-site: $(STAMP)
	$(BIN)/python tools/check_site.py _build/html $(CHECK_SITE)

$(MATHJAX_STAMP):
	@command -v npm >/dev/null 2>&1 || { echo "make book: npm is missing. The site ships MathJax (so that math" \
		"renders offline) and fetches it from the npm registry: install Node.js and npm (sudo apt-get install npm)." >&2; \
		exit 1; }
	@mkdir -p _build/npm
	npm install --prefix _build/npm --no-save --no-audit --no-fund --prefer-offline --fetch-retries=1 \
		--fetch-timeout=60000 $(MATHJAX) >/dev/null || { echo "make book: could not fetch $(MATHJAX) from the npm" \
		"registry ($$(npm config get registry)). The site ships MathJax so that math renders offline, and the" \
		"build fetches it once (into _build/npm): check the network or the registry setting, then run make book again." >&2; \
		exit 1; }
	rm -rf _build/static/mathjax && mkdir -p _build/static/mathjax
	cp _build/npm/node_modules/mathjax/es5/tex-mml-chtml.js _build/static/mathjax/
	cp -r _build/npm/node_modules/mathjax/es5/*/ _build/static/mathjax/
	@rm -f _build/npm/*.installed && touch $@

define BOOK_CONFIG_WITH_REPOSITORY
import os, sys, yaml
from pathlib import Path
source, target = sys.argv[1:]
config = yaml.safe_load(Path(source).read_text())
config["repository"] = {"url": os.environ["RLBOOK_REPO_URL"], "path_to_book": "", "branch": "main"}
config.setdefault("html", {}).update(use_repository_button=True, use_issues_button=True)
config["launch_buttons"] = {"notebook_interface": "jupyterlab", "binderhub_url": "https://mybinder.org",
                            "colab_url": "https://colab.research.google.com"}
# this copy lives in _build/: its local extensions are found from the repository root
local = config.get("sphinx", {}).get("local_extensions", {})
for name, path in local.items():
    local[name] = str(Path(path).resolve())
Path(target).write_text(yaml.safe_dump(config, sort_keys=False))
endef
export BOOK_CONFIG_WITH_REPOSITORY

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
	$(BIN)/python bench/dqn_extensions.py --seeds 10
	$(BIN)/python bench/dqn_extensions.py --diagnostics
	$(BIN)/python bench/stocks.py --seeds 5
	$(BIN)/python bench/pg_cartpole.py --seeds 10
	$(BIN)/python bench/pg_variance.py --seeds 5
	$(BIN)/python bench/a2c_sensitivity.py
	$(BIN)/python bench/a3c_cartpole.py --seeds 10
	$(BIN)/python bench/a3c_throughput.py

# Break the RL math on purpose, one small change at a time, and check that a test goes red (tools/mutants.py).
# ONLY="replay dqn" restricts it to some targets.
mutants: $(STAMP)
	$(BIN)/python tools/mutants.py $(if $(ONLY),--only $(ONLY)) --summary results/quality/mutants.json

clean:
	rm -rf _build .pytest_cache .hypothesis .ruff_cache runs
	find . -name __pycache__ -not -path "./$(VENV)/*" -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
