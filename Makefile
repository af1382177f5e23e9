# Hedwig: `make run` serves the app, `make test` runs the tests. Both set up .venv first.
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test bench screenshots

# Running needs requirements.txt; testing adds requirements-dev.txt.
$(VENV)/.installed-run: requirements.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed: $(VENV)/.installed-run requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

run: $(VENV)/.installed-run
	$(VENV)/bin/flask --app hedwig run

# The suite runs on SQLite, and on a throwaway PostgreSQL too when PostgreSQL is installed.
test: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	@command -v chromium >/dev/null || \
	  echo "Chromium is not installed: the browser tests will be skipped (apt-get install chromium)." >&2
	.ci/with-postgres $(PY) -m pytest

# Hedwig beside a bare Flask reference app under load; writes README's Performance section.
bench: $(VENV)/.installed
	.ci/with-postgres $(PY) bench_hedwig.py

# The README's pictures, taken by the browser tests (needs Debian's chromium).
screenshots: $(VENV)/.installed
	HEDWIG_SCREENSHOTS=docs $(PY) -m pytest test_browser.py
