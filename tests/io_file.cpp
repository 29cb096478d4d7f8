// tests/io_file.cpp: async files on the blocking pool (include/bastion/io/file.hpp): round
// trips, modes, large reads, size/truncate/sync, errors, closed files, descriptor leaks, and
// cancellation of a proc whose operation is still running on a blocking thread.
#include <bastion/config.hpp>

#include <bastion/executor/runtime.hpp>
#include <bastion/executor/runtime_config.hpp>
#include <bastion/executor/spawn.hpp>
#include <bastion/executor/stats.hpp>
#include <bastion/io/file.hpp>
#include <bastion/lightproc/errors.hpp>
#include <bastion/lightproc/join_handle.hpp>
#include <bastion/lightproc/task.hpp>

#include "support.hpp"

#include <catch2/catch.hpp>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace {

using namespace bastion::test;
using namespace std::chrono_literals;

using bastion::task;
using bastion::io::file;
using bastion::io::open_mode;
namespace fs = std::filesystem;

/// Entries of /proc/self/fd (the directory's own descriptor included, every time alike).
std::size_t open_fds() {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator("/proc/self/fd")) {
    ++n;
  }
  return n;
}

/// A fresh directory under the system temp dir, removed with everything in it at the end.
class scratch_dir {
public:
  scratch_dir() {
    static std::atomic<int> seq{0};
    path_ = fs::temp_directory_path()
            / ("bastion-io-file-" + std::to_string(::getpid()) + "-"
               + std::to_string(seq.fetch_add(1)));
    fs::create_directories(path_);
  }
  scratch_dir(const scratch_dir&) = delete;
  scratch_dir& operator=(const scratch_dir&) = delete;
  ~scratch_dir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  [[nodiscard]] fs::path operator/(const std::string& name) const { return path_ / name; }
  [[nodiscard]] const fs::path& path() const noexcept { return path_; }

private:
  fs::path path_;
};

/// `n` bytes of a pattern that never repeats at a chunk boundary.
std::string pattern(std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) {
    s[i] = static_cast<char>('a' + (i * 7 + i / 251) % 26);
  }
  return s;
}

/// What a proc saw, checked on the test thread (Catch2 is not thread-safe).
struct round_trip_report {
  std::string first3;
  std::string rest;
  std::string at_eof;
  std::string zero;
  std::string whole;
  bool open_while_in_use = false;
  std::string path;
};

task<round_trip_report> write_then_read(fs::path p) {
  round_trip_report r;
  {
    auto f = co_await file::open(p, open_mode::write);
    r.open_while_in_use = f.is_open();
    r.path = f.path().native();
    co_await f.write("hello, ");
    co_await f.write("world");
  } // closed here
  auto f = co_await file::open(p, open_mode::read);
  r.first3 = co_await f.read(3);
  r.rest = co_await f.read(1000);
  r.at_eof = co_await f.read(1000);
  r.zero = co_await f.read(0);
  r.whole = co_await bastion::io::read_file(p);
  co_return r;
}

task<std::string> append_twice(fs::path p) {
  co_await bastion::io::write_file(p, "abc");
  {
    auto f = co_await file::open(p, open_mode::append);
    co_await f.write("def");
    co_await f.write("gh");
  }
  {
    auto f = co_await file::open(p, open_mode::append); // reopening appends too
    co_await f.write("!");
  }
  co_return co_await bastion::io::read_file(p);
}

task<std::uint64_t> reopen_for_write_truncates(fs::path p) {
  auto f = co_await file::open(p, open_mode::write);
  co_return co_await f.size();
}

struct big_read_report {
  std::string head;
  std::string rest;
  std::string again;
  std::string whole;
};

task<big_read_report> read_big(fs::path p, std::string data) {
  co_await bastion::io::write_file(p, std::move(data));
  big_read_report r;
  auto f = co_await file::open(p, open_mode::read);
  r.head = co_await f.read(10);
  r.rest = co_await f.read_to_end();
  r.again = co_await f.read_to_end(); // at end: nothing left
  r.whole = co_await bastion::io::read_file(p);
  co_return r;
}

struct size_report {
  std::uint64_t empty = 1;
  std::uint64_t written = 0;
  std::uint64_t shrunk = 0;
  std::uint64_t grown = 0;
  std::string content;
};

task<size_report> size_and_truncate(fs::path p) {
  size_report r;
  auto f = co_await file::open(p, open_mode::read_write);
  r.empty = co_await f.size();
  co_await f.write(pattern(1000));
  co_await f.sync();
  r.written = co_await f.size();
  co_await f.truncate(10);
  r.shrunk = co_await f.size();
  co_await f.truncate(20); // extends with zeros
  r.grown = co_await f.size();
  co_await f.sync();
  f.close();
  r.content = co_await bastion::io::read_file(p);
  co_return r;
}

task<void> open_read(fs::path p) {
  auto f = co_await file::open(p, open_mode::read);
  (void)f;
}

task<void> write_to_read_only(fs::path p) {
  auto f = co_await file::open(p, open_mode::read);
  co_await f.write("nope");
}

/// Which operations on `f` threw bad_file_descriptor (one bit each).
task<int> every_op_fails(file f) {
  int failed = 0;
  auto check = [&failed](int bit, const std::system_error& e) {
    if (e.code() == std::errc::bad_file_descriptor) {
      failed |= bit;
    }
  };
  try {
    (void)co_await f.read(1);
  } catch (const std::system_error& e) {
    check(1, e);
  }
  try {
    (void)co_await f.read_to_end();
  } catch (const std::system_error& e) {
    check(2, e);
  }
  try {
    co_await f.write("x");
  } catch (const std::system_error& e) {
    check(4, e);
  }
  try {
    co_await f.sync();
  } catch (const std::system_error& e) {
    check(8, e);
  }
  try {
    (void)co_await f.size();
  } catch (const std::system_error& e) {
    check(16, e);
  }
  try {
    co_await f.truncate(0);
  } catch (const std::system_error& e) {
    check(32, e);
  }
  co_return failed;
}

task<file> open_then_close(fs::path p) {
  auto f = co_await file::open(p, open_mode::read_write);
  f.close();
  f.close(); // idempotent
  co_return f;
}

task<file> moved_from(fs::path p) {
  auto f = co_await file::open(p, open_mode::read_write);
  file g = std::move(f);
  co_return f; // NOLINT(bugprone-use-after-move): the moved-from file is the subject
}

/// A cycle of every kind of operation, successes and failures.
task<int> churn(fs::path dir, int rounds) {
  int ok = 0;
  for (int i = 0; i < rounds; ++i) {
    const auto p = dir / ("churn-" + std::to_string(i % 4));
    {
      auto f = co_await file::open(p, open_mode::write);
      co_await f.write(pattern(100 + static_cast<std::size_t>(i)));
    }
    {
      auto f = co_await file::open(p, open_mode::read_write);
      co_await f.truncate(50);
      ok += (co_await f.read_to_end()).size() == 50 ? 1 : 0;
    }
    try {
      co_await open_read(dir / "missing");
    } catch (const std::system_error&) {
      ++ok;
    }
    co_await bastion::io::write_file(p, "x");
    ok += (co_await bastion::io::read_file(p)) == "x" ? 1 : 0;
  }
  co_return ok;
}

/// Opens `p` in `mode` and then reads from it: blocks on a FIFO until someone writes.
task<std::size_t> open_and_read(fs::path p, open_mode mode, std::atomic<bool>* opened) {
  auto f = co_await file::open(p, mode);
  opened->store(true);
  co_return (co_await f.read(100)).size();
}

/// Opens the write end of a FIFO without blocking; -1 while no reader has it open.
int open_fifo_writer(const fs::path& p) {
  return ::open(p.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
}

/// True once exactly one blocking job is running and none waits for a thread.
bool one_blocking_job_running(const bastion::runtime& rt) {
  const auto b = rt.stats().blocking;
  return b.threads - b.idle_threads == 1 && b.queued == 0;
}

} // namespace

TEST_CASE("write then read: a round trip through the blocking pool", "[io][file]") {
  bastion::runtime rt{workers(2)};
  scratch_dir dir;
  const auto p = dir / "round-trip.txt";
  const auto r = rt.run(write_then_read(p));
  REQUIRE(r.open_while_in_use);
  REQUIRE(r.path == p.native());
  REQUIRE(r.first3 == "hel");
  REQUIRE(r.rest == "lo, world");
  REQUIRE(r.at_eof.empty());
  REQUIRE(r.zero.empty());
  REQUIRE(r.whole == "hello, world");
  // From a spawned proc too.
  REQUIRE(rt.spawn(write_then_read(dir / "spawned.txt")).join().whole == "hello, world");
}

TEST_CASE("append mode appends; write mode truncates", "[io][file]") {
  bastion::runtime rt{workers(2)};
  scratch_dir dir;
  const auto p = dir / "append.txt";
  REQUIRE(rt.run(append_twice(p)) == "abcdefgh!");
  REQUIRE(rt.run(reopen_for_write_truncates(p)) == 0);
}

TEST_CASE("read_to_end reads a file larger than one read chunk", "[io][file]") {
  bastion::runtime rt{workers(2)};
  scratch_dir dir;
  const std::size_t n = 3 * file::read_chunk_bytes + 12'345;
  const auto data = pattern(n);
  const auto r = rt.run(read_big(dir / "big.bin", data));
  REQUIRE(r.head == data.substr(0, 10));
  REQUIRE(r.rest.size() == n - 10);
  REQUIRE(r.rest == data.substr(10));
  REQUIRE(r.again.empty());
  REQUIRE(r.whole == data);
}

TEST_CASE("size, truncate and sync", "[io][file]") {
  bastion::runtime rt{workers(2)};
  scratch_dir dir;
  const auto r = rt.run(size_and_truncate(dir / "sized.bin"));
  REQUIRE(r.empty == 0);
  REQUIRE(r.written == 1000);
  REQUIRE(r.shrunk == 10);
  REQUIRE(r.grown == 20);
  REQUIRE(r.content == pattern(10) + std::string(10, '\0'));
}

TEST_CASE("errors carry the errno and the path", "[io][file]") {
  bastion::runtime rt{workers(2)};
  scratch_dir dir;
  const auto missing = dir / "no-such-file";
  try {
    rt.run(open_read(missing));
    FAIL("opening a missing file for reading did not throw");
  } catch (const std::system_error& e) {
    REQUIRE(e.code() == std::errc::no_such_file_or_directory);
    REQUIRE(e.code().value() == ENOENT);
    REQUIRE(e.code().category() == std::generic_category());
    const std::string what = e.what();
    CAPTURE(what);
    REQUIRE(what.find("bastion::io::file: open") != std::string::npos);
    REQUIRE(what.find(missing.native()) != std::string::npos);
  }
  // A missing directory, from a spawned proc.
  try {
    rt.spawn(open_read(dir / "no-dir" / "x")).join();
    FAIL("opening in a missing directory did not throw");
  } catch (const std::system_error& e) {
    REQUIRE(e.code() == std::errc::no_such_file_or_directory);
  }
  // The kernel refuses a write on a read-only descriptor.
  const auto ro = dir / "read-only.txt";
  rt.run(bastion::io::write_file(ro, "data"));
  try {
    rt.run(write_to_read_only(ro));
    FAIL("writing to a file opened read-only did not throw");
  } catch (const std::system_error& e) {
    REQUIRE(e.code() == std::errc::bad_file_descriptor);
    REQUIRE(std::string{e.what()}.find("bastion::io::file: write") != std::string::npos);
  }
  REQUIRE_THROWS_AS(rt.run(bastion::io::read_file(missing)), std::system_error);
}

TEST_CASE("every operation on a closed file throws bad_file_descriptor", "[io][file]") {
  bastion::runtime rt{workers(2)};
  scratch_dir dir;
  constexpr int all = 63;
  file empty;
  REQUIRE_FALSE(empty.is_open());
  REQUIRE(empty.path().empty());
  REQUIRE(rt.run(every_op_fails(file{})) == all);

  auto closed = rt.run(open_then_close(dir / "closed.txt"));
  REQUIRE_FALSE(closed.is_open());
  REQUIRE(closed.path().empty());
  REQUIRE(rt.run(every_op_fails(std::move(closed))) == all);

  auto moved = rt.run(moved_from(dir / "moved.txt"));
  REQUIRE_FALSE(moved.is_open());
  REQUIRE(rt.run(every_op_fails(std::move(moved))) == all);
}

TEST_CASE("no descriptor leaks across opens, errors and closes", "[io][file][leak]") {
  bastion::runtime rt{workers(2)};
  scratch_dir dir;
  rt.run(bastion::io::write_file(dir / "warm-up", "x")); // the pool's first thread
  const auto baseline = open_fds();
  constexpr int rounds = BASTION_TSAN ? 20 : 100;
  REQUIRE(rt.run(churn(dir.path(), rounds)) == 3 * rounds);
  REQUIRE(open_fds() == baseline);

  // A task holds the descriptor from its creation: closing the file, even destroying it,
  // before the task is awaited leaves the task working; the descriptor closes after it.
  auto f = rt.run(file::open(dir / "held.txt", open_mode::read_write));
  REQUIRE(open_fds() == baseline + 1);
  auto write = f.write("still works");
  auto size = f.size();
  f.close();
  REQUIRE(open_fds() == baseline + 1);
  rt.run(std::move(write));
  REQUIRE(rt.run(std::move(size)) == 11);
  REQUIRE(open_fds() == baseline);
  {
    auto g = rt.run(file::open(dir / "held.txt", open_mode::read));
    auto never_awaited = g.read(5);
    g.close();
    REQUIRE(open_fds() == baseline + 1);
  } // the unstarted task is destroyed with its reference
  REQUIRE(open_fds() == baseline);
}

TEST_CASE(
    "cancelling a proc whose operation runs on a blocking thread leaks nothing",
    "[io][file][leak][cancel]") {
  bastion::runtime rt{workers(2)};
  scratch_dir dir;
  const auto fifo = dir / "fifo";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  rt.run(bastion::io::write_file(dir / "warm-up", "x"));
  REQUIRE(eventually(
      [&] { return rt.stats().blocking.threads - rt.stats().blocking.idle_threads == 0; }));
  const auto baseline = open_fds();

  SECTION("cancelled while open(2) blocks") {
    // Opening a FIFO for reading blocks until a writer comes.
    std::atomic<bool> opened{false};
    const auto done_before = rt.stats().blocking.completed;
    auto h = rt.spawn(open_and_read(fifo, open_mode::read, &opened));
    REQUIRE(eventually([&] { return one_blocking_job_running(rt); }));
    h.cancel();
    REQUIRE(eventually([&] { return h.is_finished(); }));
    REQUIRE_THROWS_AS(std::move(h).join(), bastion::proc_cancelled);
    // Let the open return: it yields a descriptor nobody awaits any more.
    int writer = -1;
    REQUIRE(eventually([&] { return (writer = open_fifo_writer(fifo)) >= 0; }));
    REQUIRE(eventually([&] { return rt.stats().blocking.completed > done_before; }));
    ::close(writer);
    REQUIRE_FALSE(opened.load());
    REQUIRE(eventually([&] { return open_fds() == baseline; }));
  }

  SECTION("cancelled while read(2) blocks") {
    // Read-write on a FIFO opens at once; the read blocks until someone writes.
    std::atomic<bool> opened{false};
    auto h = rt.spawn(open_and_read(fifo, open_mode::read_write, &opened));
    REQUIRE(eventually([&] { return opened.load() && one_blocking_job_running(rt); }));
    const auto done_before = rt.stats().blocking.completed;
    h.cancel();
    REQUIRE(eventually([&] { return h.is_finished(); }));
    REQUIRE_THROWS_AS(std::move(h).join(), bastion::proc_cancelled);
    // The proc's frame is gone, but the read still runs: it keeps the descriptor open.
    REQUIRE(open_fds() == baseline + 1);
    const int writer = open_fifo_writer(fifo);
    REQUIRE(writer >= 0);
    REQUIRE(::write(writer, "x", 1) == 1);
    REQUIRE(eventually([&] { return rt.stats().blocking.completed > done_before; }));
    ::close(writer);
    REQUIRE(eventually([&] { return open_fds() == baseline; }));
  }
}
