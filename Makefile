# Baton: `make run` serves the embedded demo, `make test` runs every test.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test test-quick test-sqlite bench migrate demo clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON)"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

migrate: $(STAMP)
	$(PY) manage.py migrate --no-input

## Start Baton on the embedded default (SQLite, in-process worker, demo data) at http://127.0.0.1:8000
run: $(STAMP)
	$(PY) manage.py migrate --no-input
	$(PY) manage.py seed_demo
	$(PY) manage.py serve 127.0.0.1:8000

## The whole test suite (DATABASE_URL selects PostgreSQL; default: SQLite file)
test: $(STAMP)
	@test -x "$${BATON_CHROMIUM:-/usr/bin/chromium}" || echo "note: no Chromium at /usr/bin/chromium: the browser tests will skip (apt-get install -y chromium)"
	$(PY) -m pytest -p no:cacheprovider -n 2 --dist loadfile

## The quick subset on the embedded SQLite configuration
test-sqlite: $(STAMP)
	env -u DATABASE_URL -u DATABASE_OWNER_URL $(PY) -m pytest -p no:cacheprovider -m sqlite_smoke

bench: $(STAMP)
	$(PY) -m bench

clean:
	rm -rf $(VENV) var static_root
