# The README's commands. `make run` and `make test` set everything up on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: run test lint bench deps

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements-dev.txt
	touch $@

deps: $(VENV)/.installed

# The demo: SQLite in instance/, development secrets generated once, the built-in Pipedrive sandbox.
# One worker, because the sandbox keeps its state in the process's memory.
run: deps
	PD_SANDBOX=1 $(VENV)/bin/flask --app app db upgrade
	@echo ""
	@echo "  pd_app is starting: open http://localhost:5000  (Pipedrive sandbox at http://localhost:5000/sandbox)"
	@echo ""
	PD_SANDBOX=1 GUNICORN_BIND=127.0.0.1:5000 WEB_CONCURRENCY=1 GUNICORN_THREADS=32 \
		$(VENV)/bin/gunicorn app:app -c gunicorn.conf.py

lint: deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check pd_app tests

test: deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest

bench: deps
	$(PY) bench/proxy_bench.py
