// src/io/tcp.cpp: tcp_stream and tcp_listener on the reactor.
#include <bastion/executor/blocking.hpp>
#include <bastion/io/tcp.hpp>
#include <bastion/lightproc/errors.hpp>

#include "../executor/runtime_impl.hpp"
#include "reactor.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <coroutine>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace bastion::io {

namespace {

using detail::io_dir;
using detail::io_source;
using detail::readiness_operation;
using time_point = std::chrono::steady_clock::time_point;

[[noreturn]] void throw_errno(int err, const std::string& what) {
  throw std::system_error(err, std::generic_category(), "bastion::io: " + what);
}

/// A reference to a source held for the length of one operation (so that close() from
/// another proc cannot free it, nor let its fd be reused, under the operation).
class source_ref {
public:
  /// Takes a reference on `s` and registers it with the reactor of the runtime running the
  /// current proc. Throws bad_file_descriptor when closed, logic_error outside a proc.
  source_ref(io_source* s, const char* op)
      : s_(s) {
    if (s_ == nullptr || s_->closed()) {
      throw std::system_error(
          std::make_error_code(std::errc::bad_file_descriptor),
          std::string("bastion::io: ") + op + " on a closed socket");
    }
    auto* cur = detail::current_proc();
    if (cur == nullptr) {
      throw std::logic_error(std::string("bastion::io: ") + op + " awaited outside a bastion proc");
    }
    s_->ensure_registered(cur->rt_);
    s_->add_ref();
  }
  source_ref(const source_ref&) = delete;
  source_ref& operator=(const source_ref&) = delete;
  ~source_ref() { s_->release(); }
  io_source* operator->() const noexcept { return s_; }
  io_source* get() const noexcept { return s_; }

private:
  io_source* s_;
};

int new_socket(int family) {
  const int fd = ::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    throw_errno(errno, "socket");
  }
  return fd;
}

std::string format_address(const sockaddr_storage& ss) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    const auto& a = reinterpret_cast<const sockaddr_in&>(ss);
    ::inet_ntop(AF_INET, &a.sin_addr, buf, sizeof buf);
    return fmt::format("{}:{}", buf, ntohs(a.sin_port));
  }
  if (ss.ss_family == AF_INET6) {
    const auto& a = reinterpret_cast<const sockaddr_in6&>(ss);
    ::inet_ntop(AF_INET6, &a.sin6_addr, buf, sizeof buf);
    return fmt::format("[{}]:{}", buf, ntohs(a.sin6_port));
  }
  return {};
}

/// A numeric address for `host`:`port`, or nullopt when `host` is not numeric.
std::optional<sockaddr_storage> numeric_address(const std::string& host, std::uint16_t port) {
  sockaddr_storage ss{};
  auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
  if (::inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    return ss;
  }
  ss = sockaddr_storage{};
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (::inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    return ss;
  }
  return std::nullopt;
}

socklen_t length_of(const sockaddr_storage& ss) {
  return ss.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
}

/// Resolves `host` with getaddrinfo (blocking: runs on the blocking pool).
std::vector<sockaddr_storage> resolve(const std::string& host, std::uint16_t port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const std::string service = std::to_string(port);
  if (const int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &res); rc != 0) {
    throw std::system_error(
        std::make_error_code(std::errc::host_unreachable),
        "bastion::io: cannot resolve '" + host + "': " + ::gai_strerror(rc));
  }
  std::vector<sockaddr_storage> out;
  for (auto* ai = res; ai != nullptr; ai = ai->ai_next) {
    sockaddr_storage ss{};
    std::memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
    out.push_back(ss);
  }
  ::freeaddrinfo(res);
  return out;
}

std::optional<time_point> deadline_of(std::optional<std::chrono::nanoseconds> limit) {
  if (!limit) {
    return std::nullopt;
  }
  return std::chrono::steady_clock::now()
         + std::chrono::duration_cast<std::chrono::steady_clock::duration>(*limit);
}

} // namespace
} // namespace bastion::io

namespace bastion::detail {

/// The operations, with access to the streams' sources. Each is one coroutine whose waits
/// are plain awaiters (no frame per wait).
struct tcp_access {
  using stream = io::tcp_stream;
  using listener = io::tcp_listener;

  static stream adopt(int fd) {
    stream s;
    s.src_ = new io_source(fd);
    return s;
  }

  static task<std::size_t>
  read(stream& self, std::span<char> buf, std::optional<std::chrono::nanoseconds> limit) {
    io::source_ref s(self.src_, "read");
    const auto deadline = io::deadline_of(limit);
    if (buf.empty()) {
      co_return 0;
    }
    for (;;) {
      const auto seen = s->seq(io_dir::read);
      // After a short read with no edge since, recv would say EAGAIN: wait at once.
      const bool skipped = s->would_block(seen);
      if (!skipped) {
        const ssize_t n = ::recv(s->fd(), buf.data(), buf.size(), 0);
        if (n > 0 && static_cast<std::size_t>(n) < buf.size()) {
          s->note_drained(seen);
          co_return static_cast<std::size_t>(n);
        }
        s->note_not_drained();
        if (n >= 0) {
          co_return static_cast<std::size_t>(n);
        }
        const int err = errno;
        if (err == EINTR) {
          continue;
        }
        if (err != EAGAIN && err != EWOULDBLOCK) {
          io::throw_errno(err, "read");
        }
      }
      try {
        co_await readiness_operation(s.get(), io_dir::read, seen, deadline, "read");
      } catch (const timed_out&) {
        if (!skipped) {
          throw;
        }
        // Bytes may be queued with their edge not polled yet: recv decides (on EAGAIN this
        // wait, its deadline passed, throws timed_out).
        s->note_not_drained();
      }
    }
  }

  static task<void>
  write(stream& self, std::span<const char> data, std::optional<std::chrono::nanoseconds> limit) {
    io::source_ref s(self.src_, "write");
    const auto deadline = io::deadline_of(limit);
    std::size_t off = 0;
    while (off < data.size()) {
      const auto seen = s->seq(io_dir::write);
      const ssize_t n = ::send(s->fd(), data.data() + off, data.size() - off, MSG_NOSIGNAL);
      if (n >= 0) {
        off += static_cast<std::size_t>(n);
        continue;
      }
      const int err = errno;
      if (err == EINTR) {
        continue;
      }
      if (err != EAGAIN && err != EWOULDBLOCK) {
        io::throw_errno(err, "write");
      }
      co_await readiness_operation(s.get(), io_dir::write, seen, deadline, "write");
    }
  }

  static task<stream> connect_one(sockaddr_storage addr, std::optional<io::time_point> deadline) {
    stream out = adopt(io::new_socket(addr.ss_family));
    io::source_ref s(out.src_, "connect");
    if (::connect(s->fd(), reinterpret_cast<const sockaddr*>(&addr), io::length_of(addr)) == 0) {
      co_return out;
    }
    if (errno != EINPROGRESS && errno != EINTR) {
      io::throw_errno(errno, "connect to " + io::format_address(addr));
    }
    // A fresh socket reports an edge when it is registered, before it is connected: each
    // wake is only a hint. Snapshot, check the outcome, and wait only while still connecting.
    for (;;) {
      const auto seen = s->seq(io_dir::write);
      int err = 0;
      socklen_t len = sizeof err;
      if (::getsockopt(s->fd(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
        err = errno;
      }
      if (err != 0) {
        io::throw_errno(err, "connect to " + io::format_address(addr));
      }
      sockaddr_storage peer{};
      socklen_t plen = sizeof peer;
      if (::getpeername(s->fd(), reinterpret_cast<sockaddr*>(&peer), &plen) == 0) {
        co_return out;
      }
      if (errno != ENOTCONN) {
        io::throw_errno(errno, "connect to " + io::format_address(addr));
      }
      co_await readiness_operation(s.get(), io_dir::write, seen, deadline, "connect");
    }
  }

  static task<stream>
  connect(std::string host, std::uint16_t port, std::optional<std::chrono::nanoseconds> limit) {
    if (host.empty()) {
      throw std::invalid_argument("bastion::io::tcp_stream::connect: the host is empty");
    }
    if (port == 0) {
      throw std::invalid_argument("bastion::io::tcp_stream::connect: port 0 (for " + host + ")");
    }
    const auto deadline = io::deadline_of(limit);
    std::vector<sockaddr_storage> addrs;
    if (auto a = io::numeric_address(host, port)) {
      addrs.push_back(*a);
    } else {
      // Named job and handle: g++-12 mis-destroys a temporary with a non-trivial destructor
      // (this lambda holds a std::string) inside a co_await operand.
      auto job = [host, port] {
        return io::resolve(host, port);
      };
      auto h = spawn_blocking(std::move(job));
      addrs = co_await std::move(h);
    }
    std::exception_ptr last;
    for (const auto& a : addrs) {
      try {
        co_return co_await connect_one(a, deadline);
      } catch (const timed_out&) {
        throw;
      } catch (const std::system_error&) {
        last = std::current_exception();
      }
    }
    if (last) {
      std::rethrow_exception(last);
    }
    throw std::system_error(
        std::make_error_code(std::errc::host_unreachable),
        "bastion::io: '" + host + "' has no address");
  }

  static task<stream> accept(listener& self, std::optional<std::chrono::nanoseconds> limit) {
    io::source_ref s(self.src_, "accept");
    const auto deadline = io::deadline_of(limit);
    for (;;) {
      const auto seen = s->seq(io_dir::read);
      const int fd = ::accept4(s->fd(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd >= 0) {
        co_return adopt(fd);
      }
      const int err = errno;
      if (err == EINTR || err == ECONNABORTED) {
        continue;
      }
      if (err != EAGAIN && err != EWOULDBLOCK) {
        io::throw_errno(err, "accept");
      }
      co_await readiness_operation(s.get(), io_dir::read, seen, deadline, "accept");
    }
  }

  static io_source* source(const stream& s) noexcept { return s.src_; }
  static io_source* source(const listener& l) noexcept { return l.src_; }
  static void set_source(listener& l, io_source* src) noexcept { l.src_ = src; }
};

} // namespace bastion::detail

namespace bastion::io {

using detail::tcp_access;

// ---------------------------------------------------------------- tcp_stream ----

tcp_stream::tcp_stream(int fd) {
  if (fd < 0) {
    throw std::invalid_argument(
        "bastion::io::tcp_stream: negative file descriptor " + std::to_string(fd));
  }
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
    const int err = errno;
    ::close(fd);
    throw_errno(err, "fcntl(O_NONBLOCK)");
  }
  src_ = new detail::io_source(fd);
  int domain = 0;
  socklen_t len = sizeof domain;
  if (::getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0
      || (domain != AF_INET && domain != AF_INET6)) {
    src_->never_skip_recv(); // a unix stream's recv may stop short with bytes queued
  }
}

tcp_stream::tcp_stream(tcp_stream&& o) noexcept
    : src_(std::exchange(o.src_, nullptr)) {
}

tcp_stream& tcp_stream::operator=(tcp_stream&& o) noexcept {
  if (this != &o) {
    close();
    src_ = std::exchange(o.src_, nullptr);
  }
  return *this;
}

tcp_stream::~tcp_stream() {
  close();
}

task<tcp_stream> tcp_stream::connect(std::string host, std::uint16_t port) {
  return tcp_access::connect(std::move(host), port, std::nullopt);
}

task<tcp_stream>
tcp_stream::connect(std::string host, std::uint16_t port, std::chrono::nanoseconds limit) {
  return tcp_access::connect(std::move(host), port, limit);
}

task<std::size_t> tcp_stream::read_some(std::span<char> buf) {
  return tcp_access::read(*this, buf, std::nullopt);
}

task<std::size_t> tcp_stream::read_some(std::span<char> buf, std::chrono::nanoseconds limit) {
  return tcp_access::read(*this, buf, limit);
}

task<void> tcp_stream::read_exact(std::span<char> buf) {
  std::size_t got = 0;
  while (got < buf.size()) {
    const std::size_t n = co_await read_some(buf.subspan(got));
    if (n == 0) {
      throw std::system_error(
          std::make_error_code(std::errc::connection_aborted),
          "bastion::io: read_exact: the stream ended after " + std::to_string(got) + " of "
              + std::to_string(buf.size()) + " bytes");
    }
    got += n;
  }
}

task<void> tcp_stream::write_all(std::span<const char> data) {
  return tcp_access::write(*this, data, std::nullopt);
}

task<void> tcp_stream::write_all(std::span<const char> data, std::chrono::nanoseconds limit) {
  return tcp_access::write(*this, data, limit);
}

void tcp_stream::shutdown_write() {
  if (src_ == nullptr) {
    throw std::system_error(
        std::make_error_code(std::errc::bad_file_descriptor),
        "bastion::io: shutdown_write on a closed socket");
  }
  if (::shutdown(src_->fd(), SHUT_WR) != 0) {
    throw_errno(errno, "shutdown(SHUT_WR)");
  }
}

void tcp_stream::close() noexcept {
  if (auto* s = std::exchange(src_, nullptr)) {
    s->close();
  }
}

void tcp_stream::set_nodelay(bool on) {
  if (src_ == nullptr) {
    throw std::system_error(
        std::make_error_code(std::errc::bad_file_descriptor),
        "bastion::io: set_nodelay on a closed socket");
  }
  const int v = on ? 1 : 0;
  if (::setsockopt(src_->fd(), IPPROTO_TCP, TCP_NODELAY, &v, sizeof v) != 0) {
    throw_errno(errno, "setsockopt(TCP_NODELAY)");
  }
}

int tcp_stream::native_handle() const noexcept {
  return src_ != nullptr ? src_->fd() : -1;
}

std::string tcp_stream::peer_address() const {
  if (src_ == nullptr) {
    return {};
  }
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getpeername(src_->fd(), reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    return {};
  }
  return format_address(ss);
}

// -------------------------------------------------------------- tcp_listener ----

tcp_listener::tcp_listener(tcp_listener&& o) noexcept
    : src_(std::exchange(o.src_, nullptr)) {
}

tcp_listener& tcp_listener::operator=(tcp_listener&& o) noexcept {
  if (this != &o) {
    close();
    src_ = std::exchange(o.src_, nullptr);
  }
  return *this;
}

tcp_listener::~tcp_listener() {
  close();
}

tcp_listener tcp_listener::bind(const std::string& host, std::uint16_t port, int backlog) {
  if (backlog < 1) {
    throw std::invalid_argument(
        "bastion::io::tcp_listener::bind: backlog must be at least 1 (got "
        + std::to_string(backlog) + ")");
  }
  const auto addr = numeric_address(host, port);
  if (!addr) {
    throw std::invalid_argument(
        "bastion::io::tcp_listener::bind: '" + host + "' is not a numeric IPv4 or IPv6 address");
  }
  const int fd = new_socket(addr->ss_family);
  const int one = 1;
  if (::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0
      || ::bind(fd, reinterpret_cast<const sockaddr*>(&*addr), length_of(*addr)) != 0
      || ::listen(fd, backlog) != 0) {
    const int err = errno;
    ::close(fd);
    throw_errno(err, "bind/listen on " + format_address(*addr));
  }
  tcp_listener l;
  tcp_access::set_source(l, new detail::io_source(fd));
  return l;
}

task<tcp_stream> tcp_listener::accept() {
  return tcp_access::accept(*this, std::nullopt);
}

task<tcp_stream> tcp_listener::accept(std::chrono::nanoseconds limit) {
  return tcp_access::accept(*this, limit);
}

std::uint16_t tcp_listener::local_port() const {
  if (src_ == nullptr) {
    return 0;
  }
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(src_->fd(), reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    return 0;
  }
  if (ss.ss_family == AF_INET6) {
    return ntohs(reinterpret_cast<const sockaddr_in6&>(ss).sin6_port);
  }
  return ntohs(reinterpret_cast<const sockaddr_in&>(ss).sin_port);
}

void tcp_listener::close() noexcept {
  if (auto* s = std::exchange(src_, nullptr)) {
    s->close();
  }
}

int tcp_listener::native_handle() const noexcept {
  return src_ != nullptr ? src_->fd() : -1;
}

} // namespace bastion::io
