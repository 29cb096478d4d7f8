// examples/kv_server/tests/batch_test.cpp: commands end to end without sockets (batch.hpp):
// raw request bytes are parsed, planned over several shards, run on their keyspaces and
// assembled; the replies are compared byte for byte with what redis-server 7.0 answers.
#include "batch.hpp"
#include "keyspace.hpp"
#include "resp.hpp"

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <cstring>
#include <string>
#include <vector>

namespace {

/// N shards' keyspaces and AOF records, driven like a connection drives the real shards.
struct harness {
  explicit harness(std::size_t n)
      : shards(n)
      , aof(n) {
    view.shards = n;
    view.port = 6390;
    view.dir = "/data";
  }

  /// Runs every command of `input` (one batch); returns the bytes the client would get.
  std::string run(const std::string& input, std::int64_t now = 1'000'000) {
    kv::request_batch b(shards.size());
    b.in.reserve(input.size() + 1, 0);
    std::memcpy(b.in.data(), input.data(), input.size());
    kv::request_parser p;
    std::size_t pos = 0;
    std::string error;
    quit = false;
    for (;;) {
      const auto first = static_cast<std::uint32_t>(b.args.size());
      const auto r = p.next(b.in.data(), input.size(), pos, b.args);
      if (r == kv::request_parser::result::need_more) {
        break;
      }
      if (r == kv::request_parser::result::error) {
        error = p.error();
        break;
      }
      const auto argc = static_cast<std::uint32_t>(b.args.size()) - first;
      const kv::raw_request raw{p.last_begin(), pos, p.last_multibulk()};
      if (kv::plan_command(b, first, argc, view, now, raw) == kv::plan_result::quit) {
        quit = true;
        break;
      }
    }
    for (std::size_t s = 0; s < shards.size(); ++s) {
      if (!b.parts[s].ops.empty()) {
        crashed = kv::execute_part(b, s, shards[s], aof[s], now) || crashed;
      }
    }
    std::string out;
    kv::assemble_replies(b, view, out);
    if (!error.empty()) {
      kv::append_error(out, "ERR " + error);
    }
    return out;
  }

  std::vector<kv::keyspace> shards;
  std::vector<std::string> aof;
  kv::server_view view;
  bool quit = false;
  bool crashed = false;
};

/// A request as redis-cli sends it.
std::string cmd(std::initializer_list<std::string_view> args) {
  std::string out;
  kv::append_command(out, args);
  return out;
}

} // namespace

TEST_CASE("shard_of is stable and spreads keys") {
  CHECK(kv::shard_of("foo", 4) == kv::shard_of("foo", 4));
  std::vector<int> hits(4);
  for (int i = 0; i < 4000; ++i) {
    ++hits[kv::shard_of(fmt::format("key:{}", i), 4)];
  }
  for (int h : hits) {
    CHECK(h > 800);
  }
}

TEST_CASE("replies match redis-server byte for byte") {
  harness h(4);
  struct step {
    std::string request;
    std::string reply;
  };
  const std::vector<step> steps = {
      {cmd({"PING"}), "+PONG\r\n"},
      {cmd({"PING", "hi"}), "$2\r\nhi\r\n"},
      {cmd({"ping", "a", "b"}), "-ERR wrong number of arguments for 'ping' command\r\n"},
      {cmd({"ECHO"}), "-ERR wrong number of arguments for 'echo' command\r\n"},
      {cmd({"ECHO", "x"}), "$1\r\nx\r\n"},
      {cmd({"GET", "nokey"}), "$-1\r\n"},
      {cmd({"GET"}), "-ERR wrong number of arguments for 'get' command\r\n"},
      {cmd({"GET", "a", "b"}), "-ERR wrong number of arguments for 'get' command\r\n"},
      {cmd({"SET", "k"}), "-ERR wrong number of arguments for 'set' command\r\n"},
      {cmd({"SET", "k", "v"}), "+OK\r\n"},
      {cmd({"get", "k"}), "$1\r\nv\r\n"},
      {cmd({"SET", "k", "v", "EX", "0"}), "-ERR invalid expire time in 'set' command\r\n"},
      {cmd({"SET", "k", "v", "EX", "-1"}), "-ERR invalid expire time in 'set' command\r\n"},
      {cmd({"SET", "k", "v", "EX", "abc"}), "-ERR value is not an integer or out of range\r\n"},
      {cmd({"SET", "k", "v", "PX", "10", "EX", "10"}), "-ERR syntax error\r\n"},
      {cmd({"SET", "k", "v", "FOO"}), "-ERR syntax error\r\n"},
      {cmd({"SET", "k", "v", "EX"}), "-ERR syntax error\r\n"},
      {cmd({"SET", "k", "v", "NX", "XX"}), "-ERR syntax error\r\n"},
      {cmd({"SET", "k", "v", "KEEPTTL", "EX", "5"}), "-ERR syntax error\r\n"},
      {cmd({"SET", "k", "v", "EX", "9223372036854775807"}),
       "-ERR invalid expire time in 'set' command\r\n"},
      {cmd({"SET", "k", "v", "PX", "9223372036854775806"}),
       "-ERR invalid expire time in 'set' command\r\n"},
      {cmd({"SET", "n1", "v", "NX"}), "+OK\r\n"},
      {cmd({"SET", "n1", "w", "NX"}), "$-1\r\n"},
      {cmd({"SET", "n1", "w", "XX", "GET"}), "$1\r\nv\r\n"},
      {cmd({"SET", "n2", "w", "XX"}), "$-1\r\n"},
      {cmd({"DEL"}), "-ERR wrong number of arguments for 'del' command\r\n"},
      {cmd({"EXISTS"}), "-ERR wrong number of arguments for 'exists' command\r\n"},
      {cmd({"EXISTS", "k", "k", "nokey"}), ":2\r\n"},
      {cmd({"DEL", "k", "nokey"}), ":1\r\n"},
      {cmd({"EXISTS", "k"}), ":0\r\n"},
      {cmd({"INCR", "n"}), ":1\r\n"},
      {cmd({"INCR", "n"}), ":2\r\n"},
      {cmd({"DECR", "n"}), ":1\r\n"},
      {cmd({"DECR", "m"}), ":-1\r\n"},
      {cmd({"INCR"}), "-ERR wrong number of arguments for 'incr' command\r\n"},
      {cmd({"INCRBY", "n", "10"}), ":11\r\n"},
      {cmd({"DECRBY", "n", "20"}), ":-9\r\n"},
      {cmd({"INCRBY", "x", "abc"}), "-ERR value is not an integer or out of range\r\n"},
      {cmd({"DECRBY", "x", "-9223372036854775808"}), "-ERR decrement would overflow\r\n"},
      {cmd({"SET", "big", "9223372036854775807"}), "+OK\r\n"},
      {cmd({"INCR", "big"}), "-ERR increment or decrement would overflow\r\n"},
      {cmd({"SET", "s", "abc"}), "+OK\r\n"},
      {cmd({"INCR", "s"}), "-ERR value is not an integer or out of range\r\n"},
      {cmd({"SET", "z", "01"}), "+OK\r\n"},
      {cmd({"INCR", "z"}), "-ERR value is not an integer or out of range\r\n"},
      {cmd({"MGET"}), "-ERR wrong number of arguments for 'mget' command\r\n"},
      {cmd({"MSET"}), "-ERR wrong number of arguments for 'mset' command\r\n"},
      {cmd({"MSET", "a", "1", "b"}), "-ERR wrong number of arguments for 'mset' command\r\n"},
      {cmd({"MSET", "a", "1", "b", "2", "c", "3"}), "+OK\r\n"},
      {cmd({"MGET", "a", "nokey", "b", "c", "n"}),
       "*5\r\n$1\r\n1\r\n$-1\r\n$1\r\n2\r\n$1\r\n3\r\n$2\r\n-9\r\n"},
      {cmd({"DBSIZE", "x"}), "-ERR wrong number of arguments for 'dbsize' command\r\n"},
      // n1 n m big s z a b c
      {cmd({"DBSIZE"}), ":9\r\n"},
      {cmd({"CONFIG", "GET", "save"}), "*2\r\n$4\r\nsave\r\n$0\r\n\r\n"},
      {cmd({"CONFIG", "GET", "appendonly"}), "*2\r\n$10\r\nappendonly\r\n$3\r\nyes\r\n"},
      {cmd({"CONFIG", "get", "SAVE", "appendonly", "save"}),
       "*4\r\n$4\r\nSAVE\r\n$0\r\n\r\n$10\r\nappendonly\r\n$3\r\nyes\r\n"},
      {cmd({"CONFIG", "GET", "nothing"}), "*0\r\n"},
      {cmd({"CONFIG", "GET"}), "-ERR wrong number of arguments for 'config|get' command\r\n"},
      {cmd({"CONFIG"}), "-ERR wrong number of arguments for 'config' command\r\n"},
      {cmd({"CONFIG", "SET", "a", "b"}),
       "-ERR Unknown option or number of arguments for CONFIG SET - 'a'\r\n"},
      {cmd({"config", "foo", "bar"}), "-ERR unknown subcommand 'foo'. Try CONFIG HELP.\r\n"},
      {cmd({"foo"}), "-ERR unknown command 'foo', with args beginning with: \r\n"},
      {cmd({"foo", "a", "b"}),
       "-ERR unknown command 'foo', with args beginning with: 'a' 'b' \r\n"},
      {cmd({"x\r\ny", "a\r\nb"}),
       "-ERR unknown command 'x  y', with args beginning with: 'a  b' \r\n"},
      {cmd({"SELECT", "0"}), "+OK\r\n"},
      {cmd({"SELECT", "1"}), "-ERR DB index is out of range\r\n"},
      {cmd({"SELECT", "x"}), "-ERR value is not an integer or out of range\r\n"},
      {cmd({"DEBUG"}), "-ERR wrong number of arguments for 'debug' command\r\n"},
      {cmd({"DEBUG", "CRASH-SHARD", "4"}), "-ERR shard index out of range (0..3)\r\n"},
      {cmd({"DEBUG", "CRASH-SHARD", "x"}), "-ERR value is not an integer or out of range\r\n"},
      {cmd({"FLUSHALL", "x"}), "-ERR syntax error\r\n"},
      {cmd({"FLUSHALL", "ASYNC"}), "+OK\r\n"},
      {cmd({"DBSIZE"}), ":0\r\n"},
      {cmd({"QUIT"}), "+OK\r\n"},
  };
  for (const auto& [request, reply] : steps) {
    INFO(request);
    CHECK(h.run(request) == reply);
  }
  CHECK_FALSE(h.crashed);
}

TEST_CASE("the unknown-command error quotes at most 128 bytes of arguments") {
  harness h(2);
  const std::string a(200, 'a');
  CHECK(
      h.run(cmd({"foo", a, "b"}))
      == "-ERR unknown command 'foo', with args beginning with: '" + std::string(128, 'a')
             + "' \r\n");
}

TEST_CASE("a pipeline is answered in order across shards") {
  harness h(4);
  std::string in;
  std::string expected;
  for (int i = 0; i < 50; ++i) {
    in += cmd({"SET", fmt::format("key:{}", i), fmt::format("v{}", i)});
    expected += "+OK\r\n";
  }
  in += "PING\r\n"; // inline, between multibulk ones
  expected += "+PONG\r\n";
  for (int i = 0; i < 50; ++i) {
    in += cmd({"GET", fmt::format("key:{}", i)});
    kv::append_bulk(expected, fmt::format("v{}", i));
  }
  in += cmd({"DBSIZE"});
  expected += ":50\r\n";
  CHECK(h.run(in) == expected);
  std::size_t held = 0;
  for (const auto& s : h.shards) {
    CHECK(s.size() > 0); // every shard got some keys
    held += s.size();
  }
  CHECK(held == 50);
}

TEST_CASE("nothing after QUIT runs; a protocol error ends the batch after the good commands") {
  harness h(2);
  CHECK(h.run(cmd({"SET", "a", "1"}) + cmd({"QUIT"}) + cmd({"SET", "b", "2"})) == "+OK\r\n+OK\r\n");
  CHECK(h.quit);
  CHECK(h.run(cmd({"EXISTS", "a", "b"})) == ":1\r\n");
  CHECK(
      h.run(cmd({"SET", "q", "v"}) + "*1\r\n$x\r\n")
      == "+OK\r\n-ERR Protocol error: invalid bulk length\r\n");
}

TEST_CASE("expiry: EX/PX relative, EXAT/PXAT absolute, lazy on access, KEEPTTL, INCR keeps it") {
  harness h(2);
  const std::int64_t t0 = 1'000'000;
  CHECK(h.run(cmd({"SET", "a", "1", "PX", "100"}), t0) == "+OK\r\n");
  CHECK(h.run(cmd({"SET", "b", "1", "EX", "1"}), t0) == "+OK\r\n");
  CHECK(h.run(cmd({"SET", "c", "1", "PXAT", std::to_string(t0 + 50)}), t0) == "+OK\r\n");
  CHECK(h.run(cmd({"SET", "d", "1", "EXAT", "1"}), t0) == "+OK\r\n"); // already past: removed
  CHECK(h.run(cmd({"INCR", "a"}), t0 + 10) == ":2\r\n");
  CHECK(h.run(cmd({"SET", "b", "2", "KEEPTTL"}), t0 + 10) == "+OK\r\n");
  CHECK(
      h.run(cmd({"MGET", "a", "b", "c", "d"}), t0 + 49)
      == "*4\r\n$1\r\n2\r\n$1\r\n2\r\n$1\r\n1\r\n$-1\r\n");
  CHECK(h.run(cmd({"MGET", "a", "b", "c"}), t0 + 50) == "*3\r\n$1\r\n2\r\n$1\r\n2\r\n$-1\r\n");
  CHECK(h.run(cmd({"EXISTS", "a", "b"}), t0 + 100) == ":1\r\n");
  CHECK(h.run(cmd({"GET", "b"}), t0 + 1000) == "$-1\r\n");
  CHECK(h.run(cmd({"SET", "a", "v", "EX", "100"}), t0) == "+OK\r\n");
  CHECK(h.run(cmd({"SET", "a", "v"}), t0) == "+OK\r\n"); // a plain SET clears the TTL
  CHECK(h.run(cmd({"GET", "a"}), t0 + 1'000'000) == "$1\r\nv\r\n");
}

TEST_CASE("writes become AOF records that replay to the same keyspace") {
  harness h(3);
  const std::int64_t t0 = 1'000'000;
  h.run(
      cmd({"MSET", "a", "1", "b", "2", "c", "3"}) + cmd({"INCR", "a"}) + cmd({"DEL", "b", "zz"})
          + cmd({"SET", "e", "x", "PX", "500"}) + cmd({"SET", "f", "y", "PX", "5000"})
          + cmd({"GET", "c"}),
      t0);
  h.run(cmd({"FLUSHALL"}) + cmd({"SET", "g", "z"}) + cmd({"SET", "c", "4"}), t0 + 1);
  for (std::size_t s = 0; s < 3; ++s) {
    kv::keyspace reloaded;
    std::string data = h.aof[s];
    const auto r = kv::replay(data, reloaded, t0 + 2);
    CHECK(r.error.empty());
    CHECK_FALSE(r.torn_tail);
    CHECK(reloaded.size() == h.shards[s].size());
  }
  // Reads are not logged; only the shards holding g and c have records after the FLUSHALL.
  std::size_t records = 0;
  for (auto& a : h.aof) {
    kv::keyspace tmp;
    std::string data = a;
    records += kv::replay(data, tmp, t0).records;
  }
  // MSET 3 + INCR 1 + DEL 1 + SET 2 + FLUSHALL 3 + SET 2
  CHECK(records == 12);
}

TEST_CASE("DEBUG CRASH-SHARD answers +OK and asks that shard to fail") {
  harness h(3);
  CHECK(h.run(cmd({"DEBUG", "crash-shard", "2"})) == "+OK\r\n");
  CHECK(h.crashed);
}

TEST_CASE("a shard that failed before answering turns its commands into errors") {
  kv::request_batch b(2);
  const std::string in = cmd({"MSET", "a", "1", "b", "2", "c", "3", "d", "4"}) + cmd({"PING"});
  b.in.reserve(in.size(), 0);
  std::memcpy(b.in.data(), in.data(), in.size());
  kv::request_parser p;
  std::size_t pos = 0;
  kv::server_view view;
  view.shards = 2;
  for (int i = 0; i < 2; ++i) {
    const auto first = static_cast<std::uint32_t>(b.args.size());
    REQUIRE(p.next(b.in.data(), in.size(), pos, b.args) == kv::request_parser::result::command);
    kv::plan_command(b, first, static_cast<std::uint32_t>(b.args.size()) - first, view, 0);
  }
  REQUIRE_FALSE(b.parts[0].ops.empty());
  REQUIRE_FALSE(b.parts[1].ops.empty());
  kv::keyspace ks;
  std::string aof;
  kv::execute_part(b, 0, ks, aof, 0);
  b.parts[1].failed = true;
  std::string out;
  kv::assemble_replies(b, view, out);
  CHECK(out == "-ERR shard 1 failed before answering; the command may not have run\r\n+PONG\r\n");
}

TEST_CASE("INFO reports uptime, keys, restarts and dead letters; sections filter") {
  harness h(2);
  h.view.uptime_s = 42;
  h.view.shard_restarts = 3;
  h.view.dead_letters = 5;
  h.run(cmd({"MSET", "a", "1", "b", "2"}) + cmd({"SET", "c", "3", "EX", "100"}));
  const std::string all = h.run(cmd({"INFO"}));
  CHECK(all.find("uptime_in_seconds:42\r\n") != std::string::npos);
  CHECK(all.find("keys:3\r\n") != std::string::npos);
  CHECK(all.find("shard_restarts:3\r\n") != std::string::npos);
  CHECK(all.find("dead_letters:5\r\n") != std::string::npos);
  CHECK(all.find("db0:keys=3,expires=1,avg_ttl=0\r\n") != std::string::npos);
  const std::string ks = h.run(cmd({"INFO", "keyspace"}));
  const std::string body = "# Keyspace\r\ndb0:keys=3,expires=1,avg_ttl=0\r\n";
  CHECK(ks == fmt::format("${}\r\n{}\r\n", body.size(), body));
  CHECK(h.run(cmd({"INFO", "a", "b"})) == "$0\r\n\r\n");
}

TEST_CASE("a plain multibulk SET is logged as its own bytes, anything else is re-encoded") {
  harness h(1);
  const std::string plain = cmd({"set", "k", "v"});
  CHECK(h.run(plain) == "+OK\r\n");
  CHECK(h.aof[0] == plain); // replay matches commands case-insensitively
  h.aof[0].clear();
  CHECK(h.run("SET k2 \"a b\"\r\n") == "+OK\r\n"); // inline: unescaped in place, re-encoded
  CHECK(h.aof[0] == cmd({"SET", "k2", "a b"}));
  h.aof[0].clear();
  CHECK(h.run(cmd({"SET", "k3", "v", "PX", "100"}), 1000) == "+OK\r\n");
  CHECK(h.aof[0] == cmd({"SET", "k3", "v", "PXAT", "1100"})); // relative expiry made absolute
  kv::keyspace back;
  std::string all = plain + cmd({"SET", "k2", "a b"}) + h.aof[0];
  CHECK(kv::replay(all, back, 1000).records == 3);
  CHECK(back.size() == 3);
}
