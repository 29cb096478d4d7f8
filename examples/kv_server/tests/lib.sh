# shellcheck shell=bash
# examples/kv_server/tests/lib.sh: helpers the kv_server integration tests source.
#
# Usage in a test:  source "$(dirname "$0")/lib.sh" "$1"; require redis-cli; start_server ...
# Provides: BIN (the server), WORK (a temporary directory removed at exit), PORT and
# SERVER_PID of the running server, start_server/stop_server, rcli, raw, check, finish.
# Every server started is killed at exit, even when the test fails or is interrupted.

set -u
BIN=${1:?usage: $0 path/to/kv_server}
if [[ ! -x $BIN ]]; then
  echo "not executable: $BIN" >&2
  exit 2
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/kv_server_test.XXXXXX")
SERVER_PID=""
PORT=""
FAILURES=0
CHECKS=0

cleanup() {
  if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -KILL "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
  fi
  # Background helpers a test started (load generators, crash loops).
  local pids
  pids=$(jobs -p)
  if [[ -n $pids ]]; then
    # shellcheck disable=SC2086 # one PID per word
    kill $pids 2>/dev/null
    wait 2>/dev/null
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# require TOOL...: exit 77 (ctest: skipped) when a tool is missing.
require() {
  local t
  for t in "$@"; do
    if ! command -v "$t" >/dev/null 2>&1; then
      echo "SKIP: $t not found" >&2
      exit 77
    fi
  done
}

# start_server [FLAGS...]: starts the server on a free loopback port (--port 0) with
# --dir $WORK/data unless FLAGS name another; waits for its "listening" line; sets PORT.
start_server() {
  local out="$WORK/server.out"
  : >"$out"
  "$BIN" --port 0 --dir "$WORK/data" --log-level err "$@" >"$out" 2>>"$WORK/server.err" &
  SERVER_PID=$!
  local i
  for ((i = 0; i < 100; i++)); do
    if grep -q '^kv_server listening on ' "$out"; then
      PORT=$(sed -n 's/^kv_server listening on .*:\([0-9]*\)$/\1/p' "$out")
      return 0
    fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      echo "kv_server exited at start:" >&2
      cat "$WORK/server.err" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "kv_server did not print its listening line in 10 s" >&2
  exit 1
}

# stop_server [SIGNAL]: stops the server (SIGTERM: graceful, it must exit 0) and waits.
stop_server() {
  local sig=${1:-TERM}
  kill -"$sig" "$SERVER_PID"
  local rc=0
  { wait "$SERVER_PID"; } 2>/dev/null || rc=$?
  if [[ $sig == TERM ]]; then
    check "graceful stop exits 0" 0 "$rc"
  fi
  SERVER_PID=""
}

# rcli ARGS...: redis-cli against the server (non-tty output: raw replies, one per line).
rcli() {
  redis-cli -p "$PORT" "$@"
}

# raw BYTES: sends BYTES (printf %b escapes: \r \n \x..) on a fresh connection and prints
# everything the server sends back until it closes the connection (or 5 s pass).
raw() {
  local reply
  exec 3<>"/dev/tcp/127.0.0.1/$PORT"
  printf '%b' "$1" >&3
  reply=$(timeout 5 cat <&3 2>/dev/null; printf x)
  exec 3<&- 3>&-
  printf '%s' "${reply%x}"
}

# check_raw DESCRIPTION EXPECTED BYTES: raw BYTES, compared with EXPECTED exactly (trailing
# newlines included, which $(...) would strip).
check_raw() {
  local reply
  reply=$(raw "$3"; printf x)
  check "$1" "$2" "${reply%x}"
}

# check DESCRIPTION EXPECTED ACTUAL: compares exactly; reports and counts a mismatch.
check() {
  CHECKS=$((CHECKS + 1))
  if [[ $2 != "$3" ]]; then
    FAILURES=$((FAILURES + 1))
    echo "FAIL: $1" >&2
    echo "  expected: $(printf '%q' "$2")" >&2
    echo "  actual:   $(printf '%q' "$3")" >&2
  fi
}

# rss_kb: the server's resident memory in KiB.
rss_kb() {
  awk '/^VmRSS:/ {print $2}' "/proc/$SERVER_PID/status"
}

# info_field NAME: a field of INFO (e.g. connected_clients).
info_field() {
  rcli INFO | tr -d '\r' | sed -n "s/^$1://p"
}

# finish: prints the summary; exit 1 when a check failed (or a sanitizer reported).
finish() {
  check "no sanitizer report from the server" "" \
    "$(grep -m1 -E 'ERROR: AddressSanitizer|WARNING: ThreadSanitizer|runtime error:|ERROR: LeakSanitizer' "$WORK/server.err" 2>/dev/null)"
  if ((FAILURES > 0)); then
    echo "$FAILURES of $CHECKS checks failed" >&2
    if [[ -s $WORK/server.err ]]; then
      echo "--- server stderr:" >&2
      tail -20 "$WORK/server.err" >&2
    fi
    exit 1
  fi
  echo "all $CHECKS checks passed"
  exit 0
}
