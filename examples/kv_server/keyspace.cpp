// examples/kv_server/keyspace.cpp: a shard's keys, expiry and AOF records (see keyspace.hpp).
#include "keyspace.hpp"

#include "resp.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <utility>

namespace kv {

std::int64_t unix_ms() noexcept {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

namespace {
/// Eight bytes as a little-endian integer, whatever the host (compilers emit one load).
std::uint64_t load_le64(const char* p, std::size_t n) noexcept {
  std::uint64_t w = 0;
  for (std::size_t i = 0; i < n; ++i) {
    w |= static_cast<std::uint64_t>(static_cast<unsigned char>(p[i])) << (8 * i);
  }
  return w;
}
} // namespace

std::size_t shard_of(std::string_view key, std::size_t shards) noexcept {
  // Eight bytes per step, then MurmurHash3's fmix64 finaliser (a full avalanche, so the
  // modulo below sees well-mixed bits).
  constexpr std::uint64_t m = 0xff51afd7ed558ccdULL;
  std::uint64_t h = 0x9e3779b97f4a7c15ULL ^ key.size();
  const char* p = key.data();
  std::size_t n = key.size();
  for (; n >= 8; p += 8, n -= 8) {
    h = (h ^ load_le64(p, 8)) * m;
    h ^= h >> 32;
  }
  if (n > 0) {
    h = (h ^ load_le64(p, n)) * 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 29;
  }
  h ^= h >> 33;
  h *= m;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  // Lemire's multiply-shift range reduction of the high 32 bits (no division).
  return static_cast<std::size_t>(((h >> 32) * static_cast<std::uint64_t>(shards)) >> 32);
}

entry* keyspace::find(std::string_view key, std::int64_t now) {
  auto it = map_.find(key);
  if (it == map_.end()) {
    return nullptr;
  }
  if (it->second.expire_at != 0 && it->second.expire_at <= now) {
    untrack(it->second);
    map_.erase(it);
    return nullptr;
  }
  return &it->second;
}

entry* keyspace::set(
    std::string_view key, std::string_view value, std::int64_t expire_at, std::int64_t now) {
  if (expire_at != 0 && expire_at <= now) {
    erase(key, now);
    return nullptr;
  }
  auto it = map_.find(key);
  if (it == map_.end()) {
    it = map_.emplace(std::string(key), entry{}).first;
  } else {
    untrack(it->second);
  }
  it->second.value.assign(value);
  it->second.expire_at = expire_at;
  if (expire_at != 0) {
    ++expires_;
    track_expiry(it->first, expire_at);
  }
  return &it->second;
}

bool keyspace::erase(std::string_view key, std::int64_t now) {
  auto it = map_.find(key);
  if (it == map_.end()) {
    return false;
  }
  const bool live = it->second.expire_at == 0 || it->second.expire_at > now;
  untrack(it->second);
  map_.erase(it);
  return live;
}

void keyspace::clear() {
  map_.clear();
  expires_ = 0;
  deadlines_.clear();
}

void keyspace::track_expiry(const std::string& key, std::int64_t at) {
  if (deadlines_.size() > 2 * expires_ + 1024) {
    // Mostly stale: rebuild from the live entries (amortised O(1) per insertion).
    deadlines_.clear();
    for (const auto& [k, e] : map_) {
      if (e.expire_at != 0 && k != key) {
        deadlines_.push_back({e.expire_at, k});
      }
    }
    std::make_heap(deadlines_.begin(), deadlines_.end(), deadline_after{});
  }
  deadlines_.push_back({at, key});
  std::push_heap(deadlines_.begin(), deadlines_.end(), deadline_after{});
}

std::size_t keyspace::expire_due(std::int64_t now, std::size_t max_keys) {
  std::size_t removed = 0;
  while (!deadlines_.empty() && deadlines_.front().at <= now && removed < max_keys) {
    std::pop_heap(deadlines_.begin(), deadlines_.end(), deadline_after{});
    deadline d = std::move(deadlines_.back());
    deadlines_.pop_back();
    auto it = map_.find(d.key);
    if (it != map_.end() && it->second.expire_at == d.at) {
      untrack(it->second);
      map_.erase(it);
      ++removed;
    }
  }
  return removed;
}

void keyspace::for_each(const std::function<void(const std::string&, const entry&)>& f) const {
  for (const auto& [k, e] : map_) {
    f(k, e);
  }
}

void append_set_record(
    std::string& out, std::string_view key, std::string_view value, std::int64_t expire_at) {
  if (expire_at == 0) {
    append_command(out, {"SET", key, value});
    return;
  }
  char tmp[24];
  auto [end, ec] = std::to_chars(tmp, tmp + sizeof tmp, expire_at);
  (void)ec;
  append_command(
      out, {"SET", key, value, "PXAT", std::string_view(tmp, static_cast<std::size_t>(end - tmp))});
}

void append_del_record(std::string& out, std::string_view key) {
  append_command(out, {"DEL", key});
}

void append_flushall_record(std::string& out) {
  append_command(out, {"FLUSHALL"});
}

void append_snapshot(std::string& out, const keyspace& ks) {
  ks.for_each([&](const std::string& k, const entry& e) {
    append_set_record(out, k, e.value, e.expire_at);
  });
}

namespace {
bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) {
    return false;
  }
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i];
    if (x >= 'a' && x <= 'z') {
      x = static_cast<char>(x - 'a' + 'A');
    }
    if (x != b[i]) {
      return false;
    }
  }
  return true;
}
} // namespace

replay_result replay(std::string& data, keyspace& ks, std::int64_t now) {
  replay_result r;
  request_parser parser;
  std::vector<arg_ref> args;
  std::size_t pos = 0;
  for (;;) {
    args.clear();
    const std::size_t at = pos;
    const auto res = parser.next(data.data(), data.size(), pos, args);
    if (res == request_parser::result::need_more) {
      r.torn_tail = r.valid_bytes < data.size();
      break;
    }
    if (res == request_parser::result::error) {
      r.error = fmt::format("offset {}: {}", at, parser.error());
      break;
    }
    auto arg = [&](std::size_t i) {
      return std::string_view(data.data() + args[i].off, args[i].len);
    };
    const std::string_view name = arg(0);
    if (iequals(name, "SET") && (args.size() == 3 || args.size() == 5)) {
      std::int64_t at_ms = 0;
      if (args.size() == 5
          && (!iequals(arg(3), "PXAT") || !parse_i64(arg(4), at_ms) || at_ms <= 0)) {
        r.error = fmt::format("offset {}: malformed SET record", at);
        break;
      }
      ks.set(arg(1), arg(2), at_ms, now);
    } else if (iequals(name, "DEL") && args.size() == 2) {
      ks.erase(arg(1), now);
    } else if (iequals(name, "FLUSHALL") && args.size() == 1) {
      ks.clear();
    } else {
      r.error = fmt::format("offset {}: unknown record '{}'", at, name);
      break;
    }
    ++r.records;
    r.valid_bytes = pos;
  }
  return r;
}

} // namespace kv
