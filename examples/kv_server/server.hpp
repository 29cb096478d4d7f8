// examples/kv_server/server.hpp: the kv_server process: its supervision tree (shards, AOF
// writer, expiry ticker, acceptor, one child per connection), start-up checks and shutdown.
#pragma once

#include "options.hpp"

namespace kv {

/// Runs kv_server with `o` until SIGINT or SIGTERM, then stops gracefully (connections
/// closed, append-only files flushed and synced). Prints "kv_server listening on
/// ADDR:PORT" as the first line on stdout once it accepts connections.
/// @return the process exit code: 0 after a graceful stop, 1 when it cannot start (data
/// directory unusable or locked by another kv_server, a corrupt AOF, the address in use),
/// with the reason on stderr.
/// Thread-safety: call once, from main, before any other thread exists (it blocks SIGINT and
/// SIGTERM for the whole process and waits for them).
int run_server(const options& o);

} // namespace kv
