# Two commands do all set-up: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
#: what the checks cover: the package, the Celery shim, the tests and the workshop in ops/
CHECKED := agentq workers tests ops

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

.PHONY: install demo test lint
install: $(VENV)/.installed

demo: install  ## a user and two agents, on SQLite and an embedded Redis
	$(VENV)/bin/agentq demo

lint: install  ## the checks CI runs before the tests (also .pre-commit-config.yaml)
	$(VENV)/bin/ruff check $(CHECKED)
	$(VENV)/bin/ruff format --check $(CHECKED)
	$(VENV)/bin/mypy agentq
	$(VENV)/bin/lint-imports

test: lint  ## the checks, then the whole suite against local PostgreSQL and real Redis/Celery processes
	$(VENV)/bin/pytest -q -p no:cacheprovider --durations=15
