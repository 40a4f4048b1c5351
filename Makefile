# Service-mesh observability demo: two Rust services, Helm charts, a kind cluster with Istio.
# `make` (or `make help`) lists the targets. Every variable set with ?= can be overridden:
#   make run FRONT_END_PORT=9090
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

CARGO ?= cargo
# Python virtual environment for the deployment checks and linters (tests/requirements.txt).
VENV ?= .venv
PYTHON ?= python3

FRONT_END_PORT ?= 8080
BUSINESS_LOGIC_PORT ?= 8081

##@ Help
.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make \033[36m<target>\033[0m\n"} \
	  /^[a-zA-Z0-9_-]+:.*?##/ { printf "  \033[36m%-22s\033[0m %s\n", $$1, $$2 } \
	  /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Run locally (no Docker, no cluster)
.PHONY: run
run: ## Run business-logic and front-end together (SQLite): http://localhost:8080/ ; Ctrl-C stops both
	$(CARGO) build -p business-logic -p front-end
	FRONT_END_PORT=$(FRONT_END_PORT) BUSINESS_LOGIC_PORT=$(BUSINESS_LOGIC_PORT) scripts/run-local.sh

.PHONY: run-front-end
run-front-end: ## Run front-end alone on FRONT_END_PORT, calling business-logic on BUSINESS_LOGIC_PORT
	PORT=$(FRONT_END_PORT) BUSINESS_LOGIC_URL=http://127.0.0.1:$(BUSINESS_LOGIC_PORT) $(CARGO) run -p front-end

.PHONY: run-business-logic
run-business-logic: ## Run business-logic on BUSINESS_LOGIC_PORT (SQLite file, no set-up)
	PORT=$(BUSINESS_LOGIC_PORT) $(CARGO) run -p business-logic

##@ Test and lint
.PHONY: test
test: test-rust test-deploy ## Run every test: Rust (SQLite, and PostgreSQL when TEST_DATABASE_URL is set), then the chart and cluster checks

.PHONY: test-rust
test-rust: ## Rust unit and integration tests (cargo nextest)
	$(CARGO) nextest run --workspace --no-fail-fast

.PHONY: test-reliability
test-reliability: ## Fault, bad-input and sustained-load suite alone (needs TEST_DATABASE_URL for the database faults)
	$(CARGO) nextest run -p test-support --test reliability --no-fail-fast --success-output final

.PHONY: test-deploy
test-deploy: $(VENV)/.installed ## Charts, manifests, cluster script (stand-in tools), Grafana links and dashboard queries against the real services (pytest)
	$(VENV)/bin/pytest -q tests

$(VENV)/.installed: tests/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -r tests/requirements.txt
	touch $@

.PHONY: lint
lint: lint-rust lint-charts lint-docker lint-yaml lint-cluster ## Every linter: Rust, charts, Dockerfiles, YAML, cluster files

.PHONY: lint-rust
lint-rust: ## cargo fmt --check and clippy -D warnings
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

-include mk/*.mk
