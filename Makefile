# Service-mesh observability demo: two Rust services, Helm charts, a kind cluster with Istio.
# `make` (or `make help`) lists the targets and the main variables. Every variable
# set with ?= can be overridden:
#   make run FRONT_END_PORT=9090
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

CARGO ?= cargo
# Python virtual environment for the deployment checks, linters and the offline
# chart tools in tools/ (all from tests/requirements.txt).
VENV ?= .venv
PYTHON ?= python3
# A folder holding other helm-render and validate-manifests to use instead of
# the ones tools/ installs into VENV (optional; empty: the repository's own).
SHARED_TOOLS ?=
HELM_RENDER = $(if $(SHARED_TOOLS),$(SHARED_TOOLS)/helm-render,$(VENV)/bin/helm-render)
VALIDATE_MANIFESTS = $(if $(SHARED_TOOLS),$(SHARED_TOOLS)/validate-manifests,$(VENV)/bin/validate-manifests)

FRONT_END_PORT ?= 8080
BUSINESS_LOGIC_PORT ?= 8081
# The Jaeger v2 image `make jaeger` runs: the one the cluster runs (istio-add-ons/jaeger.yaml).
JAEGER_IMAGE ?= $(shell sed -n 's|^ *image: *\(cr\.jaegertracing\.io/jaegertracing/jaeger:[^ ]*\)$$|\1|p' istio-add-ons/jaeger.yaml | head -n 1)
DOCKER ?= docker

# `make help` prints these with their values (each mk/*.mk adds its own).
HELP_VARIABLES := FRONT_END_PORT BUSINESS_LOGIC_PORT CARGO VENV PYTHON SHARED_TOOLS JAEGER_IMAGE TEST_DATABASE_URL
TEST_DATABASE_URL ?=

##@ Help
.PHONY: help
help: ## Show this help: the targets, then the main variables and their values
	@awk 'BEGIN { FS = ":.*##"; n = 0 } \
	  /^##@/ { section = substr($$0, 5); if (!(section in seen)) { seen[section] = ++n; order[n] = section } next } \
	  /^[a-zA-Z0-9_-]+:.*?##/ { lines[section] = lines[section] sprintf("  \033[36m%-22s\033[0m %s\n", $$1, $$2) } \
	  END { printf "Usage: make \033[36m<target>\033[0m [VARIABLE=value ...]\n"; \
	        for (i = 1; i <= n; i++) printf "\n\033[1m%s\033[0m\n%s", order[i], lines[order[i]] }' $(MAKEFILE_LIST)
	@printf '\n\033[1mVariables\033[0m (current values; override with make TARGET NAME=value)\n'
	@$(foreach v,$(HELP_VARIABLES),printf '  \033[36m%-22s\033[0m %s\n' '$(v)' '$(subst ','"'"',$($(v)))';)

##@ Run locally (no Docker, no cluster)
.PHONY: run
run: ## Build, then run business-logic and front-end (SQLite): http://localhost:8080/ ; Ctrl-C stops both (gracefully)
	@command -v $(CARGO) >/dev/null || { printf '%s\n' \
	  "make run needs cargo from Rust 1.89 or newer, and '$(CARGO)' is not on PATH." \
	  "Install Rust with rustup (https://rustup.rs):" \
	  "  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh" \
	  "then open a new terminal (or run: . \"\$$HOME/.cargo/env\") and run make run again." >&2; exit 1; }
	@FRONT_END_PORT=$(FRONT_END_PORT) BUSINESS_LOGIC_PORT=$(BUSINESS_LOGIC_PORT) scripts/run-local.sh --check-ports
	@echo "==> building business-logic and front-end (debug build; the first one takes a few minutes)"
	$(CARGO) build -p business-logic -p front-end
	@FRONT_END_PORT=$(FRONT_END_PORT) BUSINESS_LOGIC_PORT=$(BUSINESS_LOGIC_PORT) scripts/run-local.sh

.PHONY: run-front-end
run-front-end: ## Run front-end alone on FRONT_END_PORT, calling business-logic on BUSINESS_LOGIC_PORT
	PORT=$(FRONT_END_PORT) BUSINESS_LOGIC_URL=http://127.0.0.1:$(BUSINESS_LOGIC_PORT) $(CARGO) run -p front-end

.PHONY: run-business-logic
run-business-logic: ## Run business-logic on BUSINESS_LOGIC_PORT (SQLite file, no set-up)
	PORT=$(BUSINESS_LOGIC_PORT) $(CARGO) run -p business-logic

.PHONY: jaeger
jaeger: ## Run Jaeger v2 in Docker for make run: UI http://localhost:16686, the services' OTLP on 4318 (Ctrl-C stops)
	@command -v $(DOCKER) >/dev/null || { echo "make jaeger needs Docker: https://docs.docker.com/get-started/get-docker/" >&2; exit 1; }
	@echo "==> Jaeger v2 ($(JAEGER_IMAGE)): UI http://localhost:16686 ; the services export OTLP/HTTP to 4318" \
	  "(Zipkin on 9411 is for OTEL_TRACES_EXPORTER=zipkin)"
	$(DOCKER) run --rm -p 16686:16686 -p 9411:9411 -p 4318:4318 $(JAEGER_IMAGE)

.PHONY: clean
clean: ## Remove local artefacts: target/ (builds, target/bench, target/screenshots), the .venv, business-logic.db*
	rm -rf target $(VENV) .pytest_cache .hypothesis business-logic.db business-logic.db-shm business-logic.db-wal
	find tests tools -name __pycache__ -type d -prune -exec rm -rf {} +
	rm -rf tools/*.egg-info

##@ Test
.PHONY: test
test: test-rust test-deploy ## Run every test: Rust (SQLite, and PostgreSQL when TEST_DATABASE_URL is set), then the chart and cluster checks

# The tests that need PostgreSQL, and only they, live in modules named
# `needs_postgres` (tests/local/test_repository.py checks both ways). Without
# TEST_DATABASE_URL they are left out by that marker, so nextest lists each
# as SKIP and counts them as skipped rather than passed; under CI=true that
# is an error.
NEEDS_POSTGRES := test(/(^|::)needs_postgres::/)

.PHONY: test-rust
test-rust: ## Rust unit and integration tests (cargo nextest); those needing PostgreSQL skipped without TEST_DATABASE_URL
	@if [ -n "$(TEST_DATABASE_URL)" ]; then \
	  echo "==> Rust tests on SQLite and PostgreSQL (TEST_DATABASE_URL=$(TEST_DATABASE_URL))"; \
	  $(CARGO) nextest run --workspace --no-fail-fast; \
	elif [ "$${CI:-}" = true ]; then \
	  echo "TEST_DATABASE_URL is unset: the PostgreSQL tests cannot run, and CI=true does not skip them" >&2; exit 1; \
	else \
	  echo "==> TEST_DATABASE_URL unset: the tests that need PostgreSQL (modules named needs_postgres) are" \
	    "skipped, each listed as SKIP; set it to run them, e.g. TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres"; \
	  $(CARGO) nextest run --workspace --no-fail-fast --status-level skip -E 'not $(NEEDS_POSTGRES)'; \
	fi

.PHONY: test-reliability
test-reliability: ## Fault, bad-input and sustained-load suite alone (the database faults need TEST_DATABASE_URL; skipped without it)
	$(CARGO) nextest run -p test-support --test reliability --no-fail-fast --success-output final \
	  $(if $(TEST_DATABASE_URL),,--status-level skip -E 'not $(NEEDS_POSTGRES)')

# Extra pytest arguments for test-deploy, e.g. PYTEST_ARGS='-k chart -rs'.
PYTEST_ARGS ?=

# pytest in two steps, every test once: first, alone, the tests marked `serial` (their time
# bounds assume nothing else runs beside them: make run draining its in-flight pages; see
# tests/conftest.py), then all the others on every core (pytest-xdist; `worksteal` hands an idle
# worker the queue of a busy one, so the few minute-long matrices do not leave a core idle at the
# end: 306 s instead of 343 s on two cores, with 584 s of tests). One step that PYTEST_ARGS
# leaves empty (pytest's status 5) is no error, both are; otherwise the first failing status is make's.
.PHONY: test-deploy
test-deploy: $(VENV)/.installed ## Charts, manifests, cluster script (stand-in tools), make run and targets, Grafana links and dashboard queries against the real services (pytest)
	@status=0; empty=0; \
	step() { echo "==> pytest -q $$* $(PYTEST_ARGS)"; \
	  $(VENV)/bin/pytest -q "$$@" $(PYTEST_ARGS) || { s=$$?; \
	    if [ "$$s" -eq 5 ]; then empty=$$((empty + 1)); elif [ "$$status" -eq 0 ]; then status=$$s; fi; }; }; \
	step -m serial tests; \
	step -n auto --dist worksteal -m 'not serial' tests; \
	if [ "$$empty" -eq 2 ]; then echo "test-deploy: no test matches PYTEST_ARGS=$(PYTEST_ARGS)" >&2; status=5; fi; \
	exit $$status

$(VENV)/.installed: tests/requirements.txt tools/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r tests/requirements.txt
	@# helm-python-sdk's Linux wheel holds libhelm_c.so three times (85 MB each): keep one, link the others.
	@for lib in $(VENV)/lib/python3*/site-packages/helm_python/lib/libhelm_c.so.*; do \
	  if [ -f "$$lib" ] && [ ! -L "$$lib" ] && cmp -s "$$lib" "$${lib%.so.*}.so"; then ln -sf libhelm_c.so "$$lib"; fi; \
	done
	touch $@

##@ Lint
.PHONY: lint
lint: lint-rust lint-charts lint-docker lint-yaml lint-shell lint-cluster ## Every linter: Rust, charts, Dockerfiles, YAML, shell scripts, cluster files

.PHONY: lint-rust
lint-rust: ## cargo fmt --check and clippy -D warnings
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Every shell script git knows: *.sh, and files whose first line is a sh/bash shebang.
.PHONY: lint-shell
lint-shell: $(VENV)/.installed ## shellcheck on every shell script in the repository (by name or shebang)
	@scripts=(); \
	while IFS= read -r f; do \
	  [ -f "$$f" ] || continue; \
	  case "$$f" in *.sh) scripts+=("$$f"); continue ;; esac; \
	  if head -n 1 "$$f" | grep -Eq '^#!(/usr)?/bin/(env +)?(ba|da|k)?sh( |$$)'; then scripts+=("$$f"); fi; \
	done < <(git ls-files 2>/dev/null || find . -type f -not -path './target/*' -not -path './.git/*' -not -path './$(VENV)/*'); \
	$(VENV)/bin/shellcheck "$${scripts[@]}"; \
	echo "lint-shell: shellcheck passed on $${#scripts[@]} scripts: $${scripts[*]}"

-include mk/*.mk
