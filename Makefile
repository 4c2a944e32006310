# Developer entry points. `make install` first; the others use the .venv it creates.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: help install lint test run kafka-up kafka-down compose-check

help:
	@echo "make install        create $(VENV) and install livepulse with its dev extra"
	@echo "make lint           ruff check, ruff format --check, mypy"
	@echo "make test           the test suite (scripts/test.sh)"
	@echo "make run            the local pipeline (scripts/run.sh)"
	@echo "make kafka-up       start the local Kafka broker (livepulse kafka up)"
	@echo "make kafka-down     stop it"
	@echo "make compose-check  check docker-compose.yml, Dockerfile, deploy/, the Prometheus rules and the dashboards without Docker"

install:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e ".[dev]"

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test:
	bash scripts/test.sh

run:
	bash scripts/run.sh

kafka-up:
	$(BIN)/livepulse kafka up

kafka-down:
	$(BIN)/livepulse kafka down

compose-check:
	$(BIN)/python -m pytest tests/test_compose.py tests/test_prometheus_rules.py tests/test_grafana_dashboards.py
