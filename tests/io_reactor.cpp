// tests/io_reactor.cpp: how the reactor lives inside the executor: an idle server uses no
// CPU, busy workers still serve sockets, shutdown cancels procs waiting on sockets, and a
// socket may outlive its runtime.
#include <bastion/executor/runtime.hpp>
#include <bastion/executor/spawn.hpp>
#include <bastion/executor/topology.hpp>
#include <bastion/io/tcp.hpp>
#include <bastion/lightproc/errors.hpp>

#include "io/reactor.hpp"
#include "plain_socket.hpp"
#include "support.hpp"

#include <catch2/catch.hpp>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

using namespace std::chrono_literals;
using bastion::task;
using bastion::io::tcp_listener;
using bastion::io::tcp_stream;

namespace {

std::size_t open_fds() {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
    ++n;
  }
  return n;
}

std::chrono::nanoseconds process_cpu_time() {
  timespec ts{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec);
}

bastion::runtime_config two_workers() {
  return bastion::runtime_config{}.workers(2).pin_workers(false);
}

task<std::size_t> echo_once(tcp_listener& l) {
  auto s = co_await l.accept();
  char buf[256];
  const auto n = co_await s.read_some(buf);
  co_await s.write_all(std::span<const char>(buf, n));
  co_return n;
}

task<std::string> ask_echo(std::uint16_t port, std::string msg) {
  auto s = co_await tcp_stream::connect("127.0.0.1", port);
  co_await s.write_all(msg);
  std::string back(msg.size(), '\0');
  co_await s.read_exact(back);
  co_return back;
}

/// Accepts one connection and echoes `rounds` reads back.
task<int> echo_rounds(tcp_listener& l, int rounds) {
  auto s = co_await l.accept();
  char buf[64];
  for (int i = 0; i < rounds; ++i) {
    const auto n = co_await s.read_some(buf);
    co_await s.write_all(std::span<const char>(buf, n));
  }
  co_return rounds;
}

/// A worker_stats counter summed over the runtime's workers.
std::uint64_t total(const bastion::runtime& rt, std::uint64_t bastion::worker_stats::* counter) {
  std::uint64_t n = 0;
  for (const auto& w : rt.stats().workers) {
    n += w.*counter;
  }
  return n;
}

/// Times the workers went to sleep; spins a lost CPU ended; yields in spins.
std::uint64_t parks_of(const bastion::runtime& rt) {
  return total(rt, &bastion::worker_stats::parks);
}
std::uint64_t contended_spins_of(const bastion::runtime& rt) {
  return total(rt, &bastion::worker_stats::contended_spins);
}
std::uint64_t spin_yields_of(const bastion::runtime& rt) {
  return total(rt, &bastion::worker_stats::spin_yields);
}

/// Sends the byte `c` on `peer` and reads one byte back: true if it is `c`.
bool round_trip(const bastion::test::plain_socket& peer, char c) {
  char back = 0;
  return peer.send_all(std::string_view(&c, 1)) && peer.recv_some(&back, 1) == 1 && back == c;
}

} // namespace

TEST_CASE("an idle runtime with a listening socket uses (almost) no CPU", "[io][reactor]") {
  bastion::runtime rt(two_workers());
  auto l = tcp_listener::bind("127.0.0.1", 0);
  auto h = rt.spawn(echo_once(l));    // parks in accept: the driver waits in epoll_wait
  std::this_thread::sleep_for(100ms); // let the workers finish their bounded spin and park
  const auto cpu0 = process_cpu_time();
  const auto wall0 = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(500ms);
  const auto cpu = process_cpu_time() - cpu0;
  const auto wall = std::chrono::steady_clock::now() - wall0;
  // A spinning poller would burn ~wall of CPU; parked threads burn next to nothing. The bound
  // is a tenth of the wall time, far from either (sanitizers add background threads).
  INFO("cpu " << cpu.count() << " ns over " << wall.count() << " ns");
  CHECK(cpu < wall / 10);
  CHECK(rt.run(ask_echo(l.local_port(), "ping")) == "ping");
  CHECK(std::move(h).join() == 4);
}

TEST_CASE("a worker out of work polls its sockets for io_spin before it parks", "[io][reactor]") {
  for (const std::chrono::microseconds spin : {0us, 1'000'000us}) {
    CAPTURE(spin.count());
    bastion::runtime rt(bastion::runtime_config{}.workers(1).pin_workers(false).io_spin(spin));
    auto l = tcp_listener::bind("127.0.0.1", 0);
    auto h = rt.spawn(echo_rounds(l, 2));
    const auto peer = bastion::test::plain_socket::connect_to(l.local_port());
    REQUIRE(round_trip(peer, 'a'));
    std::this_thread::sleep_for(20ms); // the echo proc waits in its second read
    const auto before = parks_of(rt);
    const auto contended_before = contended_spins_of(rt);
    REQUIRE(round_trip(peer, 'b'));
    if (spin.count() == 0) {
      // Parked in epoll_wait, woken by 'b', and parked again once the proc is done.
      CHECK(bastion::test::wait_until([&] { return parks_of(rt) > before; }));
    } else {
      // Within the window (no timer is armed): the worker served 'b' from its spin and
      // spins on, unless another thread took its CPU (a loaded machine: the spin ends).
      std::this_thread::sleep_for(20ms);
      CHECK((parks_of(rt) == before || contended_spins_of(rt) > contended_before));
    }
    // A spin longer than a few gaps yields the CPU in each further gap (so a thread with
    // work on the same CPU gets it); a worker that parks at once never spins.
    if (spin.count() == 0) {
      CHECK(spin_yields_of(rt) == 0);
    } else {
      CHECK(bastion::test::wait_until([&] { return spin_yields_of(rt) > 0; }));
    }
    CHECK(std::move(h).join() == 2);
  }
}

TEST_CASE("a spinning worker whose yield gives its CPU to another thread parks", "[io][reactor]") {
  // One worker spins on its sockets for up to 1 s; a thread pinned to the worker's CPU
  // then wants that CPU. The worker's next yield hands it over, so the spin ends and the
  // worker parks instead of taking half the CPU for the rest of the window.
  bastion::runtime rt(bastion::runtime_config{}.workers(1).pin_workers(true).io_spin(1'000'000us));
  // The worker pins itself when its thread starts.
  bastion::test::wait_until([&] { return rt.stats().workers.at(0).pinned; });
  const auto placed = rt.stats().workers.at(0);
  if (!placed.pinned) {
    WARN("the worker could not be pinned: no CPU to share with it deterministically");
    return;
  }
  auto l = tcp_listener::bind("127.0.0.1", 0);
  auto h = rt.spawn(echo_rounds(l, 2));
  const auto peer = bastion::test::plain_socket::connect_to(l.local_port());
  const auto contended_before = contended_spins_of(rt);
  const auto yields_before = spin_yields_of(rt);
  REQUIRE(round_trip(peer, 'a')); // the worker now spins, waiting for 'b'
  // It yields in its spin (or the spin already ended on a loaded machine: that counts too).
  REQUIRE(bastion::test::wait_until([&] {
    return spin_yields_of(rt) > yields_before || contended_spins_of(rt) > contended_before;
  }));
  std::atomic<bool> stop{false};
  std::atomic<int> rival_pinned{-1}; // -1 not yet, 0 failed, 1 on the worker's CPU
  // The rival pins itself the way the runtime pinned the worker (topology's placement of
  // the same PU).
  const auto host = bastion::topology::host();
  std::optional<bastion::worker_placement> same_pu;
  for (const auto& p : host.place(host.pu_count())) {
    if (p.pu_os == placed.pu_os) {
      same_pu = p;
    }
  }
  REQUIRE(same_pu.has_value());
  std::thread rival([&] {
    const bool ok = host.pin_current_thread(*same_pu);
    rival_pinned = ok ? 1 : 0;
    while (ok && !stop.load(std::memory_order_relaxed)) {
    }
  });
  REQUIRE(bastion::test::wait_until([&] { return rival_pinned.load() >= 0; }));
  if (rival_pinned.load() == 0) {
    rival.join();
    WARN("no thread could be pinned to the worker's CPU");
    REQUIRE(round_trip(peer, 'b'));
    CHECK(std::move(h).join() == 2);
    return;
  }
  const bool handed_over =
      bastion::test::wait_until([&] { return contended_spins_of(rt) > contended_before; });
  // Parked, not spinning on: no more yields while the rival keeps the CPU (a worker that
  // yielded on would get the CPU back every scheduler slice and yield again).
  const auto yields_then = spin_yields_of(rt);
  std::this_thread::sleep_for(50ms);
  const auto yields_later = spin_yields_of(rt);
  stop = true;
  rival.join();
  CHECK(handed_over);
  CHECK(yields_later == yields_then);
  REQUIRE(round_trip(peer, 'b')); // a parked worker is woken by the socket as before
  CHECK(std::move(h).join() == 2);
}

TEST_CASE("sockets are served while every worker stays busy", "[io][reactor]") {
  // Two procs keep both workers busy by yielding (they never park), so nobody waits in
  // epoll_wait: the readiness must come from the workers' periodic non-blocking poll.
  bastion::runtime rt(two_workers());
  std::atomic<bool> stop{false};
  std::atomic<int> spinning{0};
  auto spin = [](std::atomic<bool>* stop, std::atomic<int>* spinning) -> task<int> {
    spinning->fetch_add(1);
    int rounds = 0;
    while (!stop->load(std::memory_order_relaxed)) {
      co_await bastion::yield_now();
      ++rounds;
    }
    co_return rounds;
  };
  auto l = tcp_listener::bind("127.0.0.1", 0);
  auto s1 = rt.spawn(spin(&stop, &spinning));
  auto s2 = rt.spawn(spin(&stop, &spinning));
  // Both workers busy before the sockets exist (else a worker out of work, spinning on the
  // sockets before it parks, may serve the whole exchange before a spinner first runs).
  REQUIRE(bastion::test::wait_until([&] { return spinning.load() == 2; }));
  auto server = rt.spawn(echo_once(l));
  auto client = rt.spawn(ask_echo(l.local_port(), "busy"));
  const bool done = bastion::test::wait_until([&] { return client.is_finished(); });
  stop = true;
  REQUIRE(done);
  CHECK(std::move(client).join() == "busy");
  CHECK(std::move(server).join() == 4);
  CHECK(std::move(s1).join() > 0);
  CHECK(std::move(s2).join() > 0);
}

TEST_CASE("shutdown cancels procs waiting on sockets and closes them", "[io][reactor]") {
  const auto fds = open_fds();
  std::optional<bastion::join_handle<std::size_t>> acceptor;
  std::optional<bastion::join_handle<std::size_t>> reader;
  {
    bastion::runtime rt(two_workers());
    auto l = std::make_shared<tcp_listener>(tcp_listener::bind("127.0.0.1", 0));
    acceptor.emplace(rt.spawn([](std::shared_ptr<tcp_listener> l) -> task<std::size_t> {
      auto s = co_await l->accept();
      auto t = co_await l->accept(); // never comes: shutdown cancels it here
      co_return 1;
    }(l)));
    reader.emplace(rt.spawn([](std::uint16_t port) -> task<std::size_t> {
      auto s = co_await tcp_stream::connect("127.0.0.1", port);
      char buf[16];
      co_return co_await s.read_some(buf); // the server never writes
    }(l->local_port())));
    l.reset(); // the acceptor's reference keeps the listener
    // Both procs end up parked on sockets; then the runtime shuts down.
    std::this_thread::sleep_for(100ms);
    rt.shutdown();
  }
  CHECK(acceptor->is_finished());
  CHECK(reader->is_finished());
  CHECK_THROWS_AS(std::move(*acceptor).join(), bastion::proc_cancelled);
  CHECK_THROWS_AS(std::move(*reader).join(), bastion::proc_cancelled);
  CHECK(open_fds() == fds); // every socket (and the reactor's epoll and eventfd) closed
}

TEST_CASE("a socket may outlive its runtime", "[io][reactor]") {
  const auto fds = open_fds();
  std::optional<tcp_listener> kept;
  {
    bastion::runtime rt(two_workers());
    kept = rt.run([]() -> task<tcp_listener> {
      co_return tcp_listener::bind("127.0.0.1", 0);
    }());
    CHECK(kept->local_port() != 0);
  }
  CHECK(kept->is_open());
  kept->close(); // deregisters from the reactor the socket keeps alive
  CHECK_FALSE(kept->is_open());
  CHECK(open_fds() == fds);
}

TEST_CASE(
    "a late reactor wake is not a timeout: the wait returns, its caller retries", "[io][reactor]") {
  // The reactor bumps a socket's sequence, then takes the waiter's waker. A proc that saw the
  // bump first (its syscall succeeded without waiting) may park again before that take: the
  // take then wakes the new wait with no new edge. That wait must not report timed_out.
  using bastion::detail::io_dir;
  using bastion::detail::io_source;
  using bastion::detail::readiness_operation;
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
  auto* src = new io_source(sv[0]);
  std::optional<std::chrono::steady_clock::time_point> deadline;
  SECTION("without a deadline") {
  }
  SECTION("before its deadline") {
    deadline = std::chrono::steady_clock::now() + 60s;
  }
  {
    bastion::runtime rt{bastion::runtime_config{}.workers(1).pin_workers(false)};
    std::atomic<int> phase{0};
    auto waiter = [](io_source* s,
                     std::optional<std::chrono::steady_clock::time_point> dl,
                     std::atomic<int>& ph) -> task<int> {
      ph = 1;
      try {
        co_await readiness_operation(s, io_dir::read, s->seq(io_dir::read), dl, "read");
      } catch (const bastion::timed_out&) {
        co_return 2;
      }
      co_return 1;
    };
    auto h = rt.spawn(waiter(src, deadline, phase));
    REQUIRE(bastion::test::wait_until([&] { return phase.load() == 1; }, 10s));
    std::this_thread::sleep_for(20ms);     // let it park
    src->slot(io_dir::read).take().wake(); // the late take: no new edge
    CHECK(std::move(h).join() == 1);
  }
  src->close();
  ::close(sv[1]);
}
