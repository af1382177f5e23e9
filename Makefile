# Hedwig: `make run` serves the app, `make test` runs the tests. Both set up .venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

# Python 3.11 or newer, said plainly before anything is installed.
ifneq ($(shell $(PYTHON) -c 'import sys; print(sys.version_info >= (3, 11))' 2>/dev/null),True)
$(error Hedwig needs Python 3.11 or newer, and $(PYTHON) is $(shell $(PYTHON) --version 2>&1). \
Install a newer one (python.org, or your package manager), then run make again; \
to use it by name: make run PYTHON=python3.12)
endif
# A .venv made by another Python (an upgrade, a copied folder) is rebuilt, not reused.
ifneq ($(shell $(PY) -c 'import sys; print(sys.version)' 2>/dev/null),$(shell $(PYTHON) -c 'import sys; print(sys.version)'))
$(shell rm -rf $(VENV))
endif

.PHONY: run lint test bench screenshots

# make test runs the suite on this many pytest-xdist workers (0: in this process alone), and
# names its ten slowest tests at the end. It lets Python keep bytecode caches (__pycache__,
# ignored by git) even where PYTHONDONTWRITEBYTECODE is set: each test's app loads the
# migration scripts, each gunicorn worker hedwig.py, and each pytest worker its rewritten
# test files, and compiling them all afresh each time costs CPU seconds by the dozen.
TEST_WORKERS ?= 2

# Running needs requirements.txt; testing adds requirements-dev.txt.
$(VENV)/.installed-run: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed: $(VENV)/.installed-run requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

run: $(VENV)/.installed-run
	$(VENV)/bin/flask --app hedwig run

# The suite runs on SQLite, and on a throwaway PostgreSQL too when PostgreSQL is installed.
# The style, the house's rules (.ci/check_layout.py) and the README's names, before the tests.
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) .ci/check_layout.py
	$(PY) .ci/check_readme_names.py

test: lint
	@command -v chromium >/dev/null || \
	  echo "Chromium is not installed: the browser tests will be skipped (apt-get install chromium)." >&2
	PYTHONDONTWRITEBYTECODE= .ci/with-postgres $(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup --durations=10

# Hedwig beside a bare Flask reference app under load; writes README's Performance section.
bench: $(VENV)/.installed
	.ci/with-postgres $(PY) bench_hedwig.py

# The README's pictures, taken by the browser tests (needs Debian's chromium).
screenshots: $(VENV)/.installed
	HEDWIG_SCREENSHOTS=docs $(PY) -m pytest test_browser.py
