# lookout — every target bootstraps .venv itself; only Python 3.11+ is needed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# What running needs (make run), and the test and lint tools on top of it (make test…).
RUN_STAMP := $(VENV)/.run-stamp
STAMP     := $(VENV)/.installed-stamp
# make run keeps its state (JetStream: notifications, dead letters, lookups) in the
# checkout, whatever the directory make is called from; set LOOKOUT_DATA_DIR to move it.
# A bare `lookout run` defaults to $$XDG_STATE_HOME/lookout (~/.local/state/lookout).
LOOKOUT_DATA_DIR ?= $(CURDIR)/.lookout

.PHONY: run test lint format bench clean

define VENV_BOOTSTRAP
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "lookout needs Python 3.11 or newer (found: $$($(PYTHON) --version))"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
endef

$(RUN_STAMP): pyproject.toml
	$(VENV_BOOTSTRAP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e .
	@touch $(RUN_STAMP)

$(STAMP): pyproject.toml
	$(VENV_BOOTSTRAP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP) $(RUN_STAMP)

run: $(RUN_STAMP)
	LOOKOUT_DATA_DIR="$(LOOKOUT_DATA_DIR)" exec $(BIN)/lookout run

test: $(STAMP)
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || [ "$$(id -u)" != 0 ] || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
		echo "could not install chromium: the browser tests will be skipped"
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict shared services

bench: $(STAMP)
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -qq wrk >/dev/null; } || \
		{ echo "make bench needs wrk (apt-get install wrk)"; exit 1; }
	@command -v nsd >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -qq nsd >/dev/null; } || \
		{ echo "make bench needs nsd (apt-get install nsd)"; exit 1; }
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,bench]'
	$(BIN)/python tests/bench/run.py
	$(BIN)/python tests/bench/lookup_job.py
	$(BIN)/python tests/bench/emailsec_bench.py
	$(BIN)/python tests/bench/fanout.py

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .lookout .pytest_cache .mypy_cache .ruff_cache

# Multi-container deploy (docker-compose.yml): NATS + every service in its own container.
.PHONY: up down
DOCKER_COMPOSE_CHECK = command -v docker >/dev/null 2>&1 || \
		{ echo "make $@ needs Docker with the compose plugin (https://docs.docker.com/engine/install/)"; exit 1; }; \
	docker compose version >/dev/null 2>&1 || \
		{ echo "make $@ needs the Docker compose plugin ('docker compose'; https://docs.docker.com/compose/install/)"; exit 1; }

up:
	@$(DOCKER_COMPOSE_CHECK)
	@missing=; for f in deploy/secrets/*.txt.example; do \
		[ -f "$${f%.example}" ] || missing="$$missing $${f%.example}"; done; \
	[ -z "$$missing" ] || { echo "make up: missing secret files:$$missing"; \
		echo 'create them from the examples, then edit them:'; \
		echo '  for f in deploy/secrets/*.txt.example; do cp -n "$$f" "$${f%.example}"; done'; exit 1; }
	@held=$$(grep -l 'example-only-change-me' deploy/secrets/*.txt); \
	[ -z "$$held" ] || { echo "make up: secret files still holding the example's public placeholder:"; \
		echo "$$held" | sed 's/^/  /'; \
		echo 'put secrets of your own there (every lookout service refuses the placeholders);'; \
		echo 'for a provider you have no key for, set its *_FILE= empty in .env (see deploy/env.example)'; \
		exit 1; }
	docker compose up -d --build
	@echo "lookout is starting: http://$$(docker compose port gateway 8080)/  (docker compose ps; docker compose logs -f)"

down:
	@$(DOCKER_COMPOSE_CHECK)
	docker compose down
