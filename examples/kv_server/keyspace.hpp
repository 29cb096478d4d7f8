// examples/kv_server/keyspace.hpp: one shard's data: string keys with optional absolute expiry
// (lazy on access plus an active sweep), and the AOF records that rebuild it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace kv {

/// Milliseconds since the Unix epoch (the clock of expiry times; the AOF stores them as is).
/// Thread-safety: safe from any thread.
[[nodiscard]] std::int64_t unix_ms() noexcept;

/// The shard a key belongs to: a 64-bit hash of the key (eight bytes per step, MurmurHash3's
/// finaliser) mapped onto [0, shards) by a multiply-shift of its high half. @pre shards is
/// at most 2^32. Stable across runs, builds and hosts of either endianness
/// (the AOF files depend on it). @pre shards > 0. Thread-safety: pure. Complexity: O(|key|).
[[nodiscard]] std::size_t shard_of(std::string_view key, std::size_t shards) noexcept;

/// A value and its expiry.
struct entry {
  std::string value;
  std::int64_t expire_at = 0; ///< absolute, Unix ms; 0: never expires
};

/// The keys of one shard.
///
/// Expiry: a key whose expire_at <= now is gone: every lookup taking `now` removes it first
/// (lazy expiry, as redis), and expire_due() sweeps keys nobody reads (active expiry). The
/// sweep uses a min-heap of (expire_at, key) that may hold stale entries (a key given a new
/// expiry or removed); it is rebuilt when stale entries outnumber the live ones.
/// Thread-safety: one owner (the shard actor).
class keyspace {
public:
  /// The live entry of `key` at `now` (Unix ms), or null; an expired one is removed.
  /// Complexity: O(1) expected.
  entry* find(std::string_view key, std::int64_t now);
  /// Sets `key` to `value` expiring at `expire_at` (Unix ms, 0: never). An `expire_at` at or
  /// before `now` removes the key instead. Returns the entry (null when removed).
  entry*
  set(std::string_view key, std::string_view value, std::int64_t expire_at, std::int64_t now);
  /// Removes `key`; true when a live key was removed.
  bool erase(std::string_view key, std::int64_t now);
  /// Removes every key.
  void clear();
  /// Removes up to `max_keys` keys that expired at or before `now`; returns how many.
  std::size_t expire_due(std::int64_t now, std::size_t max_keys);
  /// Keys held (expired keys not yet removed included, as redis's DBSIZE).
  [[nodiscard]] std::size_t size() const noexcept { return map_.size(); }
  /// Keys held that have an expiry.
  [[nodiscard]] std::size_t expires() const noexcept { return expires_; }
  /// Calls f(key, entry) for each key held (for AOF rewriting).
  void for_each(const std::function<void(const std::string&, const entry&)>& f) const;

private:
  struct hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept {
      return std::hash<std::string_view>{}(s);
    }
  };
  struct deadline {
    std::int64_t at;
    std::string key;
  };
  /// Orders the heap so that the earliest deadline is on top.
  struct deadline_after {
    bool operator()(const deadline& a, const deadline& b) const noexcept { return a.at > b.at; }
  };
  using map = std::unordered_map<std::string, entry, hash, std::equal_to<>>;

  void track_expiry(const std::string& key, std::int64_t at);
  void untrack(const entry& e) noexcept {
    if (e.expire_at != 0) {
      --expires_;
    }
  }

  map map_;
  std::size_t expires_ = 0;         ///< entries with expire_at != 0
  std::vector<deadline> deadlines_; ///< a min-heap on `at` (std::push_heap with greater)
};

/// AOF records: each is a RESP multibulk command, as redis's AOF (so `redis-cli --pipe` could
/// replay one): `SET key value` or `SET key value PXAT <unix ms>`, `DEL key`, `FLUSHALL`.
/// Thread-safety: pure functions of their arguments.
void append_set_record(
    std::string& out, std::string_view key, std::string_view value, std::int64_t expire_at);
/// Appends `DEL key`.
void append_del_record(std::string& out, std::string_view key);
/// Appends `FLUSHALL`.
void append_flushall_record(std::string& out);
/// Appends a SET record for every key of `ks` (a compacted AOF).
void append_snapshot(std::string& out, const keyspace& ks);

/// What replay() found in an AOF.
struct replay_result {
  std::size_t records = 0;     ///< records applied
  std::size_t valid_bytes = 0; ///< length of the prefix made of complete records
  bool torn_tail = false;      ///< the data ends inside a record (a crash while writing it)
  std::string error;           ///< non-empty when a record is malformed (the AOF is corrupt)
};

/// Applies the records of `data` (an AOF's contents) to `ks` in order, at time `now` (keys
/// whose PXAT is due are not loaded). Stops at a torn tail (valid_bytes says where the last
/// complete record ends) or at the first malformed record (error says what and where).
/// `data` is scratch space: it may be modified. Complexity: O(|data|).
[[nodiscard]] replay_result replay(std::string& data, keyspace& ks, std::int64_t now);

} // namespace kv
