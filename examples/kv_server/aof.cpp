// examples/kv_server/aof.cpp: a shard's append-only file (see aof.hpp).
#include "aof.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <system_error>
#include <utility>

namespace kv {

namespace {
[[noreturn]] void throw_errno(const char* what, const std::filesystem::path& p) {
  throw std::system_error(errno, std::generic_category(), std::string(what) + " " + p.string());
}

/// throw_errno for a call on `fd` that failed, closing `fd` first (errno kept).
[[noreturn]] void close_and_throw(int fd, const char* what, const std::filesystem::path& p) {
  const int err = errno;
  ::close(fd);
  errno = err;
  throw_errno(what, p);
}

void write_all(int fd, const char* data, std::size_t n, const std::filesystem::path& p) {
  while (n > 0) {
    const ssize_t w = ::write(fd, data, n);
    if (w < 0) {
      if (errno == EINTR) {
        continue;
      }
      throw_errno("write", p);
    }
    data += w;
    n -= static_cast<std::size_t>(w);
  }
}
} // namespace

aof_log::aof_log(std::filesystem::path path, bool enabled)
    : path_(std::move(path))
    , enabled_(enabled) {
  if (enabled_) {
    open_locked();
  }
}

aof_log::~aof_log() {
  if (fd_ >= 0) {
    ::close(fd_);
  }
}

void aof_log::open_locked() {
  const int fd = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    throw_errno("open", path_);
  }
  const off_t end = ::lseek(fd, 0, SEEK_END);
  if (end < 0) {
    close_and_throw(fd, "lseek", path_);
  }
  if (fd_ >= 0) {
    ::close(fd_);
  }
  fd_ = fd;
  end_ = static_cast<std::uint64_t>(end);
  // What the file held before is not ours to write back; drops start from its last page.
  writeback_to_ = page_floor(end_);
  dropped_to_ = writeback_to_;
}

void aof_log::release_written_locked() {
  // First drop what the previous call started writing back, by now most likely clean: the
  // kernel skips a page that is still dirty or under writeback (never losing it), and that
  // page stays cached. Then start the writeback of the full pages written since. The
  // partial last page waits for the next flush, which rewrites it (starting it now would
  // write it twice, and where pages must stay stable under I/O the next write would wait
  // for it). Both calls are hints: a failure changes nothing about durability, which
  // sync()'s fdatasync provides, so their results are ignored.
  if (writeback_to_ > dropped_to_) {
    (void)::posix_fadvise(
        fd_,
        static_cast<off_t>(dropped_to_),
        static_cast<off_t>(writeback_to_ - dropped_to_),
        POSIX_FADV_DONTNEED);
    dropped_to_ = writeback_to_;
  }
  const std::uint64_t full = page_floor(end_);
  if (full > writeback_to_) {
    (void)::sync_file_range(
        fd_,
        static_cast<off_t>(writeback_to_),
        static_cast<off_t>(full - writeback_to_),
        SYNC_FILE_RANGE_WRITE);
    writeback_to_ = full;
  }
}

bool aof_log::append(std::string_view records) {
  if (!enabled_ || records.empty()) {
    return false;
  }
  appended_.fetch_add(records.size(), std::memory_order_relaxed);
  std::lock_guard lock(buf_mu_);
  const bool was_empty = pending_.empty();
  pending_.append(records);
  return was_empty;
}

void aof_log::flush_locked() {
  {
    std::lock_guard lock(buf_mu_);
    if (writing_.empty()) {
      writing_.swap(pending_);
    } else {
      writing_.append(pending_);
      pending_.clear();
    }
  }
  if (writing_.empty()) {
    return;
  }
  std::size_t done = 0;
  try {
    while (done < writing_.size()) {
      const ssize_t w = ::write(fd_, writing_.data() + done, writing_.size() - done);
      if (w < 0) {
        if (errno == EINTR) {
          continue;
        }
        throw_errno("write", path_);
      }
      done += static_cast<std::size_t>(w);
      end_ += static_cast<std::uint64_t>(w);
    }
  } catch (...) {
    writing_.erase(0, done); // the rest is written first next time
    dirty_ = dirty_ || done > 0;
    throw;
  }
  writing_.clear();
  dirty_ = true;
  release_written_locked();
}

void aof_log::flush() {
  if (!enabled_) {
    return;
  }
  std::lock_guard lock(file_mu_);
  flush_locked();
}

void aof_log::sync() {
  if (!enabled_) {
    return;
  }
  std::lock_guard lock(file_mu_);
  flush_locked();
  if (dirty_) {
    if (::fdatasync(fd_) != 0) {
      throw_errno("fdatasync", path_);
    }
    dirty_ = false;
  }
}

std::string aof_log::load() {
  if (!enabled_) {
    return {};
  }
  std::lock_guard lock(file_mu_);
  flush_locked();
  const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    throw_errno("open", path_);
  }
  std::string data;
  struct stat st{};
  if (::fstat(fd, &st) == 0 && st.st_size > 0) {
    data.reserve(static_cast<std::size_t>(st.st_size));
  }
  char chunk[1 << 16];
  for (;;) {
    const ssize_t r = ::read(fd, chunk, sizeof chunk);
    if (r < 0) {
      if (errno == EINTR) {
        continue;
      }
      close_and_throw(fd, "read", path_);
    }
    if (r == 0) {
      break;
    }
    data.append(chunk, static_cast<std::size_t>(r));
  }
  ::close(fd);
  return data;
}

void aof_log::truncate(std::uint64_t bytes) {
  if (!enabled_) {
    return;
  }
  std::lock_guard lock(file_mu_);
  if (::ftruncate(fd_, static_cast<off_t>(bytes)) != 0) {
    throw_errno("ftruncate", path_);
  }
  end_ = bytes;
  writeback_to_ = std::min(writeback_to_, page_floor(bytes));
  dropped_to_ = std::min(dropped_to_, writeback_to_);
}

void aof_log::rewrite(std::string_view snapshot) {
  if (!enabled_) {
    return;
  }
  std::lock_guard lock(file_mu_);
  auto tmp = path_;
  tmp += ".rewrite";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    throw_errno("open", tmp);
  }
  try {
    write_all(fd, snapshot.data(), snapshot.size(), tmp);
    if (::fdatasync(fd) != 0) {
      throw_errno("fdatasync", tmp);
    }
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path_.c_str()) != 0) {
    throw_errno("rename", tmp);
  }
  if (const int dir = ::open(path_.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      dir >= 0) {
    (void)::fsync(dir); // make the rename durable
    ::close(dir);
  }
  open_locked();
  dirty_ = false;
  // Records queued meanwhile follow the snapshot (records are idempotent, so one that the
  // snapshot already reflects does no harm when replayed after it).
  flush_locked();
}

} // namespace kv
