// examples/echo_server.cpp: a TCP line-echo server built from supervised actors.
//
//   echo_server                               self-test: serves on a free loopback port, runs
//                                             four clients in-process, checks every echo,
//                                             prints a summary, exits 0 (1 on a failed check)
//   echo_server --port N --serve [--host H]   serves on H:N (default 127.0.0.1) until SIGINT
//                                             or SIGTERM; try `nc 127.0.0.1 N`
//
// The tree: a `listener` child (under the root supervisor, restarted if it fails) accepts
// connections; each connection becomes a children group of one `conn` child under the
// `connections` supervisor, whose policy is never(): a connection that fails is not restarted
// (its socket is gone), and its failure touches no other connection. A connection's child owns
// its tcp_stream, so the socket closes when the child ends, fails or is stopped. A line
// "!fail" makes a connection's child throw, to show exactly that.
#include <bastion/bastion.hpp>
#include <bastion/io/tcp.hpp>

#include <pthread.h>
#include <signal.h>

#include <array>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

using namespace std::chrono_literals;
using bastion::task;
using bastion::io::tcp_listener;
using bastion::io::tcp_stream;

namespace {

/// Counters shared by the server's actors (read by main).
struct server_stats {
  std::atomic<int> accepted{0};
  std::atomic<int> ended{0};  ///< connection children stopped for good (after_stop)
  std::atomic<int> failed{0}; ///< of which asked to fail
  std::atomic<std::uint64_t> lines{0};
};

/// Takes the first complete line ("...\n") out of `pending`, without its newline.
bool take_line(std::string& pending, std::string& line) {
  const auto nl = pending.find('\n');
  if (nl == std::string::npos) {
    return false;
  }
  line.assign(pending, 0, nl);
  pending.erase(0, nl + 1);
  return true;
}

/// The body of one connection's child: echoes each line until the peer closes its side.
/// `box` holds the accepted stream until the first incarnation takes it.
task<> connection_body(std::shared_ptr<tcp_stream> box, std::shared_ptr<server_stats> stats) {
  tcp_stream s = std::move(*box); // this frame owns the socket now
  std::array<char, 4096> buf{};
  std::string pending;
  std::string line;
  for (;;) {
    const auto n = co_await s.read_some(buf);
    if (n == 0) {
      co_return; // the peer closed its side: the child finishes, the socket closes
    }
    pending.append(buf.data(), n);
    while (take_line(pending, line)) {
      if (line == "!fail") {
        stats->failed.fetch_add(1);
        throw std::runtime_error("asked to fail by " + s.peer_address());
      }
      line += '\n';
      co_await s.write_all(line);
      stats->lines.fetch_add(1, std::memory_order_relaxed);
    }
  }
}

/// Adds a supervised child for `s` under `connections`.
void add_connection(
    const bastion::supervisor_ref& connections,
    tcp_stream s,
    const std::shared_ptr<server_stats>& stats) {
  auto box = std::make_shared<tcp_stream>(std::move(s));
  connections.children([&box, &stats](bastion::children_builder& c) {
    c.name("conn")
        .exec([box, stats](bastion::context&) { return connection_body(box, stats); })
        .after_stop([stats](const bastion::child_ref&) { stats->ended.fetch_add(1); });
  });
}

/// The body of the listener child: accepts forever, one supervised child per connection.
/// If it fails (say, out of descriptors), the root supervisor restarts it on the same
/// listening socket, which main owns.
task<> listener_body(
    std::shared_ptr<tcp_listener> listener,
    bastion::supervisor_ref connections,
    std::shared_ptr<server_stats> stats) {
  for (;;) {
    auto s = co_await listener->accept();
    stats->accepted.fetch_add(1);
    add_connection(connections, std::move(s), stats);
  }
}

/// The server's part of the tree; returns once it is added (it starts with the system).
void build_server(
    bastion::system& sys,
    std::shared_ptr<tcp_listener> listener,
    const std::shared_ptr<server_stats>& stats) {
  auto connections = sys.supervisor([](bastion::supervisor_builder& s) {
    s.strategy(bastion::one_for_one)
        .restart(bastion::restart_strategy{}.policy(bastion::restart_policy::never()));
  });
  sys.children([&](bastion::children_builder& c) {
    c.name("listener").exec([listener, connections, stats](bastion::context&) {
      return listener_body(listener, connections, stats);
    });
  });
}

// ----------------------------------------------------------- the self-test ----

/// Reads up to and including the next newline into `pending`; the line without it, or
/// nothing when the stream ended first.
task<std::optional<std::string>> read_line(tcp_stream* s, std::string* pending) {
  std::array<char, 1024> buf{};
  std::string line;
  while (!take_line(*pending, line)) {
    const auto n = co_await s->read_some(buf, 5s);
    if (n == 0) {
      co_return std::nullopt;
    }
    pending->append(buf.data(), n);
  }
  co_return line;
}

/// Sends `lines` lines and checks each echo; yields the lines echoed intact.
task<int> client(std::uint16_t port, int id, int lines) {
  auto s = co_await tcp_stream::connect("127.0.0.1", port);
  std::string pending;
  int good = 0;
  for (int i = 0; i < lines; ++i) {
    const std::string line = "client " + std::to_string(id) + " line " + std::to_string(i);
    co_await s.write_all(line + "\n");
    const auto back = co_await read_line(&s, &pending);
    good += back == line ? 1 : 0;
  }
  co_return good;
}

/// Gets one echo, then asks its connection to fail: yields true when the echo came back and
/// the server then closed the connection (end of stream or reset).
task<bool> failing_client(std::uint16_t port) {
  auto s = co_await tcp_stream::connect("127.0.0.1", port);
  std::string pending;
  co_await s.write_all(std::string_view{"before the failure\n"});
  const bool echoed = co_await read_line(&s, &pending) == "before the failure";
  co_await s.write_all(std::string_view{"!fail\n"});
  bool closed = false;
  try {
    closed = !(co_await read_line(&s, &pending)).has_value();
  } catch (const std::system_error& e) {
    closed = e.code() == std::errc::connection_reset;
  }
  co_return echoed&& closed;
}

struct self_test_result {
  std::vector<int> good;
  bool failing_ok = false;
};

task<self_test_result> self_test(std::uint16_t port, int clients, int lines) {
  std::vector<bastion::join_handle<int>> hs;
  for (int i = 0; i < clients; ++i) {
    hs.push_back(bastion::spawn(client(port, i, lines)));
  }
  auto failing = bastion::spawn(failing_client(port));
  self_test_result r;
  for (auto& h : hs) {
    r.good.push_back(co_await std::move(h));
  }
  r.failing_ok = co_await std::move(failing);
  co_return r;
}

int run_self_test() {
  constexpr int clients = 3;
  constexpr int lines = 5;
  bastion::system sys{bastion::config{}.workers(2).log_level("off")};
  auto listener = std::make_shared<tcp_listener>(tcp_listener::bind("127.0.0.1", 0));
  const auto port = listener->local_port();
  auto stats = std::make_shared<server_stats>();
  build_server(sys, listener, stats);
  sys.start();
  std::printf("echo_server: self-test on 127.0.0.1:%u\n", static_cast<unsigned>(port));

  const auto r = sys.runtime().run(self_test(port, clients, lines));
  bool ok = r.failing_ok;
  for (std::size_t i = 0; i < r.good.size(); ++i) {
    std::printf("client %zu: %d of %d lines echoed\n", i, r.good[i], lines);
    ok = ok && r.good[i] == lines;
  }
  std::printf(
      "failing client: %s\n",
      r.failing_ok ? "echoed, then its connection was closed" : "UNEXPECTED");

  // Every connection's child ends (its client closed, or it failed): wait for all four.
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (stats->ended.load() < clients + 1 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(1ms);
  }
  std::printf(
      "server: %d connections accepted, %d ended (%d by failure), %llu lines echoed\n",
      stats->accepted.load(),
      stats->ended.load(),
      stats->failed.load(),
      static_cast<unsigned long long>(stats->lines.load()));
  ok = ok && stats->accepted.load() == clients + 1 && stats->ended.load() == clients + 1
       && stats->lines.load() == static_cast<std::uint64_t>(clients * lines + 1);

  sys.stop(); // cancels the listener's accept; the listening socket closes with `listener`
  sys.block_until_stopped();
  std::printf("%s\n", ok ? "ok" : "FAILED");
  return ok ? 0 : 1;
}

// --------------------------------------------------------------- serving ----

int serve(const std::string& host, std::uint16_t port) {
  // Block SIGINT/SIGTERM in every thread (the workers inherit this mask), then wait for
  // them on this one.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  bastion::system sys{bastion::config{}.log_level("info")};
  auto listener = std::make_shared<tcp_listener>(tcp_listener::bind(host, port));
  auto stats = std::make_shared<server_stats>();
  build_server(sys, listener, stats);
  sys.start();
  std::printf(
      "echo_server: serving on %s:%u (Ctrl-C to stop)\n",
      host.c_str(),
      static_cast<unsigned>(listener->local_port()));
  std::fflush(stdout);

  int sig = 0;
  sigwait(&stop_signals, &sig);
  std::printf(
      "\necho_server: %s: stopping; %d connections, %llu lines echoed\n",
      sig == SIGINT ? "SIGINT" : "SIGTERM",
      stats->accepted.load(),
      static_cast<unsigned long long>(stats->lines.load()));
  sys.stop(); // every connection's child is stopped: its socket closes
  sys.block_until_stopped();
  return 0;
}

int usage(const char* why) {
  std::fprintf(
      stderr,
      "echo_server: %s\n"
      "usage: echo_server                              (self-test, exits)\n"
      "       echo_server --port N --serve [--host H]  (serve until SIGINT)\n",
      why);
  return 2;
}

} // namespace

int main(int argc, char** argv) {
  std::string host = "127.0.0.1";
  int port = -1;
  bool serving = false;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--serve") {
      serving = true;
    } else if (arg == "--port" && i + 1 < argc) {
      const std::string_view v = argv[++i];
      int p = -1;
      const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), p);
      if (ec != std::errc{} || end != v.data() + v.size() || p < 0 || p > 65535) {
        return usage("--port wants a number from 0 to 65535");
      }
      port = p;
    } else if (arg == "--host" && i + 1 < argc) {
      host = argv[++i];
    } else {
      return usage(("unknown or incomplete argument '" + std::string(arg) + "'").c_str());
    }
  }
  try {
    if (!serving) {
      if (port >= 0) {
        return usage("--port needs --serve");
      }
      return run_self_test();
    }
    if (port < 0) {
      return usage("--serve needs --port");
    }
    return serve(host, static_cast<std::uint16_t>(port));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "echo_server: %s\n", e.what());
    return 1;
  }
}
