#!/usr/bin/env bash
# Runs business-logic and front-end together on this machine (SQLite, no
# Docker, no cluster). Ctrl-C stops both, letting in-flight requests finish.
# Settings come from the environment (see the README's table); the ports:
#   FRONT_END_PORT (8080), BUSINESS_LOGIC_PORT (8081), BIN_DIR (target/debug).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BIN_DIR="${BIN_DIR:-${SCRIPT_DIR}/../target/debug}"
FRONT_END_PORT="${FRONT_END_PORT:-8080}"
BUSINESS_LOGIC_PORT="${BUSINESS_LOGIC_PORT:-8081}"

pids=()
stop() {
  trap - INT TERM EXIT
  if [ ${#pids[@]} -gt 0 ]; then
    echo "stopping (in-flight requests may finish first) ..."
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
  fi
}
trap stop INT TERM EXIT

HOST="${HOST:-127.0.0.1}" PORT="$BUSINESS_LOGIC_PORT" "$BIN_DIR/business-logic" &
pids+=($!)
HOST="${HOST:-127.0.0.1}" PORT="$FRONT_END_PORT" \
  BUSINESS_LOGIC_URL="${BUSINESS_LOGIC_URL:-http://127.0.0.1:${BUSINESS_LOGIC_PORT}}" \
  "$BIN_DIR/front-end" &
pids+=($!)

# Wait until the front-end answers, then say where to go.
for _ in $(seq 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/${FRONT_END_PORT}") 2>/dev/null; then break; fi
  sleep 0.1
done
printf '\n  Open http://localhost:%s/  (Ctrl-C stops both services)\n\n' "$FRONT_END_PORT"

# Stop everything when either service exits on its own.
wait -n "${pids[@]}"
