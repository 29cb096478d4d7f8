#!/usr/bin/env bash
# examples/kv_server/tests/benchmark.sh: redis-benchmark against the server (small -n so CI
# stays fast): every test it runs completes without errors with pipelining off and on; a
# random-key SET run leaves exactly the keys it wrote, which survive a restart.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh" "$1"
require redis-cli redis-benchmark timeout

start_server --shards 4
for P in 1 16; do
  out=$(timeout 60 redis-benchmark -p "$PORT" -t ping,set,get,incr,mset -n 20000 -c 20 -P "$P" -q --csv 2>&1)
  rc=$?
  check "redis-benchmark -P $P exits 0" 0 "$rc"
  check "redis-benchmark -P $P reports no error" "" "$(grep -i -E 'error|closed|reset' <<<"$out")"
  check "redis-benchmark -P $P ran every test" \
    "PING_INLINE PING_MBULK SET GET INCR MSET (10 keys) " \
    "$(sed -n 's/^"\([^"]*\)","[0-9.]*".*/\1/p' <<<"$out" | tr '\n' ' ')"
  rates=$(sed -n 's/^"[^"]*","\([0-9.]*\)".*/\1/p' <<<"$out" | awk '$1 > 0' | wc -l)
  check "redis-benchmark -P $P measured 6 rates > 0" 6 "$rates"
done
# INCR ran 2 x 20000 times on one counter.
check "INCR count" "40000" "$(rcli GET counter:__rand_int__)"

check "FLUSHALL" "OK" "$(rcli FLUSHALL)"
timeout 60 redis-benchmark -p "$PORT" -t set -r 1000 -n 20000 -c 50 -P 16 -q >/dev/null 2>&1
check "random-key SETs leave 1000 keys" "1000" "$(rcli DBSIZE)"
check "values are 3 bytes" "3" "$(rcli GET key:000000000042 | tr -d '\n' | wc -c | tr -d ' ')"
timeout 60 redis-benchmark -p "$PORT" -t get -r 1000 -n 20000 -c 50 -q >/dev/null 2>&1
check "GET run changes nothing" "1000" "$(rcli DBSIZE)"
value=$(rcli GET key:000000000042)

stop_server TERM
start_server --shards 4
check "1000 keys after a restart" "1000" "$(rcli DBSIZE)"
check "same value after a restart" "$value" "$(rcli GET key:000000000042)"
stop_server TERM
finish
