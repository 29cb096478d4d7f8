// examples/kv_server/tests/resp_test.cpp: the RESP2 parser and writers (resp.hpp): redis's
// integer rules, multibulk and inline requests, requests split at every byte, the limits
// (refused before waiting for the bytes) and redis's protocol error texts.
#include "resp.hpp"

#include <catch2/catch.hpp>

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace {

using kv::arg_ref;
using kv::request_parser;
using result = request_parser::result;

/// Parses every complete command of `input` at once; returns them as vectors of strings.
struct parsed {
  std::vector<std::vector<std::string>> commands;
  result last = result::need_more;
  std::string error;
  std::size_t pos = 0;
};

parsed parse_all(std::string input) {
  parsed out;
  request_parser p;
  std::vector<arg_ref> args;
  for (;;) {
    args.clear();
    out.last = p.next(input.data(), input.size(), out.pos, args);
    if (out.last != result::command) {
      out.error = p.error();
      return out;
    }
    std::vector<std::string> cmd;
    for (const auto& a : args) {
      cmd.emplace_back(input.data() + a.off, a.len);
    }
    out.commands.push_back(std::move(cmd));
  }
}

using strings = std::vector<std::string>;

} // namespace

TEST_CASE("parse_i64 follows redis's string2ll") {
  std::int64_t v = 0;
  CHECK(kv::parse_i64("0", v));
  CHECK(v == 0);
  CHECK(kv::parse_i64("-42", v));
  CHECK(v == -42);
  CHECK(kv::parse_i64("9223372036854775807", v));
  CHECK(v == std::numeric_limits<std::int64_t>::max());
  CHECK(kv::parse_i64("-9223372036854775808", v));
  CHECK(v == std::numeric_limits<std::int64_t>::min());
  v = 7;
  for (const char* bad :
       {"",
        "-",
        "-0",
        "01",
        "+1",
        " 1",
        "1 ",
        "1a",
        "9223372036854775808",
        "-9223372036854775809",
        "99999999999999999999",
        "123456789012345678901"}) {
    INFO(bad);
    CHECK_FALSE(kv::parse_i64(bad, v));
  }
  CHECK(v == 7); // untouched on failure
}

TEST_CASE("multibulk requests, pipelined") {
  const auto r =
      parse_all("*1\r\n$4\r\nPING\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n*2\r\n$4\r\nE");
  REQUIRE(r.commands.size() == 2);
  CHECK(r.commands[0] == strings{"PING"});
  CHECK(r.commands[1] == strings{"SET", "k", ""});
  CHECK(r.last == result::need_more);
}

TEST_CASE("binary-safe bulk strings") {
  const std::string payload("a\r\0b\n", 5);
  const auto r = parse_all("*2\r\n$4\r\nECHO\r\n$5\r\n" + payload + "\r\n");
  REQUIRE(r.commands.size() == 1);
  CHECK(r.commands[0] == strings{"ECHO", payload});
}

TEST_CASE("a request split at every byte parses the same, without rescanning") {
  const std::string whole = "*3\r\n$3\r\nSET\r\n$5\r\nhello\r\n$12\r\nworld\r\nworld\r\nPING\r\n"
                            "*2\r\n$3\r\nGET\r\n$5\r\nhello\r\n";
  request_parser p;
  std::string buf;
  std::size_t pos = 0;
  std::vector<arg_ref> args;
  std::vector<strings> seen;
  for (char c : whole) {
    buf += c; // a new byte arrives
    for (;;) {
      args.clear();
      const auto r = p.next(buf.data(), buf.size(), pos, args);
      REQUIRE(r != result::error);
      if (r == result::need_more) {
        break;
      }
      strings cmd;
      for (const auto& a : args) {
        cmd.emplace_back(buf.data() + a.off, a.len);
      }
      seen.push_back(cmd);
    }
    // Drop what is consumed, as a connection compacts its buffer.
    buf.erase(0, pos);
    pos = 0;
  }
  REQUIRE(seen.size() == 3);
  CHECK(seen[0] == strings{"SET", "hello", "world\r\nworld"});
  CHECK(seen[1] == strings{"PING"});
  CHECK(seen[2] == strings{"GET", "hello"});
}

TEST_CASE("empty multibulk requests are skipped") {
  const auto r = parse_all("*0\r\n*-1\r\n*1\r\n$4\r\nPING\r\n");
  REQUIRE(r.commands.size() == 1);
  CHECK(r.commands[0] == strings{"PING"});
}

TEST_CASE("inline requests are split like sdssplitargs") {
  const auto r = parse_all("PING\r\n\r\n   \r\nSET k \"a b\\x41\\n\" 'it\\'s'\nECHO x\"y z\"\r\n");
  REQUIRE(r.commands.size() == 3);
  CHECK(r.commands[0] == strings{"PING"});
  CHECK(r.commands[1] == strings{"SET", "k", "a bA\n", "it's"});
  CHECK(r.commands[2] == strings{"ECHO", "xy z"});
  CHECK(r.last == result::need_more);
}

TEST_CASE("protocol errors carry redis's texts") {
  struct bad {
    std::string in;
    std::string error;
  };
  for (const auto& [in, error] : {
           bad{"*abc\r\n", "Protocol error: invalid multibulk length"},
           bad{"*+1\r\n", "Protocol error: invalid multibulk length"},
           bad{"*1\r\n:3\r\n", "Protocol error: expected '$', got ':'"},
           bad{"*1\r\n$abc\r\n", "Protocol error: invalid bulk length"},
           bad{"*1\r\n$-1\r\n", "Protocol error: invalid bulk length"},
           bad{"*1\r\n$ 3\r\n", "Protocol error: invalid bulk length"},
           bad{"PING \"a\r\n", "Protocol error: unbalanced quotes in request"},
           bad{"ECHO \"a\"b\r\n", "Protocol error: unbalanced quotes in request"},
           bad{"ECHO 'a\r\n", "Protocol error: unbalanced quotes in request"},
       }) {
    INFO(in);
    const auto r = parse_all(in);
    CHECK(r.commands.empty());
    CHECK(r.last == result::error);
    CHECK(r.error == error);
  }
}

TEST_CASE("the good commands before a protocol error are kept") {
  const auto r = parse_all("*1\r\n$4\r\nPING\r\n*1\r\n$x\r\n");
  REQUIRE(r.commands.size() == 1);
  CHECK(r.last == result::error);
  CHECK(r.error == "Protocol error: invalid bulk length");
}

TEST_CASE("declared lengths over the limits are refused before their bytes arrive") {
  // 512 MiB exactly is allowed (the parser then waits for the data) ...
  auto r = parse_all("*1\r\n$536870912\r\n");
  CHECK(r.last == result::need_more);
  // ... one byte more is refused at once, nothing waited for or allocated.
  r = parse_all("*1\r\n$536870913\r\n");
  CHECK(r.last == result::error);
  CHECK(r.error == "Protocol error: invalid bulk length");
  r = parse_all("*1\r\n$99999999999999999999999\r\n");
  CHECK(r.error == "Protocol error: invalid bulk length");

  r = parse_all("*1048576\r\n");
  CHECK(r.last == result::need_more);
  r = parse_all("*1048577\r\n");
  CHECK(r.last == result::error);
  CHECK(r.error == "Protocol error: invalid multibulk length");
}

TEST_CASE("lines without a newline are bounded") {
  auto r = parse_all(std::string(kv::max_inline_len, 'x'));
  CHECK(r.last == result::need_more);
  r = parse_all(std::string(kv::max_inline_len + 1, 'x'));
  CHECK(r.last == result::error);
  CHECK(r.error == "Protocol error: too big inline request");
  r = parse_all("*" + std::string(kv::max_inline_len + 1, '1'));
  CHECK(r.error == "Protocol error: too big mbulk count string");
  r = parse_all("*1\r\n$" + std::string(kv::max_inline_len + 1, '1'));
  CHECK(r.error == "Protocol error: too big bulk count string");
}

TEST_CASE("reply writers") {
  std::string out;
  kv::append_simple(out, "OK");
  kv::append_error(out, "ERR bad\r\nthing");
  kv::append_int(out, -12);
  kv::append_int(out, std::numeric_limits<std::int64_t>::min());
  kv::append_bulk(out, "hi");
  kv::append_bulk(out, "");
  kv::append_nil(out);
  kv::append_array_header(out, 3);
  kv::append_command(out, {"DEL", "k"});
  CHECK(
      out
      == "+OK\r\n-ERR bad  thing\r\n:-12\r\n:-9223372036854775808\r\n$2\r\nhi\r\n$0\r\n\r\n"
         "$-1\r\n*3\r\n*2\r\n$3\r\nDEL\r\n$1\r\nk\r\n");
}
