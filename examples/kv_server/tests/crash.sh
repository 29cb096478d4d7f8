#!/usr/bin/env bash
# examples/kv_server/tests/crash.sh: shards crash (DEBUG CRASH-SHARD) under load and lose no
# acknowledged write. For a few seconds a writer sets k_i = v_i one command at a time and
# records which SETs were acknowledged (+OK); meanwhile redis-benchmark loads the server and
# a loop crashes the shards round-robin. Afterwards every acknowledged key must read back, from the restarted
# shards, after a graceful restart, and after a SIGKILL once the AOF had its second to flush.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh" "$1"
require redis-cli redis-benchmark timeout

SHARDS=4
SECONDS_WRITING=${KV_CRASH_SECONDS:-6}
start_server --shards "$SHARDS"

# Background load on other keys.
timeout 120 redis-benchmark -p "$PORT" -t set,get -r 100000 -n 10000000 -c 10 -P 4 -q \
  >"$WORK/bench.out" 2>&1 &
load=$!
# The crash loop: one shard every 10 ms, round-robin, appending one line per acknowledged
# crash. (An append is all-or-nothing even when the loop is killed mid-way; rewriting a
# counter file is not: a kill between truncate and write left it empty once in CI.)
: >"$WORK/crashes"
(
  i=0
  while :; do
    if [[ $(redis-cli -p "$PORT" DEBUG CRASH-SHARD $((i % SHARDS)) 2>/dev/null) == OK ]]; then
      echo crash >>"$WORK/crashes"
    fi
    i=$((i + 1))
    sleep 0.01
  done
) &
crasher=$!

# The writer: one redis-cli session sending SET k_i v_i one at a time (each waits for its
# reply) for SECONDS_WRITING seconds. Reply line n is SET k_(n-1)'s; SETs whose reply was
# not printed when the writer was stopped count as unacknowledged.
for ((i = 0; ; i++)); do
  echo "SET k_$i v_$i"
done 2>/dev/null | timeout -s INT "$SECONDS_WRITING" redis-cli -p "$PORT" >"$WORK/acks.out" 2>&1
kill "$crasher" "$load" 2>/dev/null
wait "$crasher" "$load" 2>/dev/null

# redis-cli prints one line per reply ("OK", or "ERR ..." and an empty line).
grep -v '^$' "$WORK/acks.out" >"$WORK/acks"
replies=$(wc -l <"$WORK/acks" | tr -d ' ')
acked=$(grep -c '^OK$' "$WORK/acks")
crashes=$(wc -l <"$WORK/crashes" | tr -d ' ')
echo "acknowledged SETs: $acked of $replies answered; shard crashes: $crashes"
((replies >= 200)); check "the writer made progress (${replies} replies)" 0 $?
((crashes >= 10)); check "shards crashed while writing (${crashes} crashes)" 0 $?
# A SET is refused only when its shard failed before answering.
check "every non-OK reply names a failed shard" "" \
  "$(grep -v '^OK$' "$WORK/acks" | grep -v 'failed before answering' | head -3)"

# verify LABEL: every acknowledged key reads back with its value.
verify() {
  awk '$0 == "OK" {print "GET k_" NR-1}' "$WORK/acks" | redis-cli -p "$PORT" >"$WORK/values"
  local expected
  expected=$(awk '$0 == "OK" {print "v_" NR-1}' "$WORK/acks" | md5sum)
  check "$1: every acknowledged SET is readable" "$expected" "$(md5sum <"$WORK/values")"
  local missing
  missing=$(paste -d' ' <(awk '$0 == "OK" {print "v_" NR-1}' "$WORK/acks") "$WORK/values" |
    awk '$1 != $2' | head -3)
  check "$1: first missing or wrong values" "" "$missing"
}
verify "after the crashes"
restarts=$(info_field shard_restarts)
((restarts >= crashes)); check "INFO counts the restarts (${restarts} >= ${crashes})" 0 $?

stop_server TERM
start_server --shards "$SHARDS"
verify "after a graceful restart"

# SIGKILL: whatever the AOF writer flushed (within milliseconds of the ack) survives.
rcli SET lastkey lastvalue >/dev/null
sleep 1.5
stop_server KILL
start_server --shards "$SHARDS"
verify "after SIGKILL"
check "the last write before SIGKILL" "lastvalue" "$(rcli GET lastkey)"
stop_server TERM
finish
