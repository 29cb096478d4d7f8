#!/usr/bin/env bash
# examples/kv_server/tests/cli.sh: every command through redis-cli with checked replies,
# exact reply bytes for a few of them over a raw socket, expiry, INFO, DEBUG CRASH-SHARD,
# usage errors, and the keys surviving a restart of the process (AOF reload).
# shellcheck disable=SC2016 # RESP requests in single quotes: $ is a literal byte
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh" "$1"
require redis-cli timeout

# Usage errors: exit code 2 and a message naming the flag or value.
out=$("$BIN" --port 99999 2>&1); rc=$?
check "bad --port exits 2" 2 "$rc"
check "bad --port message" "kv_server: invalid value '99999' for --port (expected 0..65535)" "$(head -1 <<<"$out")"
out=$("$BIN" --shards 2>&1); rc=$?
check "missing value exits 2" 2 "$rc"
check "missing value message" "kv_server: --shards needs a value" "$(head -1 <<<"$out")"
out=$("$BIN" --bogus 1 2>&1); rc=$?
check "unknown flag exits 2" 2 "$rc"
check "unknown flag message" "kv_server: unknown flag '--bogus'" "$(head -1 <<<"$out")"
out=$("$BIN" --help); rc=$?
check "--help exits 0" 0 "$rc"
check "--help prints usage" "usage: kv_server [--port N] [--shards N] [--dir PATH] [--bind ADDR] [--workers N]" "$(head -1 <<<"$out")"

start_server --shards 4 --bind 127.0.0.1

check "PING" "PONG" "$(rcli PING)"
check "PING msg" "hello world" "$(rcli PING 'hello world')"
check "ECHO" "x y" "$(rcli ECHO 'x y')"
check "ECHO arity" "ERR wrong number of arguments for 'echo' command" "$(rcli ECHO)"
check "SET" "OK" "$(rcli SET greeting hello)"
check "GET" "hello" "$(rcli GET greeting)"
check "GET missing" "" "$(rcli GET missing)"
check "GET arity" "ERR wrong number of arguments for 'get' command" "$(rcli GET a b)"
check "SET NX on existing" "" "$(rcli SET greeting x NX)"
check "SET XX GET" "hello" "$(rcli SET greeting hi XX GET)"
check "SET syntax" "ERR syntax error" "$(rcli SET k v EX 10 PX 10)"
check "SET bad EX" "ERR value is not an integer or out of range" "$(rcli SET k v EX ten)"
check "SET EX 0" "ERR invalid expire time in 'set' command" "$(rcli SET k v EX 0)"
check "MSET" "OK" "$(rcli MSET a 1 b 2 c 3 d 4 e 5 f 6 g 7 h 8)"
check "MSET arity" "ERR wrong number of arguments for 'mset' command" "$(rcli MSET a 1 b)"
check "MGET across shards" $'1\n2\n\n8\nhi' "$(rcli MGET a b nope h greeting)"
check "EXISTS counts repeats" "3" "$(rcli EXISTS a a b nope)"
check "DEL" "2" "$(rcli DEL a b nope)"
check "EXISTS after DEL" "0" "$(rcli EXISTS a b)"
check "INCR new" "1" "$(rcli INCR counter)"
check "INCR" "2" "$(rcli INCR counter)"
check "DECR" "1" "$(rcli DECR counter)"
check "DECR new" "-1" "$(rcli DECR other)"
check "INCR not an integer" "ERR value is not an integer or out of range" "$(rcli INCR greeting)"
rcli SET max 9223372036854775807 >/dev/null
check "INCR overflow" "ERR increment or decrement would overflow" "$(rcli INCR max)"
# greeting c d e f g h counter other max (raw and longlived come later)
check "DBSIZE" "10" "$(rcli DBSIZE)"
check "unknown command" "ERR unknown command 'FOO', with args beginning with: 'x' 'y' " "$(rcli FOO x y)"
check "CONFIG GET save" "save" "$(rcli CONFIG GET save)"
check "CONFIG GET appendonly" $'appendonly\nyes' "$(rcli CONFIG GET appendonly)"
check "SELECT 0" "OK" "$(rcli SELECT 0)"

# Exact bytes on the wire (a QUIT at the end makes the server close the connection).
check_raw "raw PING + inline PING + QUIT" $'+PONG\r\n+PONG\r\n+OK\r\n' \
  '*1\r\n$4\r\nPING\r\nPING\r\nQUIT\r\n'
check_raw "raw GET nil, INCR, MGET" $'$-1\r\n:1\r\n*2\r\n$1\r\n1\r\n$-1\r\n+OK\r\n' \
  '*2\r\n$3\r\nGET\r\n$4\r\nnone\r\n*2\r\n$4\r\nINCR\r\n$3\r\nraw\r\n*3\r\n$4\r\nMGET\r\n$3\r\nraw\r\n$4\r\nnone\r\nQUIT\r\n'
check_raw "raw arity error" $'-ERR wrong number of arguments for \'get\' command\r\n+OK\r\n' \
  '*1\r\n$3\r\nget\r\nQUIT\r\n'
check_raw "raw unknown command" $'-ERR unknown command \'nope\', with args beginning with: \r\n+OK\r\n' \
  'nope\r\nQUIT\r\n'
check_raw "raw CONFIG GET (what redis-benchmark asks)" $'*2\r\n$4\r\nsave\r\n$0\r\n\r\n*2\r\n$10\r\nappendonly\r\n$3\r\nyes\r\n+OK\r\n' \
  'CONFIG GET save\r\nCONFIG GET appendonly\r\nQUIT\r\n'
check_raw "nothing after QUIT runs" $'+OK\r\n' 'QUIT\r\nSET afterquit 1\r\n'
check "  ... really" "0" "$(rcli EXISTS afterquit)"

# Expiry: relative EX/PX, lazy on access and swept actively (DBSIZE drops without reads).
check "SET PX" "OK" "$(rcli SET shortlived v PX 150)"
check "SET EX" "OK" "$(rcli SET longlived v EX 100)"
check "SET PX unread" "OK" "$(rcli SET unread v PX 150)"
check "visible before expiry" "v" "$(rcli GET shortlived)"
sleep 0.5
check "gone after expiry" "" "$(rcli GET shortlived)"
check "long TTL still there" "v" "$(rcli GET longlived)"
check "the unread key was swept" "12" "$(rcli DBSIZE)"
check "INFO keyspace" "db0:keys=12,expires=1,avg_ttl=0" "$(rcli INFO keyspace | tr -d '\r' | sed -n 's/^db0:/db0:/p')"

# INFO: uptime, keys, restarts, dead letters.
check "INFO keys" "12" "$(info_field keys)"
check "INFO restarts before" "0" "$(info_field shard_restarts)"
[[ -n $(info_field uptime_in_seconds) ]]; check "INFO uptime present" 0 $?
[[ -n $(info_field dead_letters) ]]; check "INFO dead_letters present" 0 $?

# DEBUG CRASH-SHARD: each shard fails and is restarted; its keys come back from the AOF.
before=$(rcli MGET c d e f g h counter other greeting longlived | tr '\n' ' ')
for s in 0 1 2 3; do
  check "DEBUG CRASH-SHARD $s" "OK" "$(rcli DEBUG CRASH-SHARD $s)"
done
check "DEBUG CRASH-SHARD out of range" "ERR shard index out of range (0..3)" "$(rcli DEBUG CRASH-SHARD 4)"
check "keys survive shard crashes" "$before" "$(rcli MGET c d e f g h counter other greeting longlived | tr '\n' ' ')"
check "DBSIZE after crashes" "12" "$(rcli DBSIZE)"
check "INFO restarts after" "4" "$(info_field shard_restarts)"
check "INCR continues after crash" "2" "$(rcli INCR counter)"

# The process restarts on the same --dir: every key is reloaded (graceful stop syncs).
before=$(rcli MGET c d e f g h counter other greeting longlived max | tr '\n' ' ')
stop_server TERM
start_server --shards 4
check "keys survive a restart" "$before" "$(rcli MGET c d e f g h counter other greeting longlived max | tr '\n' ' ')"
check "TTL survives a restart" "1" "$(rcli EXISTS longlived)"
check "FLUSHALL" "OK" "$(rcli FLUSHALL)"
check "DBSIZE after FLUSHALL" "0" "$(rcli DBSIZE)"
stop_server TERM

# Another shard count on the same data directory is refused.
out=$("$BIN" --port 0 --dir "$WORK/data" --shards 2 2>&1); rc=$?
check "other shard count exits 1" 1 "$rc"
check "other shard count message" "kv_server: the data directory $WORK/data holds 4 shards; start with --shards 4 or use another --dir" "$out"

start_server --shards 4
check "FLUSHALL survives a restart" "0" "$(rcli DBSIZE)"
finish
