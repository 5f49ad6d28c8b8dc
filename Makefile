# The two commands of the README quick start.
PYTHON ?= python3
ARGS ?=
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test venv venv-test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

venv: $(BIN)/python
	$(BIN)/pip install -q -e .

venv-test: $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	./scripts/ensure-browser.sh

## make run: create the virtualenv, install, and start the whole embedded stack with the simulator
run: venv
	$(BIN)/opscenter up --simulate $(ARGS)

## make test: create the virtualenv with test extras and run the whole suite
test: venv-test
	$(BIN)/python -m pytest

clean:
	rm -rf var .pytest_cache
