# Two commands do all set-up: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

.PHONY: install demo test lint
install: $(VENV)/.installed

demo: install  ## a user and two agents, on SQLite and an embedded Redis
	$(VENV)/bin/agentq demo

test: install  ## the whole suite, against local PostgreSQL and real Redis/Celery processes
	$(VENV)/bin/ruff check agentq workers tests
	$(VENV)/bin/pytest -q -p no:cacheprovider --durations=15

lint: install
	$(VENV)/bin/ruff check agentq workers tests
	$(VENV)/bin/mypy agentq
