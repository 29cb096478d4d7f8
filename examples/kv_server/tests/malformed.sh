#!/usr/bin/env bash
# examples/kv_server/tests/malformed.sh: bad input. Malformed RESP gets redis's protocol
# error and the connection is closed; declared lengths over the limits (bulk > 512 MB,
# multibulk > 1024*1024) are refused before any allocation (the server's memory does not
# grow); clients that disconnect mid-command leak nothing; the server keeps serving.
# shellcheck disable=SC2016 # RESP requests in single quotes: $ is a literal byte
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh" "$1"
require redis-cli timeout

start_server --shards 2
rss0=$(rss_kb)

check_raw "invalid bulk length" $'-ERR Protocol error: invalid bulk length\r\n' '*1\r\n$x\r\n'
check_raw "negative bulk length" $'-ERR Protocol error: invalid bulk length\r\n' '*1\r\n$-5\r\n'
check_raw "invalid multibulk length" $'-ERR Protocol error: invalid multibulk length\r\n' '*abc\r\n'
check_raw "expected \$" $'-ERR Protocol error: expected \'$\', got \':\'\r\n' '*1\r\n:3\r\n'
check_raw "unbalanced quotes (inline)" $'-ERR Protocol error: unbalanced quotes in request\r\n' 'SET k "v\r\n'
check_raw "good commands before the error are answered" \
  $'+OK\r\n+PONG\r\n-ERR Protocol error: invalid bulk length\r\n' \
  '*3\r\n$3\r\nSET\r\n$6\r\nbefore\r\n$1\r\nv\r\nPING\r\n*1\r\n$x\r\nSET after 1\r\n'
check "  ... and nothing after it runs" "v" "$(rcli GET before)"
check "  ... (after)" "0" "$(rcli EXISTS after)"

# Limits: refused at the header, before any byte of the payload arrives.
check_raw "bulk length over 512 MB" $'-ERR Protocol error: invalid bulk length\r\n' \
  '*1\r\n$536870913\r\n'
check_raw "huge bulk length" $'-ERR Protocol error: invalid bulk length\r\n' \
  '*2\r\n$3\r\nSET\r\n$99999999999999999999\r\n'
check_raw "multibulk count over 1024*1024" $'-ERR Protocol error: invalid multibulk length\r\n' \
  '*1048577\r\n'
check_raw "inline line over 64 KiB" $'-ERR Protocol error: too big inline request\r\n' \
  "$(head -c 70000 /dev/zero | tr '\0' 'x')"
# Declared but never sent: 512 MB exactly is a legal length; the client sends 5 bytes and
# leaves. Nothing of that size may be allocated.
for ((i = 0; i < 20; i++)); do
  exec 3<>"/dev/tcp/127.0.0.1/$PORT"
  printf '*2\r\n$3\r\nSET\r\n$536870912\r\nhello' >&3
  printf '*1048576\r\n' >&3
  exec 3>&- 3<&-
done
sleep 0.3
rss1=$(rss_kb)
grew=$((rss1 - rss0))
((grew < 65536)); check "memory did not grow by the declared sizes (grew ${grew} KiB)" 0 $?

# Random garbage: an error reply or a close, never a crash.
for ((i = 0; i < 50; i++)); do
  exec 3<>"/dev/tcp/127.0.0.1/$PORT"
  head -c 512 /dev/urandom >&3 2>/dev/null
  exec 3>&- 3<&-
done

# Clients that disconnect in the middle of a command, in every state of the parser.
partials=('*' '*3' '*3\r\n' '*3\r\n$3\r\nSE' '*3\r\n$3\r\nSET\r\n$4\r\nmid' '*3\r\n$3\r\nSET\r\n$4\r\nmidk\r\n$100\r\nabc'
  'PING' 'SET midk "unterminated')
for ((round = 0; round < 25; round++)); do
  for p in "${partials[@]}"; do
    exec 3<>"/dev/tcp/127.0.0.1/$PORT"
    printf '%b' "$p" >&3
    exec 3>&- 3<&-
  done
done
sleep 0.5
check "half-sent SET did not run" "0" "$(rcli EXISTS midk)"
check "server still serves" "PONG" "$(rcli PING)"
# Only the INFO connection itself is left: every aborted connection's actor ended.
check "no connection leaked" "1" "$(info_field connected_clients)"
# One connection child per client, and a finished one leaves the tree: after 100 clients one
# after the other, at most the INFO connection's child is left (the last ones may still be
# leaving: wait up to 5 s). At most: the INFO connection's child can answer before its
# supervisor has counted its group (its creator starts it; the supervisor attaches the group
# when it gets to the add event), so a loaded machine reads 0.
for ((i = 0; i < 100; i++)); do
  rcli PING >/dev/null
done
actors=0
for ((i = 0; i < 50; i++)); do
  actors=$(info_field connection_actors)
  ((actors <= 1)) && break
  sleep 0.1
done
((actors <= 1)); check "finished connection children leave the tree (${actors} left)" 0 $?
rss2=$(rss_kb)
grew=$((rss2 - rss0))
((grew < 65536)); check "memory stable after 270 aborted connections (grew ${grew} KiB)" 0 $?

# A large (but legal) value in many small writes, binary-safe, then read back.
value=$(head -c 300000 /dev/zero | tr '\0' 'v')
check "large SET" "OK" "$(printf '%s' "$value" | rcli -x SET large)"
check "large GET is byte-exact" "$(printf '%s\n' "$value" | md5sum)" "$(rcli GET large | md5sum)"

# The server still stops gracefully.
stop_server TERM
finish
