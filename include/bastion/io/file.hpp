// bastion/io/file.hpp: async file I/O: each operation runs on the runtime's adaptive blocking
// pool (spawn_blocking), so a proc awaiting a disk never holds an executor worker.
#pragma once

#include <bastion/lightproc/task.hpp>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

namespace bastion::io {

/// How file::open opens a file.
enum class open_mode {
  read,       ///< read only; the file must exist
  write,      ///< write only; created if missing, truncated
  append,     ///< write only, every write at the end; created if missing
  read_write, ///< read and write; created if missing, not truncated
};

/// An open file whose operations run on the blocking pool and are awaited.
///
/// Each operation is one spawn_blocking call on the current runtime (the awaiting worker's,
/// run()'s, else the global one): the awaiting proc suspends, the system call runs on a
/// blocking thread, and the proc resumes on an executor worker with the result. Operations
/// are lazy tasks: nothing happens until the task is awaited. Awaiting outside a bastion
/// proc throws std::logic_error; after the runtime shut down an operation throws
/// bastion::proc_rejected.
///
/// Ownership: the descriptor lives in a shared state; each running operation holds a
/// reference to it and owns its buffers (strings moved in or returned), never borrowing from
/// the caller. So a proc cancelled (or a file closed or destroyed) while an operation runs on
/// a blocking thread leaves nothing dangling: the operation finishes, its result is
/// discarded, and the descriptor is closed when the last reference goes. An operation's task
/// takes its reference when it is created, so the file object itself may be moved or
/// destroyed before the task is awaited.
///
/// Errors: std::system_error with the errno (std::generic_category) and the operation and
/// path in its message ("bastion::io::file: read /tmp/x: ..."); an operation on a closed (or
/// moved-from, or default-constructed) file throws std::system_error with
/// std::errc::bad_file_descriptor. Interrupted system calls (EINTR) are retried.
///
/// Thread-safety: a file is one owner's (move it between procs, do not share it); at most
/// one operation may be in flight at a time (they share the file offset).
class file {
public:
  /// Bytes read_to_end (and read_file) asks the kernel for per read(2) call.
  static constexpr std::size_t read_chunk_bytes = 64 * 1024;

  /// An empty (closed) file.
  file() noexcept;
  file(file&& o) noexcept;
  /// Closes this file (see close()), then takes `o`'s.
  file& operator=(file&& o) noexcept;
  file(const file&) = delete;
  file& operator=(const file&) = delete;
  /// Closes the file (see close()).
  ~file();

  /// Opens `path` in `mode` (O_CLOEXEC; files created with mode 0644, less the umask).
  /// Resumes on an executor worker. Throws std::system_error (e.g. no_such_file_or_directory
  /// for a missing file in open_mode::read, permission_denied). A proc cancelled while the
  /// open(2) runs leaves no descriptor behind: it is closed when the call returns.
  [[nodiscard]] static task<file> open(std::filesystem::path path, open_mode mode);

  /// Reads at most `max_bytes` bytes (one read(2); a buffer of `max_bytes` is allocated) from
  /// the current offset; an empty string at end of file or when `max_bytes` is 0. Throws
  /// std::system_error (bad_file_descriptor when closed or opened write-only).
  [[nodiscard]] task<std::string> read(std::size_t max_bytes);
  /// Reads from the current offset to the end of the file, in reads of read_chunk_bytes, in
  /// one blocking call. Throws std::system_error.
  [[nodiscard]] task<std::string> read_to_end();
  /// Writes all of `data` (repeating short writes) at the current offset, or at the end in
  /// open_mode::append. Throws std::system_error (e.g. no_space_on_device); a prefix of
  /// `data` may have been written then.
  [[nodiscard]] task<void> write(std::string data);
  /// Flushes written data to the device (fdatasync(2)). Throws std::system_error.
  [[nodiscard]] task<void> sync();
  /// The file's size in bytes (fstat(2)). Throws std::system_error.
  [[nodiscard]] task<std::uint64_t> size();
  /// Truncates (or extends with zeros) the file to `bytes` bytes (ftruncate(2)); the offset
  /// does not move. Throws std::system_error (invalid_argument when not opened for writing).
  [[nodiscard]] task<void> truncate(std::uint64_t bytes);

  /// Drops this object's reference to the descriptor: it is closed at once, or when the
  /// last running operation ends. Idempotent, never throws; close errors are ignored (call
  /// sync() first to learn about write-back errors).
  void close() noexcept;
  /// True while the file is open.
  [[nodiscard]] bool is_open() const noexcept { return static_cast<bool>(state_); }
  /// The path the file was opened with; an empty path once closed.
  [[nodiscard]] const std::filesystem::path& path() const noexcept;

private:
  struct state;
  explicit file(std::shared_ptr<state> s) noexcept;
  std::shared_ptr<state> state_;
};

/// Reads the whole of `path` (open, read to end, close in one blocking call). Errors as for
/// file::open and file::read_to_end.
[[nodiscard]] task<std::string> read_file(std::filesystem::path path);
/// Replaces the contents of `path` with `data` (created with mode 0644 if missing, else
/// truncated; not atomic: a reader may see a prefix) in one blocking call. Errors as for
/// file::open and file::write.
[[nodiscard]] task<void> write_file(std::filesystem::path path, std::string data);

} // namespace bastion::io
