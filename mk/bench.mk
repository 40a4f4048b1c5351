##@ Benchmarks and traffic

# The HTTP load generator `make bench` drives: oha if it is on PATH or under
# BENCH_TOOLS, else Debian's wrk if it is on PATH (`apt-get install wrk`), else
# oha installed under BENCH_TOOLS with cargo. oha is pinned at 1.16.0, the
# current release when the harness was written: the harness reads its
# `--output-format json` fields (summary.total, metrics.latency_ms,
# statusCodeDistribution, errorDistribution), and a pin keeps them from
# moving. It needs Rust 1.88 and takes about 5 minutes to build on 2 cores, once.
# Choose one with BENCH_ARGS='--load-tool wrk' (or oha).
OHA_VERSION ?= 1.16.0
BENCH_TOOLS ?= target/tools
# Extra harness flags, e.g. --concurrency 64 --rounds 5 --no-pin, --no-postgres,
# --no-instructions (see `target/release/bench --help`). PostgreSQL: BENCH_POSTGRES_URL
# (default postgres://postgres@127.0.0.1:5432/postgres; skipped when unreachable).
# Instructions per page are counted in a full run when perf or valgrind works here.
BENCH_ARGS ?=
BENCH_BIN_DIR ?= target/release

# `make load`: where to send traffic, how fast and how long.
LOAD_URL ?= http://localhost:8080/demo-app/
LOAD_RATE ?= 10
LOAD_DURATION ?= 60s
LOAD_SLOW_SHARE ?= 0.2
# Extra flags, e.g. --slow-delay-ms 1500 --concurrency 32 (see `--help`).
LOAD_ARGS ?=

.PHONY: bench
bench: bench-build ## Benchmark release builds (~8 min): fast page vs ceilings (SQLite, PostgreSQL), instrumentation, log lines, isolation, memory, instructions per page -> target/bench/
	PATH="$(BENCH_TOOLS)/bin:$$PATH" $(BENCH_BIN_DIR)/bench $(BENCH_ARGS)

.PHONY: bench-quick
bench-quick: bench-build ## The benchmark with a few seconds per figure (proves the harness; figures are indicative only)
	PATH="$(BENCH_TOOLS)/bin:$$PATH" $(BENCH_BIN_DIR)/bench --quick $(BENCH_ARGS)

.PHONY: bench-build
bench-build: bench-tools
	$(CARGO) build --release -p business-logic -p front-end -p bench

.PHONY: bench-tools
bench-tools:
	@if [ -n "$(findstring --load-tool wrk,$(BENCH_ARGS))" ] \
	  || command -v oha >/dev/null || [ -x "$(BENCH_TOOLS)/bin/oha" ] \
	  || { command -v wrk >/dev/null && [ -z "$(findstring --load-tool oha,$(BENCH_ARGS))" ]; }; then :; else \
	  echo "installing oha $(OHA_VERSION) into $(BENCH_TOOLS) (once, a few minutes)"; \
	  $(CARGO) install --locked oha --version $(OHA_VERSION) --root $(BENCH_TOOLS); \
	fi

.PHONY: load
load: ## Mixed fast/slow page traffic with a progress bar and a summary (LOAD_URL, LOAD_RATE req/s, LOAD_DURATION)
	$(CARGO) run --release -p bench --bin load -- --url "$(LOAD_URL)" --rate $(LOAD_RATE) \
	  --duration $(LOAD_DURATION) --slow-share $(LOAD_SLOW_SHARE) $(LOAD_ARGS)
