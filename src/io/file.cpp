// src/io/file.cpp: bastion::io::file: each operation is one spawn_blocking call that holds
// a reference to the shared descriptor state and owns its buffers.
#include <bastion/executor/blocking.hpp>
#include <bastion/io/file.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <cerrno>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>

namespace bastion::io {

/// The descriptor and the path it was opened with. Shared by the file object and every
/// operation running on a blocking thread; the last reference closes the descriptor. `fd`
/// and `path` are written once, before the state is shared, and only read afterwards.
struct file::state {
  state(int f, std::filesystem::path p) noexcept
      : fd(f)
      , path(std::move(p)) {}
  state(const state&) = delete;
  state& operator=(const state&) = delete;
  ~state() { ::close(fd); } // errors ignored: see file::close()

  int fd;
  std::filesystem::path path;
};

namespace {

[[noreturn]] void throw_errno(int err, std::string_view op, const std::filesystem::path& p) {
  std::string what = "bastion::io::file: ";
  what += op;
  what += ' ';
  what += p.native();
  throw std::system_error(err, std::generic_category(), what);
}

[[noreturn]] void throw_closed(std::string_view op) {
  std::string what = "bastion::io::file: ";
  what += op;
  what += " on a closed file";
  throw std::system_error(std::make_error_code(std::errc::bad_file_descriptor), what);
}

int open_flags(open_mode mode) {
  switch (mode) {
  case open_mode::read:
    return O_RDONLY;
  case open_mode::write:
    return O_WRONLY | O_CREAT | O_TRUNC;
  case open_mode::append:
    return O_WRONLY | O_CREAT | O_APPEND;
  case open_mode::read_write:
    return O_RDWR | O_CREAT;
  }
  return O_RDONLY;
}

/// open(2) with EINTR retried; throws on failure.
int open_fd(const std::filesystem::path& p, int flags) {
  for (;;) {
    const int fd = ::open(p.c_str(), flags | O_CLOEXEC, 0644);
    if (fd >= 0) {
      return fd;
    }
    if (errno != EINTR) {
      throw_errno(errno, "open", p);
    }
  }
}

/// One read(2) of at most `n` bytes into `out` (appended); returns the bytes read.
std::size_t read_once(int fd, std::string& out, std::size_t n, const std::filesystem::path& p) {
  const auto old = out.size();
  out.resize(old + n);
  for (;;) {
    const auto got = ::read(fd, out.data() + old, n);
    if (got >= 0) {
      out.resize(old + static_cast<std::size_t>(got));
      return static_cast<std::size_t>(got);
    }
    if (errno != EINTR) {
      const int err = errno;
      out.resize(old);
      throw_errno(err, "read", p);
    }
  }
}

/// Reads until end of file; sizes the buffer from fstat when it can.
std::string read_all(int fd, const std::filesystem::path& p) {
  std::string out;
  struct stat st{};
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) {
    const auto here = ::lseek(fd, 0, SEEK_CUR);
    if (here >= 0 && here < st.st_size) {
      out.reserve(static_cast<std::size_t>(st.st_size - here) + 1);
    }
  }
  while (read_once(fd, out, file::read_chunk_bytes, p) != 0) {
  }
  return out;
}

/// write(2) until all of `data` is written.
void write_all(int fd, std::string_view data, const std::filesystem::path& p) {
  while (!data.empty()) {
    const auto put = ::write(fd, data.data(), data.size());
    if (put < 0) {
      if (errno == EINTR) {
        continue;
      }
      throw_errno(errno, "write", p);
    }
    data.remove_prefix(static_cast<std::size_t>(put));
  }
}

/// Owns a descriptor until it is handed to a state (or for read_file and write_file).
class fd_guard {
public:
  explicit fd_guard(int fd) noexcept
      : fd_(fd) {}
  fd_guard(const fd_guard&) = delete;
  fd_guard& operator=(const fd_guard&) = delete;
  ~fd_guard() {
    if (fd_ >= 0) {
      ::close(fd_);
    }
  }
  [[nodiscard]] int get() const noexcept { return fd_; }
  /// Gives up ownership (the descriptor now belongs to someone else).
  void release() noexcept { fd_ = -1; }

private:
  int fd_;
};

/// The shape of every operation on an open file: fails with bad_file_descriptor when `st`
/// is empty (a closed file), else runs `f(*st)` on the blocking pool. The task owns `st` from
/// its creation (it is a parameter, copied before the first suspension), so it never refers
/// to the file object; the blocking call drops it before publishing its result, so when the
/// file was closed meanwhile, the descriptor is closed by the time the awaiter resumes.
template <class State, class F>
auto blocking_op(std::shared_ptr<State> st, const char* op, F f)
    -> task<std::invoke_result_t<F&, State&>> {
  if (!st) {
    throw_closed(op);
  }
  // The job and its handle are named locals, never temporaries of the co_await expression:
  // g++-12 mis-destroys such temporaries in a coroutine frame (a heap corruption seen here).
  auto job = [st = std::move(st), f = std::move(f)]() mutable {
    const auto held = std::move(st);
    return f(*held);
  };
  auto h = spawn_blocking(std::move(job));
  co_return co_await std::move(h);
}

} // namespace

file::file() noexcept = default;
file::file(std::shared_ptr<state> s) noexcept
    : state_(std::move(s)) {
}
file::file(file&& o) noexcept = default;
file& file::operator=(file&& o) noexcept {
  if (this != &o) {
    state_ = std::move(o.state_);
    o.state_.reset();
  }
  return *this;
}
file::~file() = default;

void file::close() noexcept {
  state_.reset();
}

const std::filesystem::path& file::path() const noexcept {
  static const std::filesystem::path empty;
  return state_ ? state_->path : empty;
}

task<file> file::open(std::filesystem::path path, open_mode mode) {
  // The blocking call builds the shared state itself: if this proc is cancelled while
  // open(2) runs, the state sits in the discarded result and closes the descriptor.
  auto job = [p = std::move(path), flags = open_flags(mode)] {
    fd_guard fd{open_fd(p, flags)};
    auto s = std::make_shared<state>(fd.get(), p);
    fd.release();
    return s;
  };
  auto h = spawn_blocking(std::move(job)); // named: see blocking_op
  auto st = co_await std::move(h);
  co_return file{std::move(st)};
}

task<std::string> file::read(std::size_t max_bytes) {
  return blocking_op(state_, "read", [max_bytes](state& s) {
    std::string out;
    if (max_bytes > 0) {
      read_once(s.fd, out, max_bytes, s.path);
    }
    return out;
  });
}

task<std::string> file::read_to_end() {
  return blocking_op(state_, "read_to_end", [](state& s) { return read_all(s.fd, s.path); });
}

task<void> file::write(std::string data) {
  return blocking_op(
      state_, "write", [d = std::move(data)](state& s) { write_all(s.fd, d, s.path); });
}

task<void> file::sync() {
  return blocking_op(state_, "sync", [](state& s) {
    while (::fdatasync(s.fd) != 0) {
      if (errno != EINTR) {
        throw_errno(errno, "sync", s.path);
      }
    }
  });
}

task<std::uint64_t> file::size() {
  return blocking_op(state_, "size", [](state& s) {
    struct stat st{};
    if (::fstat(s.fd, &st) != 0) {
      throw_errno(errno, "size", s.path);
    }
    return static_cast<std::uint64_t>(st.st_size);
  });
}

task<void> file::truncate(std::uint64_t bytes) {
  return blocking_op(state_, "truncate", [bytes](state& s) {
    while (::ftruncate(s.fd, static_cast<off_t>(bytes)) != 0) {
      if (errno != EINTR) {
        throw_errno(errno, "truncate", s.path);
      }
    }
  });
}

task<std::string> read_file(std::filesystem::path path) {
  auto job = [p = std::move(path)] {
    const fd_guard fd{open_fd(p, O_RDONLY)};
    return read_all(fd.get(), p);
  };
  auto h = spawn_blocking(std::move(job)); // named: see blocking_op
  co_return co_await std::move(h);
}

task<void> write_file(std::filesystem::path path, std::string data) {
  auto job = [p = std::move(path), d = std::move(data)] {
    const fd_guard fd{open_fd(p, O_WRONLY | O_CREAT | O_TRUNC)};
    write_all(fd.get(), d, p);
  };
  auto h = spawn_blocking(std::move(job)); // named: see blocking_op
  co_await std::move(h);
}

} // namespace bastion::io
