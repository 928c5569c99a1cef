# kvstack: the two commands of the README, and the steps they are made of.
#   make demo   set up everything, start the local real-vLLM stack, verify it, render the dev stack
#   make test   lint, format check, strict types and the whole test suite (real vLLM + Prometheus)
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
KVSTACK := $(BIN)/kvstack
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup system-packages demo fleet test lint types down status clean dashboards

## setup: system packages (Prometheus, promtool, bubblewrap), the project venv, the local vLLM and vllm-router
##        venvs, the model
setup: system-packages $(VENV)/.installed
	$(KVSTACK) local install

system-packages:
	@command -v prometheus >/dev/null && command -v promtool >/dev/null || { \
	  echo "installing Debian's prometheus (prometheus + promtool)"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
	  if [ -d /run/systemd/system ]; then \
	    echo "stopping the system Prometheus service the package started (it listens beyond loopback)"; \
	    $(SUDO) systemctl disable --now prometheus >/dev/null 2>&1 || true; \
	  fi; }
	@command -v bwrap >/dev/null || { \
	  echo "installing Debian's bubblewrap (the pod rehearsal runs vLLM as the pod's uid on a read-only root)"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends bubblewrap >/dev/null; }

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade 'pip>=25.1'
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[infra,monitoring,plots]' --group dev
	touch $@

## demo: the main job on the embedded default (the local stack). Leaves the stack running.
demo: setup
	$(KVSTACK) local up
	$(KVSTACK) verify --endpoint "$$($(KVSTACK) local url)" --out reports/verify
	$(KVSTACK) plan --stack dev
	$(KVSTACK) render --stack dev --out rendered/dev
	@echo
	@echo "== where everything is"
	$(KVSTACK) local status
	@echo "verify report:      reports/verify/ (verify-report.json, verify-junit.xml, *.png)"
	@echo "rendered manifests: rendered/dev/"
	@echo "stop the local stack with: $(KVSTACK) local down"

## fleet: 2 replicas behind vllm-router (cache_aware) + Prometheus, then a rolling update under load.
## Leaves the fleet running; `make down` stops it. (`make demo` stays single-replica.)
fleet: setup
	$(KVSTACK) local up --replicas 2 --router cache_aware --kv-cache-gib 1
	$(KVSTACK) local status
	$(KVSTACK) local rollout --load-streams 4

## test: what CI runs
test: setup lint types
	@rc=0; $(BIN)/pytest --durations=15 || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: that is a failure here" >&2; exit 1; fi; \
	exit $$rc

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache --no-logo

types: $(VENV)/.installed
	$(BIN)/mypy

## dashboards: regenerate the committed dashboard JSON from the generator
dashboards: $(VENV)/.installed
	$(BIN)/python -m kvstack.monitoring.dashboards.generate

status:
	$(KVSTACK) local status

down:
	$(KVSTACK) local down

clean: down
	rm -rf reports rendered .kvstack
