# The README's commands. `make run` and `make test` set everything up on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
NPM ?= npm
PD_CHROMIUM ?= /usr/bin/chromium

.PHONY: run test test-fast lint lock bench bench-models bench-tokens bench-dashboard bench-faults deps browser

# Python dependencies come from requirements-dev.lock: every package, transitive ones included, at one version
# with the sha256 of each of its files, installed with --require-hashes (a file that differs from the one
# locked is refused). pip itself is pinned first. `make lock` regenerates both locks from requirements*.txt, and
# tests/test_dependencies.py fails when a pin in requirements*.txt is not what its lock holds.
PIP_VERSION := 26.3
PIP_TOOLS_VERSION := 7.6.2
LOCK_FLAGS := --quiet --generate-hashes --allow-unsafe --strip-extras --no-header \
	--no-emit-index-url --no-emit-find-links

$(VENV)/.installed: requirements-dev.lock
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet pip==$(PIP_VERSION)
	$(VENV)/bin/pip install --quiet --require-hashes -r requirements-dev.lock
	touch $@

# pip-tools in a throwaway virtualenv of its own (it is not a dependency of the app or its tests).
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet pip==$(PIP_VERSION) pip-tools==$(PIP_TOOLS_VERSION)
	.lock-venv/bin/pip-compile $(LOCK_FLAGS) --output-file requirements.lock requirements.txt
	.lock-venv/bin/pip-compile $(LOCK_FLAGS) --output-file requirements-dev.lock requirements-dev.txt
	rm -rf .lock-venv

# The front-end dependencies, exactly as package-lock.json pins them: the panel's SDK (@pipedrive/app-extensions-sdk)
# and the API docs viewer (swagger-ui-dist), which the app serves from node_modules (no CDN); axe-core, the
# browser tests' accessibility check; pipedrive, Pipedrive's official Node.js client, which
# tests/test_official_node_client.py runs against the app. All ship prebuilt files: no install script runs (swagger-ui-dist's
# dependency @scarf/scarf would otherwise report the install to its vendor).
node_modules/.installed: package.json package-lock.json
	$(NPM) ci --no-audit --no-fund --ignore-scripts
	touch $@

deps: $(VENV)/.installed node_modules/.installed

# The browser tests drive Debian's chromium through Playwright (never `playwright install`). Installed here when
# missing and this user may (root with apt-get); otherwise the browser tests fail and say how to get it.
browser:
	@if [ ! -x "$(PD_CHROMIUM)" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium fonts-liberation; \
		else \
			echo "chromium is not at $(PD_CHROMIUM): install Debian's chromium (apt-get install chromium)," \
				"or set PD_CHROMIUM to a Chromium binary, for the browser tests"; \
		fi; \
	fi

# The demo: SQLite in instance/, development secrets generated once, the built-in Pipedrive sandbox.
# One web worker, because the sandbox keeps its state in the process's memory (the job worker reaches it over
# HTTP, like Pipedrive). The job worker runs in the background and is stopped when gunicorn exits.
run: deps
	PD_APP_ENV=development PD_SANDBOX=1 $(VENV)/bin/flask --app app db upgrade
	@echo ""
	@echo "  pd_app is starting: open http://localhost:5000  (Pipedrive sandbox at http://localhost:5000/sandbox)"
	@echo "  the Goals panel inside a sandbox deal page: http://localhost:5000/sandbox/crm/deal/1"
	@echo ""
	PD_APP_ENV=development PD_SANDBOX=1 $(VENV)/bin/flask --app app worker & worker=$$!; \
	trap 'kill -TERM $$worker 2>/dev/null; wait $$worker' EXIT INT TERM; \
	PD_APP_ENV=development PD_SANDBOX=1 GUNICORN_BIND=127.0.0.1:5000 WEB_CONCURRENCY=1 GUNICORN_THREADS=32 \
		$(VENV)/bin/gunicorn app:app -c gunicorn.conf.py

lint: deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check pd_app tests

test: deps browser
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest

# The inner loop: lint and everything but the real-process and browser tests (markers in pyproject.toml).
test-fast: deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -m "not slow and not browser"

# The proxy bench (bench/RESULTS.md says what it measures): the app under gunicorn's production settings side by
# side with direct calls to an asyncio stand-in for Pipedrive; appends its report to bench/RESULTS.md.
BENCH_POSTGRES_URL ?= postgresql://postgres@127.0.0.1:5432/bench
bench: deps
	$(PY) bench/proxy_bench.py

bench-models: deps
	$(PY) bench/proxy_bench.py --models gthread:4x64,gthread:4x16,gthread:2x32,gthread:2x64,gevent:2

# The dashboard figure: 50 screens of one company poll its goals and their results through the app for 20 s;
# Pipedrive tokens spent against plain pass-through (bench/RESULTS.md, "Dashboard: 50 screens, one company").
bench-dashboard: deps
	$(PY) bench/dashboard.py

# Key -> installation lookup at 100,000 installations on PostgreSQL (seeded once into its own database).
bench-tokens: deps
	$(PY) bench/token_lookup.py --database $(BENCH_POSTGRES_URL)_tokens --results bench/RESULTS.md

# Faults under a steady load (bench/faults.py, the scenarios of tests/test_faults.py): Redis and PostgreSQL
# (private servers it starts) stopped and started again, SIGTERM, a worker SIGKILLed mid install and mid refresh;
# requests sent, answered, by status, and recovery times, appended to bench/RESULTS.md. About a minute.
bench-faults: deps
	$(PY) bench/faults.py --results bench/RESULTS.md
