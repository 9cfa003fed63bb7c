# Coffer: `make run` starts the platform, `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.txt | cksum | cut -d' ' -f1)

.PHONY: run test install migrate seed bench bench-api bench-deps check-ledger clean

$(STAMP): requirements.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	@rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

migrate: install
	$(BIN)/python manage.py migrate --noinput

seed: migrate
	$(BIN)/python manage.py seed_demo

## The platform: web server + Celery worker with beat, embedded defaults unless configured.
run: migrate
	@bash scripts/run.sh

## The whole suite: PostgreSQL + Redis when DATABASE_URL / REDIS_URL are set, else SQLite.
test: install
	@bash scripts/test.sh

bench: install
	$(BIN)/python bench/ledger_bench.py

## The HTTP API under wrk beside the pgbench ceiling (bench/README.md); ARGS="--quick" for a smoke run.
bench-deps:
	@bash scripts/bench-deps.sh

bench-api: install bench-deps
	$(BIN)/python bench/api_bench.py $(ARGS)

check-ledger: install
	$(BIN)/python manage.py check_ledger

clean:
	rm -rf $(VENV) var db.sqlite3* staticfiles
