#!/usr/bin/env bash
# Runs business-logic and front-end together on this machine (SQLite, no
# Docker, no cluster), as `make run` does after building them.
#
# Ctrl-C (SIGINT) or SIGTERM stops both gracefully: each service gets one
# SIGTERM, finishes its in-flight requests (up to SHUTDOWN_GRACE_PERIOD_SECS,
# 20 s), flushes its spans and exits; a second Ctrl-C forces the stop at once
# (SIGKILL). Exit status 0 when both stopped cleanly, else the first failing
# service's status. The services run in process groups of their own, so a
# terminal's Ctrl-C reaches them only through this script, exactly once.
#
# Settings come from the environment (docs/configuration.md); the ports and
# binaries: FRONT_END_PORT (8080), BUSINESS_LOGIC_PORT (8081), BIN_DIR
# (target/debug, or $CARGO_TARGET_DIR/debug).
#
# Before starting, both ports must be free: a port another program holds ends
# the script at once with the variable to change (`--check-ports` does only
# that, so make run can check before it builds). "Open …" is printed only
# once both services answer /readyz from sockets they own themselves (read
# from /proc where there is one), never because another program answers there.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BIN_DIR="${BIN_DIR:-${CARGO_TARGET_DIR:-${SCRIPT_DIR}/../target}/debug}"
FRONT_END_PORT="${FRONT_END_PORT:-8080}"
BUSINESS_LOGIC_PORT="${BUSINESS_LOGIC_PORT:-8081}"
HOST="${HOST:-127.0.0.1}"
GRACE="${SHUTDOWN_GRACE_PERIOD_SECS:-20}"

say() { printf '==> %s\n' "$*"; }

# The variable that sets each service's port, for the messages.
port_var() { case "$1" in front-end) echo FRONT_END_PORT ;; *) echo BUSINESS_LOGIC_PORT ;; esac; }

# Whether something accepts connections on 127.0.0.1:PORT.
answers_on() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# NAME PORT: how to get out of a port held by another program (the port
# suggested is 1000 away: 8080 -> 9080, 8081 -> 9081, as in docs/troubleshooting.md).
port_hint() {
  local var
  var="$(port_var "$1")"
  printf '%s\n' \
    "Port $2 ($var) is taken by another program, so $1 cannot listen there." \
    "  Choose another port:  make run $var=$(($2 < 64535 ? $2 + 1000 : $2 - 1000))" \
    "  or find the program:  ss -ltnp 'sport = :$2'   (or: lsof -iTCP:$2 -sTCP:LISTEN)" >&2
}

if [ "$FRONT_END_PORT" = "$BUSINESS_LOGIC_PORT" ]; then
  echo "FRONT_END_PORT and BUSINESS_LOGIC_PORT are both $FRONT_END_PORT: give each service its own port," \
    "e.g. make run FRONT_END_PORT=8080 BUSINESS_LOGIC_PORT=8081" >&2
  exit 1
fi
taken=0
for name in business-logic front-end; do
  var="$(port_var "$name")"
  if answers_on "${!var}"; then
    port_hint "$name" "${!var}"
    taken=1
  fi
done
[ "$taken" -eq 0 ] || exit 1
[ "${1:-}" != --check-ports ] || exit 0

for bin in business-logic front-end; do
  if [ ! -x "$BIN_DIR/$bin" ]; then
    echo "$BIN_DIR/$bin not found: build it first (make run does: cargo build -p business-logic -p front-end)" >&2
    exit 1
  fi
done

# Job control: each background service gets its own process group, so the
# terminal's SIGINT goes to this script (and make) only.
set -m

names=()
ports=()
pids=()
start() {  # NAME PORT [VAR=value ...]
  local name="$1" port="$2"
  shift 2
  env HOST="$HOST" PORT="$port" "$@" "$BIN_DIR/$name" &
  names+=("$name")
  ports+=("$port")
  pids+=("$!")
  say "starting $name on http://$HOST:$port (pid $!)"
}

stopping=0
stop() {
  if [ "$stopping" -eq 0 ]; then
    stopping=1
    echo
    say "stopping: SIGTERM to business-logic and front-end; in-flight requests may finish" \
      "(up to ${GRACE} s). Ctrl-C again forces the stop"
    kill -TERM "${pids[@]}" 2>/dev/null || true
  else
    say "forcing the stop: SIGKILL to whatever still runs"
    kill -KILL "${pids[@]}" 2>/dev/null || true
  fi
}
trap stop INT TERM

start business-logic "$BUSINESS_LOGIC_PORT"
start front-end "$FRONT_END_PORT" \
  BUSINESS_LOGIC_URL="${BUSINESS_LOGIC_URL:-http://127.0.0.1:${BUSINESS_LOGIC_PORT}}"

alive() { kill -0 "$1" 2>/dev/null; }

# PID PORT: whether process PID itself listens on PORT. Linux: one of its
# file descriptors is a socket the kernel lists as listening on PORT. Without
# /proc (macOS), whether PID still runs.
listens() {
  local pid="$1" inode
  [ -r /proc/net/tcp ] || { alive "$pid"; return; }
  # /proc/net/tcp{,6}: local address (hex ADDR:PORT) in field 2, state in
  # field 4 (0A: listening), socket inode in field 10.
  while read -r inode; do
    if [ -n "$(find "/proc/$pid/fd" -maxdepth 1 -lname "socket:\\[$inode\\]" -print -quit 2>/dev/null)" ]; then
      return 0
    fi
  done < <(awk -v port="$(printf ':%04X' "$2")" \
    '$4 == "0A" && substr($2, length($2) - 4) == port { print $10 }' /proc/net/tcp /proc/net/tcp6 2>/dev/null)
  return 1
}

# Wait until both answer 200 on /readyz (business-logic: its database is up),
# each from its own socket, then say where to go. Another program accepting
# connections on a service's port ends the run.
ready_on() {
  (
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf 'GET /readyz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
    IFS= read -r -t 2 status_line <&3
    [[ "$status_line" == *" 200 "* ]]
  ) 2>/dev/null
}
say "waiting for both to answer on /readyz"
ready=0
intruder=""
for _ in $(seq 300); do
  ready_count=0
  for i in 0 1; do
    answers_on "${ports[$i]}" || continue
    if listens "${pids[$i]}" "${ports[$i]}"; then
      if ready_on "${ports[$i]}"; then ready_count=$((ready_count + 1)); fi
    elif alive "${pids[$i]}"; then
      intruder="$i"  # the port accepts, and not through the service's own socket
    fi
  done
  [ -z "$intruder" ] || break
  if [ "$ready_count" -eq 2 ]; then ready=1; break; fi
  if ! alive "${pids[0]}" || ! alive "${pids[1]}"; then break; fi
  [ "$stopping" -eq 0 ] || break
  sleep 0.1
done
status=0
if [ -n "$intruder" ] && [ "$stopping" -eq 0 ]; then
  echo "${names[$intruder]} (pid ${pids[$intruder]}) does not listen on port ${ports[$intruder]}," \
    "yet something accepts connections there." >&2
  port_hint "${names[$intruder]}" "${ports[$intruder]}"
  status=1
  stop
elif [ "$ready" -eq 1 ] && [ "$stopping" -eq 0 ]; then
  printf '\n  Open http://localhost:%s/  (Ctrl-C stops both services)\n\n' "$FRONT_END_PORT"
elif [ "$stopping" -eq 0 ] && alive "${pids[0]}" && alive "${pids[1]}"; then
  say "not ready after 30 s; still waiting (see the log above)"
fi

# Supervise: when one service ends on its own, stop the other; report each
# exit as it happens. `sleep & wait` keeps the loop responsive to signals.
done_count=0
reported=(0 0)
while [ "$done_count" -lt 2 ]; do
  for i in 0 1; do
    [ "${reported[$i]}" -eq 0 ] || continue
    alive "${pids[$i]}" && continue
    code=0
    wait "${pids[$i]}" || code=$?
    reported[i]=1
    done_count=$((done_count + 1))
    if [ "$stopping" -eq 1 ] && [ "$code" -eq 0 ]; then
      say "${names[$i]} stopped (exit 0)"
    else
      say "${names[$i]} exited with status $code"
      if [ "$ready" -eq 0 ] && [ -z "$intruder" ] && [ "$stopping" -eq 0 ]; then
        if answers_on "${ports[$i]}"; then
          # Another program took the port between the check above and the bind.
          port_hint "${names[$i]}" "${ports[$i]}"
        else
          say "${names[$i]} stopped before it was ready (see its message above;" \
            "its port is $(port_var "${names[$i]}")=${ports[$i]})"
        fi
      fi
      [ "$status" -ne 0 ] || status="$code"
      [ "$stopping" -eq 1 ] || { say "stopping the other service"; stop; }
    fi
  done
  [ "$done_count" -lt 2 ] || break
  sleep 0.2 &
  wait $! 2>/dev/null || true
done
trap - INT TERM
if [ "$status" -eq 0 ]; then say "both services stopped cleanly"; fi
exit "$status"
