// bastion/io/tcp.hpp: TCP sockets on the executor: tcp_listener (listen/accept) and
// tcp_stream (connect, read, write), awaitable, with timeouts and cancellation.
#pragma once

#include <bastion/lightproc/task.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace bastion::detail {
class io_source;
struct tcp_access;
} // namespace bastion::detail

namespace bastion::io {

/// A connected TCP socket owned by one proc at a time.
///
/// The socket is non-blocking and registered with its runtime's reactor (epoll, edge
/// triggered, after mio/Tokio): a read or write that would block suspends the awaiting proc,
/// which resumes on an executor worker once the socket is ready again; nothing spins.
/// A socket is served by the runtime of the proc that first awaits an operation on it
/// (creating one registers nothing and never starts the global runtime).
/// Destroying the stream closes the socket, so a proc that owns one in a local variable
/// closes it when it ends, fails (its frame unwinds) or is cancelled (its frame is destroyed
/// while it waits); an operation still waiting when its proc is cancelled is withdrawn from
/// the reactor first. A stream passed to a coroutine by value lives in its frame, which a
/// spawned proc keeps until its join handle is consumed or dropped: move it into a local
/// (`auto s = std::move(param);`) to close it when the body ends.
///
/// Errors: operations throw std::system_error carrying the errno (std::generic_category),
/// e.g. std::errc::connection_reset when the peer reset the connection, and
/// bastion::timed_out when a deadline passed. An operation on a closed (or moved-from)
/// stream throws std::system_error with std::errc::bad_file_descriptor.
///
/// Thread-safety: a stream may be moved between procs, but at most one read and one write may
/// be in flight at a time (one reader and one writer proc may run concurrently).
class tcp_stream {
public:
  /// An empty stream (not connected).
  tcp_stream() noexcept = default;
  /// Adopts `fd`, a connected stream socket, and makes it non-blocking. Throws
  /// std::invalid_argument when `fd` is negative, std::system_error when fcntl fails (`fd`
  /// is closed then). The first operation registers it with its runtime's reactor (epoll may
  /// refuse a descriptor that is not a socket: that operation throws std::system_error).
  explicit tcp_stream(int fd);
  tcp_stream(tcp_stream&& o) noexcept;
  tcp_stream& operator=(tcp_stream&& o) noexcept;
  tcp_stream(const tcp_stream&) = delete;
  tcp_stream& operator=(const tcp_stream&) = delete;
  /// Closes the socket (see close()).
  ~tcp_stream();

  /// Connects to `host`:`port`. `host` is a numeric IPv4/IPv6 address or a name (names are
  /// resolved with getaddrinfo on the blocking pool). Throws std::invalid_argument for an
  /// empty host or port 0, std::system_error (e.g. connection_refused) when no address of
  /// the host accepts the connection. Resumes on an executor worker.
  [[nodiscard]] static task<tcp_stream> connect(std::string host, std::uint16_t port);
  /// As connect(host, port), giving up after `limit`: throws bastion::timed_out and closes
  /// the half-open socket. A limit of zero or less times out at once unless the connection
  /// completes immediately.
  [[nodiscard]] static task<tcp_stream>
  connect(std::string host, std::uint16_t port, std::chrono::nanoseconds limit);

  /// Reads at most `buf.size()` bytes; yields how many were read, 0 at end of stream (the
  /// peer shut down its side) or when `buf` is empty. Suspends while no byte is available.
  /// Throws std::system_error (connection_reset when the peer reset the connection).
  [[nodiscard]] task<std::size_t> read_some(std::span<char> buf);
  /// As read_some(buf), throwing bastion::timed_out when no byte arrived within `limit`
  /// (nothing is consumed then; the stream stays usable).
  [[nodiscard]] task<std::size_t> read_some(std::span<char> buf, std::chrono::nanoseconds limit);
  /// Reads exactly `buf.size()` bytes. Throws std::system_error with
  /// std::errc::connection_aborted when the stream ends first.
  [[nodiscard]] task<void> read_exact(std::span<char> buf);

  /// Writes all of `data`, suspending while the kernel's send buffer is full (back-pressure:
  /// a slow reader holds the writer, memory stays bounded by the caller's buffer).
  /// Throws std::system_error (broken_pipe / connection_reset when the peer has gone;
  /// SIGPIPE is never raised). `data` must stay alive until the task completes.
  [[nodiscard]] task<void> write_all(std::span<const char> data);
  /// As write_all(data), throwing bastion::timed_out when the whole of `data` was not
  /// accepted by the kernel within `limit` (a prefix may have been sent).
  [[nodiscard]] task<void> write_all(std::span<const char> data, std::chrono::nanoseconds limit);

  /// Shuts down the sending side (the peer reads end of stream). Throws std::system_error.
  void shutdown_write();
  /// Withdraws the socket from the reactor and closes it; idempotent, never throws. Not
  /// synchronised with operations of other procs on this stream: call it from the owning proc
  /// (cancel a proc to stop its pending read or write).
  void close() noexcept;
  /// Sets TCP_NODELAY (Nagle's algorithm off when true). Throws std::system_error.
  void set_nodelay(bool on);

  /// True while the stream holds an open socket.
  [[nodiscard]] bool is_open() const noexcept { return src_ != nullptr; }
  /// The socket's file descriptor, or -1 when closed. The stream still owns it.
  [[nodiscard]] int native_handle() const noexcept;
  /// The peer's address as "ip:port" ("[ip]:port" for IPv6); empty when closed or unknown.
  [[nodiscard]] std::string peer_address() const;

private:
  friend struct detail::tcp_access;
  detail::io_source* src_ = nullptr;
};

/// A listening TCP socket that accepts connections as tcp_streams.
///
/// Thread-safety: one accept may be in flight at a time. close() must not run concurrently
/// with an operation on the listener (it is not synchronised with one): to stop a proc that
/// waits in accept(), cancel that proc (its wait is withdrawn; the listener closes when its
/// owner drops it). Errors as for tcp_stream.
class tcp_listener {
public:
  /// An empty listener (not bound).
  tcp_listener() noexcept = default;
  tcp_listener(tcp_listener&& o) noexcept;
  tcp_listener& operator=(tcp_listener&& o) noexcept;
  tcp_listener(const tcp_listener&) = delete;
  tcp_listener& operator=(const tcp_listener&) = delete;
  /// Closes the socket.
  ~tcp_listener();

  /// Binds to `host`:`port` (a numeric IPv4/IPv6 address; "0.0.0.0" or "::" for every
  /// interface; port 0 picks a free port, see local_port()) with SO_REUSEADDR, and listens
  /// with a queue of `backlog` pending connections (the kernel caps it at somaxconn).
  /// Throws std::invalid_argument for a host that is not a numeric address or a backlog < 1,
  /// std::system_error when the socket cannot be bound (e.g. address_in_use).
  [[nodiscard]] static tcp_listener
  bind(const std::string& host, std::uint16_t port, int backlog = 4096);

  /// Accepts the next connection; suspends while none is pending. Throws std::system_error (e.g.
  /// too_many_files_open when the process is out of descriptors: the pending connection
  /// stays queued).
  [[nodiscard]] task<tcp_stream> accept();
  /// As accept(), throwing bastion::timed_out when no connection arrived within `limit`.
  [[nodiscard]] task<tcp_stream> accept(std::chrono::nanoseconds limit);

  /// The port the listener is bound to (useful after binding port 0); 0 when closed.
  [[nodiscard]] std::uint16_t local_port() const;
  /// Closes the socket. Idempotent, never throws. Call it from the proc that owns the
  /// listener, not while another proc awaits accept() on it (see the class comment).
  void close() noexcept;
  /// True while the listener holds an open socket.
  [[nodiscard]] bool is_open() const noexcept { return src_ != nullptr; }
  /// The listening socket's file descriptor, or -1 when closed.
  [[nodiscard]] int native_handle() const noexcept;

private:
  friend struct detail::tcp_access;
  detail::io_source* src_ = nullptr;
};

} // namespace bastion::io
