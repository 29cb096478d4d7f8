// bench/resp_null_server.cpp: the cheapest server redis-benchmark can talk to, to measure the
// client's own ceiling on this machine.
//
// usage: resp_null_server PORT
//
// Listens on 127.0.0.1:PORT and answers every RESP request with "+OK\r\n" ("+PONG\r\n" for
// PING) without looking at its arguments: no keyspace, no persistence, no allocation per
// request. One thread; edge-triggered epoll. While a connection is open and active it polls
// epoll without blocking (busy polling, so a request never waits for the server to wake up
// and the client never pays to wake it); with no connection open, or none active for a
// millisecond, it blocks, so it idles at no CPU between redis-benchmark's tests.
//
// What it is for: redis-benchmark is single-threaded, and on a two-core machine it needs one
// core to itself. The rate it reaches against this server is the most any server can get
// from it here; bench/kv_vs_redis.sh prints that rate next to redis-server's and
// kv_server's. It speaks only the request framing (arrays of bulk strings, as clients
// send); an inline command or a malformed frame closes the connection.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <unordered_map>

namespace {

/// Incremental framing of one connection's requests: feed() consumes bytes and answers the
/// complete requests, remembering a partial one across reads.
class request_framer {
public:
  /// Consumes `in`; appends one reply per complete request to `out`. Returns false on a
  /// frame that is not an array of bulk strings (the caller closes the connection).
  bool feed(std::string_view in, std::string& out) {
    partial_.append(in);
    std::string_view buf = partial_;
    std::size_t done = 0;
    for (;;) {
      const std::string_view rest = buf.substr(done);
      const auto used = one_request(rest, out);
      if (used < 0) {
        return false;
      }
      if (used == 0) {
        break;
      }
      done += static_cast<std::size_t>(used);
    }
    partial_.erase(0, done);
    return true;
  }

private:
  /// Bytes of the complete request at the front of `b` (replying to it), 0 when incomplete,
  /// -1 when malformed.
  static long one_request(std::string_view b, std::string& out) {
    std::size_t pos = 0;
    long count = 0;
    if (!header(b, pos, '*', count) || count < 1) {
      return header_incomplete(b, pos) ? 0 : -1;
    }
    std::string_view name;
    for (long i = 0; i < count; ++i) {
      long len = 0;
      if (!header(b, pos, '$', len) || len < 0) {
        return header_incomplete(b, pos) ? 0 : -1;
      }
      const auto n = static_cast<std::size_t>(len);
      if (b.size() < pos + n + 2) {
        return 0;
      }
      if (i == 0) {
        name = b.substr(pos, n);
      }
      pos += n + 2;
    }
    const bool ping = name.size() == 4 && (name[0] | 0x20) == 'p' && (name[1] | 0x20) == 'i'
                      && (name[2] | 0x20) == 'n' && (name[3] | 0x20) == 'g';
    out.append(ping ? "+PONG\r\n" : "+OK\r\n");
    return static_cast<long>(pos);
  }

  /// Parses "<tag><number>\r\n" at `pos`, advancing it. False when absent or incomplete.
  static bool header(std::string_view b, std::size_t& pos, char tag, long& value) {
    if (pos >= b.size() || b[pos] != tag) {
      return false;
    }
    const auto eol = b.find("\r\n", pos + 1);
    if (eol == std::string_view::npos) {
      return false;
    }
    const auto [end, ec] = std::from_chars(b.data() + pos + 1, b.data() + eol, value);
    if (ec != std::errc{} || end != b.data() + eol) {
      return false;
    }
    pos = eol + 2;
    return true;
  }

  /// Whether header() failed only because the bytes at `pos` end before the line does.
  static bool header_incomplete(std::string_view b, std::size_t pos) {
    return pos >= b.size()
           || (b.find("\r\n", pos) == std::string_view::npos && b.size() - pos < 32);
  }

  std::string partial_;
};

/// Sends all of `data`, waiting with poll(2) while the socket buffer is full. False on error.
bool send_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t w = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (w >= 0) {
      data.remove_prefix(static_cast<std::size_t>(w));
    } else if (errno == EAGAIN) {
      pollfd p{fd, POLLOUT, 0};
      ::poll(&p, 1, -1);
    } else if (errno != EINTR) {
      return false;
    }
  }
  return true;
}

[[noreturn]] void die(const char* what) {
  std::perror(what);
  std::exit(1);
}

} // namespace

int main(int argc, char** argv) {
  int port = 0;
  if (argc != 2 || std::from_chars(argv[1], argv[1] + std::strlen(argv[1]), port).ec != std::errc{}
      || port <= 0 || port > 65535) {
    std::fprintf(stderr, "usage: resp_null_server PORT   (PORT: 1..65535)\n");
    return 2;
  }
  const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  const int one = 1;
  ::setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    die("resp_null_server: bind");
  }
  if (::listen(listener, SOMAXCONN) != 0) {
    die("resp_null_server: listen");
  }
  const int ep = ::epoll_create1(EPOLL_CLOEXEC);
  epoll_event lev{};
  lev.events = EPOLLIN;
  lev.data.fd = listener;
  ::epoll_ctl(ep, EPOLL_CTL_ADD, listener, &lev);

  std::unordered_map<int, request_framer> conns;
  std::array<epoll_event, 256> events{};
  static std::array<char, 1 << 16> in;
  std::string out;
  using clock = std::chrono::steady_clock;
  auto last_event = clock::now();
  for (;;) {
    // Busy-poll only while a client is connected and active: a connection that stays quiet
    // for a millisecond (or one whose close went unseen) lets the server block again.
    const bool busy = !conns.empty() && clock::now() - last_event < std::chrono::milliseconds(1);
    const int n = ::epoll_wait(ep, events.data(), static_cast<int>(events.size()), busy ? 0 : -1);
    if (n > 0) {
      last_event = clock::now();
    }
    for (int i = 0; i < n; ++i) {
      const int fd = events[static_cast<std::size_t>(i)].data.fd;
      const bool hung_up =
          (events[static_cast<std::size_t>(i)].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0;
      if (fd == listener) {
        for (int c;
             (c = ::accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0;) {
          ::setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          epoll_event cev{};
          cev.events = EPOLLIN | EPOLLRDHUP | EPOLLET;
          cev.data.fd = c;
          ::epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
          conns.try_emplace(c);
        }
        continue;
      }
      auto& framer = conns.at(fd);
      bool open = true;
      for (;;) { // edge-triggered: read until the socket is drained
        const ssize_t r = ::recv(fd, in.data(), in.size(), 0);
        if (r < 0 && errno == EINTR) {
          continue;
        }
        if (r < 0 && errno == EAGAIN) {
          break;
        }
        out.clear();
        if (r <= 0 || !framer.feed({in.data(), static_cast<std::size_t>(r)}, out)
            || !send_all(fd, out)) {
          open = false; // peer closed, reset or sent garbage
          break;
        }
        if (static_cast<std::size_t>(r) < in.size() && !hung_up) {
          break; // a short read drained it (after a hang-up, read on to see the end)
        }
      }
      if (!open) {
        ::close(fd);
        conns.erase(fd);
      }
    }
  }
}
