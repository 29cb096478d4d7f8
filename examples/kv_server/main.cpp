// examples/kv_server/main.cpp: kv_server's entry point: flags, then the server (see
// docs/kv_server.md).
#include "options.hpp"
#include "server.hpp"

#include <cstdio>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  const kv::parse_outcome parsed = kv::parse_options(args);
  if (!parsed.opts) {
    std::fprintf(stderr, "kv_server: %s\n%s", parsed.error.c_str(), kv::usage().c_str());
    return 2;
  }
  if (parsed.opts->help) {
    std::fputs(kv::usage().c_str(), stdout);
    return 0;
  }
  return kv::run_server(*parsed.opts);
}
