// examples/kv_server/options.cpp: kv_server's command line (see options.hpp).
#include "options.hpp"

#include <arpa/inet.h>

#include <charconv>
#include <string_view>

namespace kv {

namespace {

bool parse_size(std::string_view s, std::size_t lo, std::size_t hi, std::size_t& out) {
  std::size_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc{} || end != s.data() + s.size() || v < lo || v > hi) {
    return false;
  }
  out = v;
  return true;
}

bool is_numeric_address(const std::string& s) {
  unsigned char buf[16];
  return ::inet_pton(AF_INET, s.c_str(), buf) == 1 || ::inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

} // namespace

std::string usage() {
  return "usage: kv_server [--port N] [--shards N] [--dir PATH] [--bind ADDR] [--workers N]\n"
         "                 [--appendonly yes|no] [--log-level LEVEL] [--help]\n"
         "\n"
         "A Redis-protocol (RESP2) key-value server on bastion actors.\n"
         "\n"
         "  --port N            TCP port (default 6390; 0 picks a free port)\n"
         "  --shards N          shard actors the keyspace is split over (1..1024, default 4)\n"
         "  --dir PATH          data directory for the shards' append-only files\n"
         "                      (default ./kv_data; created if missing)\n"
         "  --bind ADDR         numeric IPv4/IPv6 address to listen on (default 127.0.0.1)\n"
         "  --workers N         executor worker threads (default: half the CPUs, at least 1)\n"
         "  --appendonly yes|no keep append-only files (default yes, fsync every second)\n"
         "  --log-level LEVEL   bastion log level: trace debug info warn err critical off\n"
         "                      (default warn)\n"
         "  --help              print this text\n"
         "\n"
         "The first line on stdout is \"kv_server listening on ADDR:PORT\".\n"
         "SIGINT/SIGTERM stop it gracefully (append-only files flushed and synced).\n";
}

parse_outcome parse_options(const std::vector<std::string>& args) {
  options o;
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string flag = args[i];
    std::optional<std::string> value;
    if (const auto eq = flag.find('='); flag.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = flag.substr(eq + 1);
      flag.resize(eq);
    }
    if (flag == "--help" || flag == "-h") {
      if (value) {
        return {std::nullopt, "--help takes no value"};
      }
      o.help = true;
      continue;
    }
    const bool known = flag == "--port" || flag == "--shards" || flag == "--dir" || flag == "--bind"
                       || flag == "--workers" || flag == "--appendonly" || flag == "--log-level";
    if (!known) {
      return {std::nullopt, "unknown flag '" + flag + "'"};
    }
    if (!value) {
      if (i + 1 >= args.size()) {
        return {std::nullopt, flag + " needs a value"};
      }
      value = args[++i];
    }
    const std::string& v = *value;
    auto bad = [&](std::string_view expected) {
      return parse_outcome{
          std::nullopt,
          "invalid value '" + v + "' for " + flag + " (expected " + std::string(expected) + ")"};
    };
    std::size_t n = 0;
    if (flag == "--port") {
      if (!parse_size(v, 0, 65535, n)) {
        return bad("0..65535");
      }
      o.port = static_cast<std::uint16_t>(n);
    } else if (flag == "--shards") {
      if (!parse_size(v, 1, 1024, n)) {
        return bad("1..1024");
      }
      o.shards = n;
    } else if (flag == "--workers") {
      if (!parse_size(v, 1, 1024, n)) {
        return bad("1..1024");
      }
      o.workers = n;
    } else if (flag == "--dir") {
      if (v.empty()) {
        return bad("a directory path");
      }
      o.dir = v;
    } else if (flag == "--bind") {
      if (!is_numeric_address(v)) {
        return bad("a numeric IPv4 or IPv6 address");
      }
      o.bind = v;
    } else if (flag == "--appendonly") {
      if (v != "yes" && v != "no") {
        return bad("yes or no");
      }
      o.appendonly = v == "yes";
    } else if (flag == "--log-level") {
      if (v != "trace" && v != "debug" && v != "info" && v != "warn" && v != "err"
          && v != "critical" && v != "off") {
        return bad("trace, debug, info, warn, err, critical or off");
      }
      o.log_level = v;
    }
  }
  return {o, {}};
}

} // namespace kv
