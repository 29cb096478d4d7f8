// examples/kv_server/aof.hpp: one shard's append-only file and the buffer in front of it.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <mutex>
#include <string>
#include <string_view>

namespace kv {

/// The append-only file of one shard, with the in-memory buffer the shard appends to before
/// it acknowledges a write.
///
/// Durability contract (redis's appendfsync everysec, and the shard-crash guarantee): a
/// shard appends the records of a batch with append() before it replies. The buffer belongs
/// to this object, which the server keeps for the whole process, not to the shard's
/// incarnation, so a shard that fails loses nothing it acknowledged: its next incarnation
/// calls load(), which first writes whatever the buffer holds, then reads the whole file.
/// flush() moves the buffer to the file (write(2)); sync() makes the file durable
/// (fdatasync); the server flushes a few milliseconds after a write and syncs every second,
/// so a power loss loses at most about a second, a process crash (SIGKILL) loses only what
/// was not flushed yet, and a shard crash loses nothing.
///
/// Page cache: the log is written once and read only when a shard restarts, so each flush
/// starts the writeback of the full pages it wrote (sync_file_range(SYNC_FILE_RANGE_WRITE),
/// as RocksDB's bytes_per_sync does while a file grows) and drops from the page cache what
/// the previous flush started writing back (posix_fadvise(POSIX_FADV_DONTNEED), as
/// PostgreSQL does with a WAL segment it closes). load() and rewrite() leave what they read
/// or wrote cached: a shard that fails again soon reads the file again. The log then reuses
/// a few pages instead of claiming fresh ones for every write, which is most of what a buffered
/// append costs (on a VM whose free memory goes back to the host, each fresh page also faults on
/// the host).
///
/// Concurrency design: `buf_mu_` guards `pending_` and is held only to append or to swap
/// the buffer out (never across a system call), so a shard never waits for the disk.
/// `file_mu_` serialises every file operation (flush, sync, load, rewrite, truncate); those
/// run on blocking-pool threads (bastion::spawn_blocking) or, at shutdown, on main.
/// `writing_` is touched only under `file_mu_`: the bytes taken from `pending_` that are not
/// written yet (kept after a failed write, written first next time).
/// Thread-safety: every member is safe from any thread. Blocking members are marked.
/// Errors: std::system_error with the errno and the path.
class aof_log {
public:
  /// Opens (creating if missing, mode 0644) `path` for appending. Blocking. When `enabled` is
  /// false the log keeps nothing: append() drops records and load() reads nothing.
  aof_log(std::filesystem::path path, bool enabled);
  ~aof_log();
  aof_log(const aof_log&) = delete;
  aof_log& operator=(const aof_log&) = delete;

  /// Appends `records` (complete RESP records) to the buffer. Returns true when the buffer
  /// was empty before (the caller then asks for a flush). O(|records|), takes buf_mu_ briefly.
  bool append(std::string_view records);
  /// Writes the buffer to the file. Blocking; throws std::system_error (what was not
  /// written stays queued).
  void flush();
  /// flush(), then fdatasync when anything was written since the last sync. Blocking.
  void sync();
  /// flush(), then reads the whole file. Blocking. What a (re)starting shard replays.
  [[nodiscard]] std::string load();
  /// Cuts the file to its first `bytes` bytes (dropping a torn last record). Blocking.
  void truncate(std::uint64_t bytes);
  /// Replaces the file with `snapshot` (written to a temporary file, synced, renamed over
  /// it), then appends what the buffer holds. Blocking. Records are idempotent in order
  /// (SET of a value, DEL, FLUSHALL), so buffered records the snapshot already reflects may
  /// follow it harmlessly.
  void rewrite(std::string_view snapshot);

  /// The file's path.
  [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }
  /// Bytes appended since the log was opened (records written or queued).
  [[nodiscard]] std::uint64_t appended_bytes() const noexcept {
    return appended_.load(std::memory_order_relaxed);
  }

private:
  void flush_locked(); // @pre file_mu_ held
  void open_locked();  // @pre file_mu_ held (or construction)
  /// After a write: drops from the page cache what the previous call started writing back,
  /// then starts the writeback of the full pages written since.
  void release_written_locked(); // @pre file_mu_ held

  static constexpr std::uint64_t page_bytes = 4096; ///< granularity of the page-cache hints
  /// `offset` rounded down to a page_bytes boundary.
  static constexpr std::uint64_t page_floor(std::uint64_t offset) noexcept {
    return offset / page_bytes * page_bytes;
  }

  const std::filesystem::path path_;
  const bool enabled_;
  std::mutex buf_mu_;
  std::string pending_; ///< guarded by buf_mu_
  std::mutex file_mu_;
  std::string writing_; ///< guarded by file_mu_
  int fd_ = -1;         ///< guarded by file_mu_ (replaced by rewrite)
  bool dirty_ = false;  ///< written since the last sync; guarded by file_mu_
  // Offsets in the file, all guarded by file_mu_: its size as this log wrote it; the end of
  // the range whose writeback was started (page-aligned); how far the page cache has been
  // dropped (page-aligned, never past writeback_to_).
  std::uint64_t end_ = 0;
  std::uint64_t writeback_to_ = 0;
  std::uint64_t dropped_to_ = 0;
  std::atomic<std::uint64_t> appended_{0};
};

} // namespace kv
