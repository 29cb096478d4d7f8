// tests/plain_socket.hpp: a plain blocking socket on the test thread, for peers of the
// runtime's sockets (including peers that must misbehave on purpose).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <system_error>
#include <utility>

namespace bastion::test {

/// A loopback address for `port`.
inline sockaddr_in loopback(std::uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

/// Owns a plain blocking socket.
class plain_socket {
public:
  plain_socket() = default;
  explicit plain_socket(int fd) noexcept
      : fd_(fd) {}
  plain_socket(plain_socket&& o) noexcept
      : fd_(std::exchange(o.fd_, -1)) {}
  plain_socket& operator=(plain_socket&&) = delete;
  plain_socket(const plain_socket&) = delete;
  plain_socket& operator=(const plain_socket&) = delete;
  ~plain_socket() { close(); }
  void close() noexcept {
    if (fd_ >= 0) {
      ::close(std::exchange(fd_, -1));
    }
  }
  [[nodiscard]] int fd() const noexcept { return fd_; }

  /// Connects to 127.0.0.1:`port`; an optional receive buffer size (bytes) set before, and
  /// a receive timeout so that a broken server cannot hang the test.
  static plain_socket connect_to(std::uint16_t port, int rcvbuf = 0) {
    plain_socket s{::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)};
    if (s.fd() < 0) {
      throw std::system_error(errno, std::generic_category(), "test: socket");
    }
    if (rcvbuf > 0) {
      ::setsockopt(s.fd(), SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    }
    timeval tv{};
    tv.tv_sec = 20;
    ::setsockopt(s.fd(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    const auto a = loopback(port);
    if (::connect(s.fd(), reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0) {
      throw std::system_error(errno, std::generic_category(), "test: connect");
    }
    return s;
  }
  /// Sends all of `data` (no SIGPIPE); false on error.
  bool send_all(std::string_view data) const {
    while (!data.empty()) {
      const auto n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) {
        if (n < 0 && errno == EINTR) {
          continue;
        }
        return false;
      }
      data.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }
  /// One recv: bytes read, 0 at end of stream, -errno on error.
  long recv_some(char* buf, std::size_t n) const {
    for (;;) {
      const auto got = ::recv(fd_, buf, n, 0);
      if (got >= 0) {
        return static_cast<long>(got);
      }
      if (errno != EINTR) {
        return -errno;
      }
    }
  }
  /// Makes close() send a reset (RST) instead of a FIN.
  void set_linger_zero() const {
    linger l{};
    l.l_onoff = 1;
    l.l_linger = 0;
    ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  }

private:
  int fd_ = -1;
};

} // namespace bastion::test
