#!/usr/bin/env bash
# bench/kv_vs_redis.sh: examples/kv_server against redis-server, measured by redis-benchmark
# in the same run on this machine.
#
# usage: bench/kv_vs_redis.sh [KV_SERVER_BINARY]   (default build/release/examples/kv_server)
#
# Runs `redis-benchmark -t set,get -n 200000 -c 50 -P 1` and `-P 16` (-q --csv) against
#   - redis-server with no persistence (--save '' --appendonly no): the usual baseline,
#   - redis-server with --appendonly yes --appendfsync everysec: the same durability as
#     kv_server, which always keeps its append-only files (fsync every second),
#   - kv_server (--shards 4) once per worker count in KV_WORKERS,
#   - bench/resp_null_server (when built), a server that does no work at all: it answers
#     +OK at once and busy-polls while a client is connected. Its rate is redis-benchmark's
#     own ceiling on this machine, the most any server can get from it; the "ceiling/redis"
#     column is the best ratio to redis that any server could show here,
# each on its own loopback port with its own temporary data directory. Each measurement is
# repeated RUNS times, the servers taking turns (so that noise from other processes hits all
# of them alike); the table shows the median requests/s and kv_server's ratio to each redis.
#
# Environment: REQUESTS (200000), CLIENTS (50), RUNS (5), KV_SHARDS (4), KV_WORKERS ("1 2"),
# KV_FLAGS (more kv_server flags), REDIS_SERVER (redis-server), REDIS_BENCHMARK
# (redis-benchmark), NULL_SERVER (build/release/bench/resp_null_server; empty: skip it).
set -u

here=$(cd "$(dirname "$0")/.." && pwd)
KV=${1:-$here/build/release/examples/kv_server}
REQUESTS=${REQUESTS:-200000}
CLIENTS=${CLIENTS:-50}
RUNS=${RUNS:-5}
KV_SHARDS=${KV_SHARDS:-4}
KV_WORKERS=${KV_WORKERS:-1 2}
KV_FLAGS=${KV_FLAGS:-}
REDIS_SERVER=${REDIS_SERVER:-redis-server}
REDIS_BENCHMARK=${REDIS_BENCHMARK:-redis-benchmark}
NULL_SERVER=${NULL_SERVER-$here/build/release/bench/resp_null_server}

for tool in "$REDIS_SERVER" "$REDIS_BENCHMARK"; do
  command -v "$tool" >/dev/null || { echo "kv_vs_redis: $tool not found" >&2; exit 2; }
done
[[ -f $KV && -x $KV ]] || { echo "kv_vs_redis: $KV is not an executable (build it first)" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/kv_vs_redis.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do
    kill "$p" 2>/dev/null
  done
  wait 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_free() {
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

wait_ping() { # wait_ping PORT: until the server answers PING (10 s)
  local i
  for ((i = 0; i < 100; i++)); do
    if [[ $(redis-cli -p "$1" PING 2>/dev/null) == PONG ]]; then
      return 0
    fi
    sleep 0.1
  done
  echo "kv_vs_redis: no server answered on port $1" >&2
  exit 1
}

names=()
ports=()

free_port() { # free_port: prints a loopback port nothing listens on
  local port
  for ((;;)); do
    port=$((20000 + RANDOM % 20000))
    port_free "$port" && break
  done
  echo "$port"
}

start_redis() { # start_redis NAME ARGS...
  local name=$1 port
  shift
  port=$(free_port)
  mkdir -p "$work/$name"
  "$REDIS_SERVER" --port "$port" --bind 127.0.0.1 --dir "$work/$name" --save '' "$@" \
    >"$work/$name.log" 2>&1 &
  pids+=($!)
  wait_ping "$port"
  names+=("$name")
  ports+=("$port")
}

start_kv() { # start_kv NAME FLAGS...
  local name=$1 port i
  shift
  # shellcheck disable=SC2086 # KV_FLAGS is a list of flags
  "$KV" --port 0 --dir "$work/$name" --shards "$KV_SHARDS" "$@" $KV_FLAGS \
    >"$work/$name.out" 2>"$work/$name.err" &
  pids+=($!)
  for ((i = 0; i < 100; i++)); do
    port=$(sed -n 's/^kv_server listening on .*:\([0-9]*\)$/\1/p' "$work/$name.out")
    [[ -n $port ]] && break
    sleep 0.1
  done
  [[ -n $port ]] || { echo "kv_vs_redis: $KV did not start:" >&2; cat "$work/$name.err" >&2; exit 1; }
  wait_ping "$port"
  names+=("$name")
  ports+=("$port")
}

start_null() { # start_null: resp_null_server as the server named "null"
  local port
  port=$(free_port)
  "$NULL_SERVER" "$port" >"$work/null.log" 2>&1 &
  pids+=($!)
  wait_ping "$port"
  names+=(null)
  ports+=("$port")
}

start_redis redis --appendonly no
start_redis redis-aof --appendonly yes --appendfsync everysec
for w in $KV_WORKERS; do
  start_kv "kv-w$w" --workers "$w"
done
with_null=0
if [[ -n $NULL_SERVER ]]; then
  if [[ -f $NULL_SERVER && -x $NULL_SERVER ]]; then
    start_null
    with_null=1
  else
    echo "kv_vs_redis: no $NULL_SERVER (build bench/), so no ceiling column" >&2
  fi
fi

echo "machine: $(nproc) CPUs; $("$REDIS_SERVER" --version | cut -d' ' -f1-3)"
echo "redis-benchmark -t set,get -n $REQUESTS -c $CLIENTS -P {1,16}; median of $RUNS runs, servers taking turns"
echo "kv_server --shards $KV_SHARDS ${KV_FLAGS} (AOF on, fsync everysec)"
echo

# results/<name>_<P>_<TEST>: one requests/s per line, one line per run.
mkdir -p "$work/results"
for ((run = 1; run <= RUNS; run++)); do
  for P in 1 16; do
    for i in "${!names[@]}"; do
      "$REDIS_BENCHMARK" -p "${ports[$i]}" -t set,get -n "$REQUESTS" -c "$CLIENTS" -P "$P" -q --csv \
        2>/dev/null | sed -n 's/^"\(SET\|GET\)","\([0-9.]*\)".*/\1 \2/p' |
        while read -r test rps; do
          echo "$rps" >>"$work/results/${names[$i]}_${P}_${test}"
        done
    done
  done
  echo "run $run of $RUNS done" >&2
done

median() { # median FILE
  sort -n "$1" | awk '{v[NR] = $1} END {if (NR == 0) print 0; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}

ratio() { # ratio A B: A / B as "1.23x"
  awk -v a="$1" -v b="$2" 'BEGIN {printf("%.2fx", (b > 0) ? a / b : 0)}'
}

printf '%-8s %-5s %-4s %12s %14s %12s %9s %13s' kv test P "redis" "redis-aof" "kv_server" "kv/redis" "kv/redis-aof"
((with_null)) && printf ' %12s %11s %14s' ceiling kv/ceiling ceiling/redis
echo
for w in $KV_WORKERS; do
  for P in 1 16; do
    for test in SET GET; do
      r=$(median "$work/results/redis_${P}_${test}")
      ra=$(median "$work/results/redis-aof_${P}_${test}")
      k=$(median "$work/results/kv-w${w}_${P}_${test}")
      printf '%-8s %-5s %-4s %12.0f %14.0f %12.0f %9s %13s' "w=$w" "$test" "$P" "$r" "$ra" "$k" \
        "$(ratio "$k" "$r")" "$(ratio "$k" "$ra")"
      if ((with_null)); then
        c=$(median "$work/results/null_${P}_${test}")
        printf ' %12.0f %11s %14s' "$c" "$(ratio "$k" "$c")" "$(ratio "$c" "$r")"
      fi
      echo
    done
  done
done
