// examples/kv_server/tests/options_test.cpp: kv_server's flags (options.hpp): both spellings,
// defaults, and the usage errors that name the bad flag or value.
#include "options.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

namespace {
kv::parse_outcome parse(std::vector<std::string> args) {
  return kv::parse_options(args);
}
} // namespace

TEST_CASE("defaults") {
  const auto r = parse({});
  REQUIRE(r.opts);
  CHECK(r.opts->port == 6390);
  CHECK(r.opts->shards == 4);
  CHECK(r.opts->bind == "127.0.0.1");
  CHECK(r.opts->appendonly);
  CHECK_FALSE(r.opts->help);
}

TEST_CASE("every flag, both spellings") {
  const auto r = parse(
      {"--port",
       "0",
       "--shards=8",
       "--dir",
       "/tmp/x",
       "--bind=::1",
       "--workers",
       "2",
       "--appendonly",
       "no",
       "--log-level=off"});
  REQUIRE(r.opts);
  CHECK(r.opts->port == 0);
  CHECK(r.opts->shards == 8);
  CHECK(r.opts->dir == "/tmp/x");
  CHECK(r.opts->bind == "::1");
  CHECK(r.opts->workers == 2);
  CHECK_FALSE(r.opts->appendonly);
  CHECK(r.opts->log_level == "off");
  CHECK(parse({"--help"}).opts->help);
}

TEST_CASE("usage errors name the flag and the value") {
  struct bad {
    std::vector<std::string> args;
    std::string error;
  };
  for (const auto& [args, error] : {
           bad{{"--port", "65536"}, "invalid value '65536' for --port (expected 0..65535)"},
           bad{{"--port=abc"}, "invalid value 'abc' for --port (expected 0..65535)"},
           bad{{"--port", "-1"}, "invalid value '-1' for --port (expected 0..65535)"},
           bad{{"--shards", "0"}, "invalid value '0' for --shards (expected 1..1024)"},
           bad{{"--bind", "localhost"},
               "invalid value 'localhost' for --bind (expected a numeric IPv4 or IPv6 address)"},
           bad{{"--appendonly", "maybe"},
               "invalid value 'maybe' for --appendonly (expected yes or no)"},
           bad{{"--dir"}, "--dir needs a value"},
           bad{{"--frobnicate"}, "unknown flag '--frobnicate'"},
           bad{{"6390"}, "unknown flag '6390'"},
       }) {
    INFO(error);
    const auto r = parse(args);
    CHECK_FALSE(r.opts);
    CHECK(r.error == error);
  }
}

TEST_CASE("usage text lists the flags") {
  const std::string u = kv::usage();
  for (const char* flag : {"--port", "--shards", "--dir", "--bind", "--help"}) {
    CHECK(u.find(flag) != std::string::npos);
  }
}
