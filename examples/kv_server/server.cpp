// examples/kv_server/server.cpp: kv_server's actors and process lifecycle (see server.hpp and
// docs/kv_server.md).
//
// The tree:
//
//   /root
//   ├── kv supervisor (one_for_one, always, backoff 1 ms x2 up to 10 ms)
//   │   ├── "shard" group, redundancy N   each owns a keyspace; reloads its AOF on every start
//   │   ├── "aof"                         flushes the shards' AOF buffers, fsyncs every second
//   │   ├── "expiry"                      tells each shard to sweep expired keys, 10 times/s
//   │   └── "acceptor"                    accepts, starts a connection child per client
//   └── connections supervisor (one_for_one, never restarts)
//       └── "connection" group per client (redundancy 1): serves its connection (parse a
//           batch, ask each shard once, one write) and finishes when the client leaves; the
//           finished group leaves the tree
#include "server.hpp"

#include <bastion/bastion.hpp>
#include <bastion/io/tcp.hpp>

#include "aof.hpp"
#include "batch.hpp"
#include "keyspace.hpp"
#include "resp.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

namespace kv {
namespace {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

/// The ask a connection sends to shard `shard` for its part of `batch`.
struct shard_job {
  std::shared_ptr<request_batch> batch;
  std::uint32_t shard = 0;
};
/// Tells a shard to sweep expired keys.
struct expire_tick {};
/// Tells the AOF writer that a shard's buffer went from empty to non-empty.
struct aof_dirty {};

/// What DEBUG CRASH-SHARD makes a shard throw.
class shard_crash : public std::runtime_error {
public:
  explicit shard_crash(std::size_t shard)
      : std::runtime_error(fmt::format("DEBUG CRASH-SHARD: shard {} failed on purpose", shard)) {}
};

/// A connection accepted but not yet taken by its actor.
struct connection_seed {
  explicit connection_seed(bastion::io::tcp_stream s) noexcept
      : stream(std::move(s)) {}
  bastion::io::tcp_stream stream; ///< moved out by the child's first incarnation
};

constexpr std::size_t initial_buffer = 16 * 1024;              ///< a connection's read buffer
constexpr std::size_t min_read = 4 * 1024;                     ///< free space wanted before a read
constexpr std::size_t max_query_buffer = std::size_t{1} << 30; ///< redis's query buffer limit
constexpr std::size_t max_batch = 1024;                        ///< commands per batch
constexpr auto aof_flush_delay = 2ms;                          ///< writes gathered into one flush
constexpr auto aof_sync_period = 1s;                           ///< appendfsync everysec
constexpr auto expiry_period = 100ms;

/// Everything the actors share. Built by run_server before the system starts; the refs and
/// ids are written before sys.start() and only read afterwards; counters are atomics.
struct server_state {
  options opts;
  std::uint16_t port = 0;
  std::vector<std::shared_ptr<aof_log>> aofs; ///< one per shard, for the whole process
  std::vector<bastion::child_ref> shards;     ///< shard i's ref (stable across restarts)
  std::vector<std::uint64_t> shard_ids;       ///< shard i's child id
  bastion::child_ref aof_writer;
  bastion::supervisor_ref connections;
  bastion::io::tcp_listener listener;
  bastion::dead_letters* dead = nullptr;
  steady::time_point started = steady::now();
  std::atomic<std::uint64_t> shard_restarts{0};
  std::atomic<std::int64_t> clients{0};
  std::atomic<std::uint64_t> total_connections{0};
  std::atomic<std::uint64_t> total_commands{0};
  /// Drops every ref to the tree: its groups' bodies hold this state, so the refs would
  /// make a cycle. Called once the system stopped.
  void release_tree() {
    shards.clear();
    aof_writer = {};
    connections = {};
  }

  [[nodiscard]] std::size_t index_of(std::uint64_t child_id) const {
    for (std::size_t i = 0; i < shard_ids.size(); ++i) {
      if (shard_ids[i] == child_id) {
        return i;
      }
    }
    throw std::logic_error("kv_server: a shard child that is not in the shard table");
  }

  [[nodiscard]] server_view view() const {
    server_view v;
    v.shards = shards.size();
    v.port = port;
    v.dir = opts.dir;
    v.appendonly = opts.appendonly;
    v.uptime_s = std::chrono::duration_cast<std::chrono::seconds>(steady::now() - started).count();
    v.shard_restarts = shard_restarts.load(std::memory_order_relaxed);
    v.dead_letters = dead != nullptr ? dead->count() : 0;
    v.connected_clients = clients.load(std::memory_order_relaxed);
    v.total_connections = total_connections.load(std::memory_order_relaxed);
    v.total_commands = total_commands.load(std::memory_order_relaxed);
    v.connection_actors = connections.id() != 0 ? connections.size() : 0;
    return v;
  }
};

/// Calls server_state::release_tree() when it goes out of scope.
class tree_release {
public:
  explicit tree_release(server_state& st) noexcept
      : st_(st) {}
  tree_release(const tree_release&) = delete;
  tree_release& operator=(const tree_release&) = delete;
  ~tree_release() { st_.release_tree(); }

private:
  server_state& st_;
};

// ---------------------------------------------------------------------------------------
// Shards

/// Replays the shard's AOF into `ks` (after writing what its buffer still held), cutting a
/// torn tail and compacting a file mostly made of overwritten records.
bastion::task<> load_shard(std::shared_ptr<aof_log> log, keyspace& ks, std::size_t index) {
  // A capturing lambda is never built inside a co_await operand in this file: g++-12
  // destroys such temporaries twice (see docs/kv_server.md). Name the handle first.
  auto loading = bastion::spawn_blocking([log] { return log->load(); });
  std::string data = co_await std::move(loading);
  const replay_result r = replay(data, ks, unix_ms());
  if (!r.error.empty()) {
    throw std::runtime_error("kv_server: " + log->path().string() + " is corrupt: " + r.error);
  }
  if (r.torn_tail) {
    bastion::logger().warn(
        "kv_server: shard {}: dropping a torn record at the end of {} ({} bytes kept)",
        index,
        log->path().string(),
        r.valid_bytes);
    auto cut = bastion::spawn_blocking([log, n = r.valid_bytes] { log->truncate(n); });
    co_await std::move(cut);
  }
  if (r.records > 2 * ks.size() + 1024) {
    std::string snapshot;
    append_snapshot(snapshot, ks);
    auto rewriting = bastion::spawn_blocking([log, s = std::move(snapshot)] { log->rewrite(s); });
    co_await std::move(rewriting);
  }
  bastion::logger().info(
      "kv_server: shard {} loaded {} keys ({} records) from {}",
      index,
      ks.size(),
      r.records,
      log->path().string());
}

/// A shard: owns a keyspace (lost with the incarnation, rebuilt from the AOF by the next),
/// runs the parts of the batches connections ask it for. Every write is appended to the AOF
/// buffer (which outlives incarnations) before the reply that acknowledges it.
bastion::task<> shard_body(bastion::context& ctx, std::shared_ptr<server_state> st) {
  const std::size_t index = st->index_of(ctx.id());
  const std::shared_ptr<aof_log> log = st->aofs[index];
  keyspace ks;
  co_await load_shard(log, ks, index);

  std::string records;
  bool crash = false;
  bool dirty = false;
  auto process = [&](bastion::message&& m) {
    ctx.handle(
        std::move(m),
        [&](bastion::question<shard_job> q) {
          std::shared_ptr<request_batch> b = std::move(q.value().batch);
          records.clear();
          crash = execute_part(*b, index, ks, records, unix_ms()) || crash;
          b.reset(); // released before the reply: the connection may reuse the batch at once
          dirty = log->append(records) || dirty;
          q.reply(true);
        },
        [&](const expire_tick&) { ks.expire_due(unix_ms(), 1000); },
        bastion::otherwise([](bastion::message&&) {}));
  };
  for (;;) {
    process(co_await ctx.recv());
    for (int more = 0; more < 64; ++more) { // drain what is queued before notifying
      auto m = ctx.try_recv();
      if (!m) {
        break;
      }
      process(std::move(*m));
    }
    if (dirty) {
      dirty = false;
      ctx.tell(st->aof_writer, aof_dirty{});
    }
    if (crash) {
      throw shard_crash(index); // after every reply: the supervisor restarts this shard
    }
  }
}

/// Moves the shards' AOF buffers to their files a moment after they filled (on the blocking
/// pool), and fsyncs every file once a second (appendfsync everysec).
bastion::task<> aof_body(bastion::context& ctx, std::shared_ptr<server_state> st) {
  auto next_sync = steady::now() + aof_sync_period;
  for (;;) {
    const auto now = steady::now();
    auto m = co_await ctx.recv_for(next_sync > now ? next_sync - now : steady::duration::zero());
    if (m) {
      co_await bastion::sleep_for(aof_flush_delay); // gather the writes of other batches
      while (ctx.try_recv()) {
      }
      auto flushing = bastion::spawn_blocking([st] {
        for (const auto& l : st->aofs) {
          l->flush();
        }
      });
      co_await std::move(flushing);
    }
    if (steady::now() >= next_sync) {
      auto syncing = bastion::spawn_blocking([st] {
        for (const auto& l : st->aofs) {
          l->sync();
        }
      });
      co_await std::move(syncing);
      next_sync = steady::now() + aof_sync_period;
    }
  }
}

/// Tells every shard to sweep its expired keys, ten times a second.
bastion::task<> expiry_body(bastion::context& ctx, std::shared_ptr<server_state> st) {
  for (;;) {
    co_await bastion::sleep_for(expiry_period);
    for (const auto& s : st->shards) {
      ctx.tell(s, expire_tick{});
    }
  }
}

// ---------------------------------------------------------------------------------------
// Connections

/// Counts a connected client for INFO while it lives.
class client_count {
public:
  explicit client_count(server_state& st) noexcept
      : st_(st) {
    st_.clients.fetch_add(1, std::memory_order_relaxed);
  }
  client_count(const client_count&) = delete;
  client_count& operator=(const client_count&) = delete;
  ~client_count() { st_.clients.fetch_sub(1, std::memory_order_relaxed); }

private:
  server_state& st_;
};

/// The read buffer, as scratch space once its contents are no longer needed.
std::span<char> in_scratch(request_batch& b) noexcept {
  return {b.in.data(), b.in.capacity()};
}

/// A lingering close after an error reply: shuts down the sending side, then reads and
/// discards what the client still sends (up to 1 MiB, for at most 250 ms between reads), so
/// that closing with unread input does not reset the connection before the client read the
/// error (as HTTP servers do).
// NOLINTNEXTLINE(cppcoreguidelines-avoid-reference-coroutine-parameters): awaited at once
bastion::task<> linger(bastion::io::tcp_stream& stream, std::span<char> scratch) {
  try {
    stream.shutdown_write();
    std::size_t discarded = 0;
    while (discarded < (std::size_t{1} << 20)) {
      const std::size_t n = co_await stream.read_some(scratch, 250ms);
      if (n == 0) {
        break;
      }
      discarded += n;
    }
  } catch (const std::exception&) {
    // timed out, or the peer reset: close now
  }
}

/// Serves one client connection: reads, parses a batch of pipelined commands, asks each
/// shard concerned once for its part of the batch, then writes every reply with one write.
/// Returns when the client goes away (end of stream, reset), after QUIT or a protocol error;
/// the stream, the buffers and the batch are freed then (a shard still running its part of
/// the batch keeps the batch until it is done).
// NOLINTNEXTLINE(cppcoreguidelines-avoid-reference-coroutine-parameters): awaited at once
bastion::task<> serve_connection(server_state& st_ref, bastion::io::tcp_stream stream) {
  server_state* const st = &st_ref;
  const client_count counted{*st};
  const std::size_t nshards = st->shards.size();
  auto batch = std::make_shared<request_batch>(nshards);
  batch->in.reserve(initial_buffer, 0);
  request_parser parser;
  std::string out;
  std::vector<std::pair<std::uint32_t, bastion::reply_future<bool>>> waits;
  const server_view fixed = st->view();
  std::size_t len = 0; // valid bytes in batch->in
  std::size_t pos = 0; // parse position
  bool closing = false;
  try {
    while (!closing) {
      request_batch& b = *batch;
      b.clear();
      std::string protocol_error;
      const std::int64_t now = unix_ms();
      while (b.commands.size() < max_batch) {
        const auto first = static_cast<std::uint32_t>(b.args.size());
        const auto r = parser.next(b.in.data(), len, pos, b.args);
        if (r == request_parser::result::need_more) {
          break;
        }
        if (r == request_parser::result::error) {
          protocol_error = parser.error();
          closing = true; // as redis: reply the error, then close
          break;
        }
        const auto argc = static_cast<std::uint32_t>(b.args.size()) - first;
        const raw_request raw{parser.last_begin(), pos, parser.last_multibulk()};
        if (plan_command(b, first, argc, fixed, now, raw) == plan_result::quit) {
          closing = true; // nothing after QUIT runs
          break;
        }
      }
      const bool full = b.commands.size() == max_batch;
      if (!b.commands.empty() || !protocol_error.empty()) {
        waits.clear();
        for (std::uint32_t s = 0; s < nshards; ++s) {
          if (!b.parts[s].ops.empty()) {
            waits.emplace_back(s, st->shards[s].ask<bool>(shard_job{batch, s}));
          }
        }
        for (auto& [s, reply] : waits) {
          try {
            (void)co_await std::move(reply);
          } catch (const bastion::no_reply&) {
            b.parts[s].failed = true; // the shard failed before it answered
          }
        }
        out.clear();
        assemble_replies(b, b.has_info ? st->view() : fixed, out);
        if (!protocol_error.empty()) {
          append_error(out, "ERR " + protocol_error);
        }
        st->total_commands.fetch_add(b.commands.size(), std::memory_order_relaxed);
        co_await stream.write_all(out);
        if (!protocol_error.empty()) {
          co_await linger(stream, in_scratch(*batch));
        }
        if (batch.use_count() != 1) {
          // A failed shard's message still holds the batch: continue in a fresh one.
          auto fresh = std::make_shared<request_batch>(nshards);
          fresh->in.reserve(std::max(initial_buffer, len - pos + min_read), 0);
          std::memcpy(fresh->in.data(), batch->in.data() + pos, len - pos);
          len -= pos;
          pos = 0;
          batch = std::move(fresh);
        }
      }
      if (closing) {
        break;
      }
      if (full) {
        continue; // more complete commands may be buffered already
      }
      // Keep the unparsed tail, then read more.
      byte_buffer& in = batch->in;
      if (pos > 0) {
        std::memmove(in.data(), in.data() + pos, len - pos);
        len -= pos;
        pos = 0;
      }
      if (len == 0 && in.capacity() > 64 * initial_buffer) {
        in.shrink(initial_buffer); // a large request went through: give the memory back
        in.reserve(initial_buffer, 0);
      }
      if (in.capacity() - len < min_read) {
        const std::size_t want = std::max(in.capacity() * 2, len + min_read);
        if (want > max_query_buffer + max_bulk_len) {
          out.clear();
          append_error(out, "ERR Protocol error: query buffer limit exceeded");
          co_await stream.write_all(out);
          co_await linger(stream, in_scratch(*batch));
          break;
        }
        in.reserve(want, len);
      }
      const std::size_t n = co_await stream.read_some({in.data() + len, in.capacity() - len});
      if (n == 0) {
        break; // the client closed its side
      }
      len += n;
    }
  } catch (const std::system_error& e) {
    // The client went away (reset, broken pipe): an ordinary end for a connection.
    bastion::logger().debug("kv_server: connection ended: {}", e.what());
  }
}

/// A connection child's body: serves its client's connection, then finishes (its group,
/// done, leaves the tree). It is never restarted (the connections supervisor's policy is
/// never); were it restarted, the stream would be gone with the first incarnation.
bastion::task<>
connection_body(std::shared_ptr<server_state> st, std::shared_ptr<connection_seed> seed) {
  if (seed->stream.is_open()) {
    auto serving = serve_connection(*st, std::move(seed->stream));
    co_await std::move(serving);
  }
}

/// Accepts connections and starts a supervised connection child for each (a group of one
/// under the connections supervisor). Runs until the system stops (its cancellation withdraws
/// the pending accept); the listener outlives it.
bastion::task<> acceptor_body(bastion::context& ctx, std::shared_ptr<server_state> st) {
  (void)ctx;
  for (;;) {
    std::optional<bastion::io::tcp_stream> accepted;
    try {
      accepted.emplace(co_await st->listener.accept());
    } catch (const std::system_error& e) {
      bastion::logger().warn("kv_server: accept failed: {}", e.what());
    }
    if (!accepted) {
      co_await bastion::sleep_for(10ms); // e.g. out of descriptors: let connections end
      continue;
    }
    try {
      accepted->set_nodelay(true);
    } catch (const std::system_error&) {
      continue; // the peer is already gone
    }
    st->total_connections.fetch_add(1, std::memory_order_relaxed);
    auto seed = std::make_shared<connection_seed>(std::move(*accepted));
    st->connections.children([&](bastion::children_builder& c) {
      c.name("connection").exec([st, seed](bastion::context&) {
        return connection_body(st, seed);
      });
    });
  }
}

bastion::task<bastion::io::tcp_listener> bind_listener(std::string host, std::uint16_t port) {
  co_return bastion::io::tcp_listener::bind(host, port);
}

// ---------------------------------------------------------------------------------------
// Start-up checks

/// Holds an exclusive flock on <dir>/kv_server.lock for the process's life.
class dir_lock {
public:
  explicit dir_lock(const std::filesystem::path& dir) {
    const auto p = dir / "kv_server.lock";
    fd_ = ::open(p.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) {
      throw std::system_error(errno, std::generic_category(), "open " + p.string());
    }
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      ::close(fd_);
      throw std::runtime_error(
          "the data directory " + dir.string() + " is in use by another kv_server");
    }
  }
  dir_lock(const dir_lock&) = delete;
  dir_lock& operator=(const dir_lock&) = delete;
  ~dir_lock() { ::close(fd_); }

private:
  int fd_ = -1;
};

/// The data directory remembers its shard count: keys are placed by hash modulo the count,
/// so the files of another count would put keys on the wrong shards.
void check_meta(const std::filesystem::path& dir, std::size_t shards) {
  const auto p = dir / "kv_server.meta";
  std::ifstream in(p);
  if (in) {
    std::string word;
    std::size_t n = 0;
    if (!(in >> word >> n) || word != "shards") {
      throw std::runtime_error(p.string() + " is malformed (expected \"shards N\")");
    }
    if (n != shards) {
      throw std::runtime_error(fmt::format(
          "the data directory {} holds {} shards; start with --shards {} or use another --dir",
          dir.string(),
          n,
          n));
    }
    return;
  }
  std::ofstream out(p);
  out << "shards " << shards << "\n";
  if (!out) {
    throw std::runtime_error("cannot write " + p.string());
  }
}

/// Refuses to start on a corrupt AOF (a torn last record is fine: the shard drops it).
void check_aof(const std::filesystem::path& p) {
  std::error_code ec;
  if (!std::filesystem::exists(p, ec)) {
    return;
  }
  std::ifstream in(p, std::ios::binary);
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  keyspace scratch;
  const replay_result r = replay(data, scratch, unix_ms());
  if (!r.error.empty()) {
    throw std::runtime_error(p.string() + " is corrupt: " + r.error);
  }
}

/// Half the CPUs, at least one: the kernel's TCP work (about 60% of the server's profile
/// under redis-benchmark) and the clients need the rest. On a 2-CPU machine with the load
/// generator beside it, 1 worker serves -P 1 about 1.6x faster than 2 (docs/kv_server.md).
std::size_t default_workers() {
  return std::max<std::size_t>(1, std::thread::hardware_concurrency() / 2);
}

} // namespace

int run_server(const options& o) {
  auto st = std::make_shared<server_state>();
  st->opts = o;
  std::optional<dir_lock> lock;
  try {
    std::filesystem::create_directories(o.dir);
    lock.emplace(o.dir);
    check_meta(o.dir, o.shards);
    for (std::size_t i = 0; i < o.shards; ++i) {
      const auto p = std::filesystem::path(o.dir) / fmt::format("shard-{}.aof", i);
      if (o.appendonly) {
        check_aof(p);
      }
      st->aofs.push_back(std::make_shared<aof_log>(p, o.appendonly));
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kv_server: %s\n", e.what());
    return 1;
  }

  // Every thread the system starts inherits this mask: the signals reach sigwait below.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  bastion::config cfg;
  cfg.log_level(o.log_level);
  cfg.workers(o.workers > 0 ? o.workers : default_workers());
  bastion::system sys{cfg};
  st->dead = &sys.dead_letters();
  const tree_release release{*st}; // destroyed before `sys`: breaks the state <-> tree cycle

  bastion::children_ref shard_group;
  bastion::children_ref aof_group;
  sys.supervisor([&](bastion::supervisor_builder& s) {
    s.strategy(bastion::one_for_one)
        .restart(bastion::restart_strategy{}
                     .policy(bastion::restart_policy::always())
                     // A shard that fails over and over (a bad disk) is retried at most
                     // every 10 ms; one that ran for a second since its last start begins
                     // again at 1 ms.
                     .backoff(bastion::backoff::exponential(1ms, 2.0, 10ms))
                     .backoff_reset(1s));
    s.children([&](bastion::children_builder& c) {
      c.name("shard")
          .redundancy(o.shards)
          .exec([st](bastion::context& ctx) { return shard_body(ctx, st); })
          .before_restart([st](const bastion::failure&) {
            st->shard_restarts.fetch_add(1, std::memory_order_relaxed);
          });
    });
    shard_group = s.groups().back();
    s.children([&](bastion::children_builder& c) {
      c.name("aof").exec([st](bastion::context& ctx) { return aof_body(ctx, st); });
    });
    aof_group = s.groups().back();
    s.children([&](bastion::children_builder& c) {
      c.name("expiry").exec([st](bastion::context& ctx) { return expiry_body(ctx, st); });
    });
    s.children([&](bastion::children_builder& c) {
      c.name("acceptor").exec([st](bastion::context& ctx) { return acceptor_body(ctx, st); });
    });
  });
  st->connections = sys.supervisor([](bastion::supervisor_builder& s) {
    s.restart(bastion::restart_strategy{}.policy(bastion::restart_policy::never()));
  });
  st->shards = shard_group.elems();
  for (const auto& r : st->shards) {
    st->shard_ids.push_back(r.id());
  }
  st->aof_writer = aof_group.elems().at(0);

  try {
    st->listener = sys.runtime().run(bind_listener(o.bind, o.port));
  } catch (const std::exception& e) {
    std::fprintf(
        stderr, "kv_server: cannot listen on %s port %u: %s\n", o.bind.c_str(), o.port, e.what());
    sys.kill();
    sys.block_until_stopped();
    return 1;
  }
  st->port = st->listener.local_port();
  const bool v6 = o.bind.find(':') != std::string::npos;
  std::printf(
      "kv_server listening on %s%s%s:%u\n", v6 ? "[" : "", o.bind.c_str(), v6 ? "]" : "", st->port);
  std::fflush(stdout);
  sys.start();

  int sig = 0;
  sigwait(&stop_signals, &sig);
  bastion::logger().info("kv_server: signal {}: stopping", sig);
  sys.stop(); // cancels the acceptor (its accept is withdrawn) and every connection
  sys.block_until_stopped();
  // No proc runs any more: close the listener here, while its reactor still exists (the
  // runtime goes with `sys`). tcp_listener::close() from another thread while a proc is in
  // accept() is a data race in bastion::io today (see docs/kv_server.md).
  st->listener.close();
  int code = 0;
  for (const auto& l : st->aofs) {
    try {
      l->sync();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "kv_server: %s\n", e.what());
      code = 1;
    }
  }
  std::fprintf(stderr, "kv_server stopped\n");
  return code;
}

} // namespace kv
