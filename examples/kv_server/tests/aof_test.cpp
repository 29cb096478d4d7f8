// examples/kv_server/tests/aof_test.cpp: a shard's append-only file (aof.hpp): what was
// appended survives a shard restart (load() writes the buffer first), flush/sync, truncate,
// rewrite, and the disabled log.
#include "aof.hpp"
#include "keyspace.hpp"

#include <catch2/catch.hpp>
#include <fcntl.h>
#include <fmt/format.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace {

/// A fresh temporary directory, removed at the end of the test.
struct temp_dir {
  temp_dir() {
    path = std::filesystem::temp_directory_path()
           / fmt::format("kv-aof-test-{}-{}", ::getpid(), counter++);
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~temp_dir() { std::filesystem::remove_all(path); }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  std::filesystem::path path;
  static inline int counter = 0;
};

std::string file_contents(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// How many of the first `bytes` bytes' pages of `p` are in the page cache (mincore(2)).
std::size_t resident_pages(const std::filesystem::path& p, std::size_t bytes) {
  const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  void* map = ::mmap(nullptr, bytes, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  REQUIRE(map != MAP_FAILED);
  const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  std::vector<unsigned char> in_core((bytes + page - 1) / page);
  const int rc = ::mincore(map, bytes, in_core.data());
  ::munmap(map, bytes);
  REQUIRE(rc == 0);
  std::size_t n = 0;
  for (const unsigned char c : in_core) {
    n += c & 1U;
  }
  return n;
}

} // namespace

TEST_CASE("appended records are in load() even before any flush") {
  temp_dir dir;
  const auto p = dir.path / "shard-0.aof";
  kv::aof_log log(p, true);
  std::string rec;
  kv::append_set_record(rec, "k", "v", 0);
  CHECK(log.append(rec));          // the buffer was empty: the caller asks for a flush
  CHECK_FALSE(log.append(rec));    // not empty any more
  CHECK(file_contents(p).empty()); // still in memory only
  // A restarted shard loads: the buffer is written first, then the file is read.
  CHECK(log.load() == rec + rec);
  CHECK(file_contents(p) == rec + rec);
  CHECK(log.appended_bytes() == 2 * rec.size());
}

TEST_CASE("flush and sync write the buffer; a reopened log appends") {
  temp_dir dir;
  const auto p = dir.path / "a.aof";
  std::string a;
  std::string b;
  kv::append_set_record(a, "a", "1", 0);
  kv::append_del_record(b, "a");
  {
    kv::aof_log log(p, true);
    log.append(a);
    log.flush();
    CHECK(file_contents(p) == a);
    log.append(b);
    log.sync();
    CHECK(file_contents(p) == a + b);
  }
  kv::aof_log again(p, true);
  again.append(a);
  CHECK(again.load() == a + b + a);
}

TEST_CASE("truncate drops a torn tail; rewrite replaces the file and keeps queued records") {
  temp_dir dir;
  const auto p = dir.path / "t.aof";
  kv::aof_log log(p, true);
  std::string good;
  kv::append_set_record(good, "k", "v", 0);
  log.append(good + "*3\r\n$3\r\nSET\r\n$1");
  kv::keyspace ks;
  std::string data = log.load();
  const auto r = kv::replay(data, ks, 0);
  REQUIRE(r.torn_tail);
  log.truncate(r.valid_bytes);
  CHECK(file_contents(p) == good);

  std::string snapshot;
  kv::append_set_record(snapshot, "only", "this", 0);
  std::string queued;
  kv::append_del_record(queued, "k");
  log.append(queued);
  log.rewrite(snapshot);
  CHECK(file_contents(p) == snapshot + queued);
  CHECK_FALSE(std::filesystem::exists(dir.path / "t.aof.rewrite"));
  std::string more;
  kv::append_del_record(more, "only");
  log.append(more);
  log.flush();
  CHECK(file_contents(p) == snapshot + queued + more); // appends go to the new file
}

TEST_CASE("what a flush wrote leaves the page cache at a later flush once written back") {
  temp_dir dir;
  struct statfs fs{};
  REQUIRE(::statfs(dir.path.c_str(), &fs) == 0);
  if (fs.f_type == TMPFS_MAGIC) {
    WARN("the temporary directory is on tmpfs, which has no writeback: nothing to drop");
    return;
  }
  const auto p = dir.path / "cache.aof";
  kv::aof_log log(p, true);
  constexpr std::size_t bytes = std::size_t{1} << 20;
  std::string big;
  kv::append_set_record(big, "big", std::string(bytes, 'v'), 0);
  log.append(big);
  log.sync(); // written and clean, still cached
  const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  const std::size_t full_pages = big.size() / page;
  if (resident_pages(p, full_pages * page) != full_pages) {
    WARN("this file system does not keep written pages cached (ramfs, DAX, direct I/O?)");
    return;
  }
  std::string small;
  kv::append_del_record(small, "big");
  log.append(small);
  log.flush(); // drops what the previous flush started writing back
  CHECK(resident_pages(p, full_pages * page) == 0);
  CHECK(log.load() == big + small); // dropped from the cache, not from the file
}

TEST_CASE("a disabled log keeps nothing") {
  temp_dir dir;
  const auto p = dir.path / "off.aof";
  kv::aof_log log(p, false);
  CHECK_FALSE(log.append("*1\r\n$8\r\nFLUSHALL\r\n"));
  log.sync();
  CHECK(log.load().empty());
  CHECK_FALSE(std::filesystem::exists(p));
}

TEST_CASE("an unwritable path throws std::system_error naming it") {
  temp_dir dir;
  const auto p = dir.path / "missing" / "x.aof";
  try {
    kv::aof_log log(p, true);
    FAIL("expected std::system_error");
  } catch (const std::system_error& e) {
    CHECK(std::string(e.what()).find(p.string()) != std::string::npos);
  }
}
