##@ Benchmarks and traffic

# The HTTP load generator of `make bench` and `make load`: oha, pinned here
# at 1.16.0 (read from crates.io with `cargo info oha`, 2026-12-07). The
# bench reads its `--output-format json` fields (summary.total,
# metrics.latency_ms, statusCodeDistribution, errorDistribution); the pin
# keeps them from moving. Installed with cargo into BENCH_TOOLS unless oha is
# on PATH: it needs Rust 1.88 and about 5 minutes on 2 cores, once.
# BENCH_ARGS='--load-tool wrk' uses Debian's wrk instead (apt-get install wrk).
OHA_VERSION ?= 1.16.0
BENCH_TOOLS ?= target/tools
OHA = $(or $(shell command -v oha 2>/dev/null),$(BENCH_TOOLS)/bin/oha)
# Extra harness flags, e.g. --concurrency 64 --rounds 5 --no-pin, --no-postgres,
# --no-instructions (see `target/release/bench --help`). PostgreSQL: BENCH_POSTGRES_URL
# (default postgres://postgres@127.0.0.1:5432/postgres; skipped when unreachable).
# Instructions per page are counted under callgrind in a full run when valgrind is installed.
BENCH_ARGS ?=
BENCH_BIN_DIR ?= target/release

# `make load`: where to send traffic, how fast and how long, the share of
# slow pages and their `?delay_ms=` (empty: the service's own delay).
LOAD_URL ?= http://localhost:8080/demo-app/
LOAD_RATE ?= 10
LOAD_DURATION ?= 60s
LOAD_SLOW_SHARE ?= 0.2
LOAD_SLOW_DELAY_MS ?=
# Extra oha flags, e.g. -c 16 (see `oha --help`).
LOAD_ARGS ?=

.PHONY: bench
bench: bench-build ## Benchmark release builds (~8 min): fast page vs ceilings (SQLite, PostgreSQL), instrumentation, log lines, isolation, memory, instructions per page -> target/bench/
	PATH="$(BENCH_TOOLS)/bin:$$PATH" $(BENCH_BIN_DIR)/bench $(BENCH_ARGS)

.PHONY: bench-quick
bench-quick: bench-build ## The benchmark with a few seconds per figure (proves the harness; figures are indicative only)
	PATH="$(BENCH_TOOLS)/bin:$$PATH" $(BENCH_BIN_DIR)/bench --quick $(BENCH_ARGS)

.PHONY: bench-build
bench-build: $(if $(findstring --load-tool wrk,$(BENCH_ARGS)),,bench-tools)
	$(CARGO) build --release -p business-logic -p front-end -p bench

.PHONY: bench-tools
bench-tools:
	@[ -x "$(OHA)" ] || { echo "installing oha $(OHA_VERSION) into $(BENCH_TOOLS) (once, a few minutes)"; \
	  $(CARGO) install --locked oha --version $(OHA_VERSION) --root $(BENCH_TOOLS); }

# Each URL in the list is drawn at random: slow pages in LOAD_SLOW_SHARE of 100 lines.
.PHONY: load
load: bench-tools ## Mixed fast/slow page traffic from oha, its live view and a summary (LOAD_URL, LOAD_RATE req/s, LOAD_DURATION)
	@mkdir -p target
	@awk -v base='$(LOAD_URL)' -v share='$(LOAD_SLOW_SHARE)' -v delay='$(LOAD_SLOW_DELAY_MS)' 'BEGIN { \
	  sub(/\/*$$/, "/", base); slow = "slow-page" (delay == "" ? "" : "?delay_ms=" delay); \
	  for (i = 0; i < 100; i++) print base (i < share * 100 ? slow : "fast-page") }' > target/load-urls.txt
	$(OHA) --urls-from-file -q $(LOAD_RATE) -z $(LOAD_DURATION) -c 64 -t 30s -w $(LOAD_ARGS) target/load-urls.txt
