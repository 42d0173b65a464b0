# The two commands a user needs: `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
CONFIG ?= config.demo.yaml
LISTEN ?= 127.0.0.1:8080

.PHONY: install run test test-unit bench clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	touch $@

run: install
	$(PY) -m app --config $(CONFIG) --listen $(LISTEN)

# Two test processes: most of a test is waiting on its server, so two share
# two cores well (CI has two); `make test PYTEST_ARGS=...` to pick, e.g. -n 0.
PYTEST_ARGS ?= -n 2
test: install
	$(PY) -m pytest $(PYTEST_ARGS) tests

test-unit: install
	$(PY) -m pytest tests/unit

bench: install
	$(PY) -m bench

clean:
	rm -rf $(VENV) .pytest_cache
