// examples/kv_server/options.hpp: kv_server's command line.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace kv {

/// What kv_server runs with.
struct options {
  std::string bind = "127.0.0.1"; ///< numeric address to listen on
  std::uint16_t port = 6390;      ///< TCP port; 0 picks a free one (printed at start)
  std::size_t shards = 4;         ///< shard actors (1..1024)
  std::string dir = "kv_data";    ///< data directory (created if missing)
  std::size_t workers = 0;        ///< executor workers; 0: one per CPU
  bool appendonly = true;         ///< keep AOF files (--appendonly no: memory only)
  std::string log_level = "warn"; ///< bastion logger level
  bool help = false;              ///< --help was given
};

/// The outcome of parse_options: the options, or the usage error to print (exit code 2).
struct parse_outcome {
  std::optional<options> opts;
  std::string error; ///< e.g. "invalid value 'abc' for --port (expected 0..65535)"
};

/// Parses `args` (argv without the program name). Accepts `--flag value` and `--flag=value`:
/// --port, --shards, --dir, --bind, --workers, --appendonly yes|no, --log-level, --help.
/// Thread-safety: pure.
[[nodiscard]] parse_outcome parse_options(const std::vector<std::string>& args);

/// The --help text.
[[nodiscard]] std::string usage();

} // namespace kv
