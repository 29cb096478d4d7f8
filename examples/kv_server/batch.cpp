// examples/kv_server/batch.cpp: planning commands into shard operations, running a shard's
// part, assembling the replies (see batch.hpp). Error texts are redis-server 7's.
#include "batch.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstring>
#include <limits>
#include <new>
#include <string>

namespace kv {

void byte_buffer::reserve(std::size_t n, std::size_t keep) {
  if (n <= cap_) {
    return;
  }
  auto fresh = std::unique_ptr<char[]>(new char[n]); // not zero-filled: bytes are read into it
  if (keep > 0) {
    std::memcpy(fresh.get(), data_.get(), keep);
  }
  data_ = std::move(fresh);
  cap_ = n;
}

void byte_buffer::shrink(std::size_t n) noexcept {
  if (cap_ > n) {
    data_.reset();
    cap_ = 0;
  }
}

void request_batch::clear() noexcept {
  args.clear();
  commands.clear();
  refs.clear();
  for (auto& p : parts) {
    p.ops.clear();
    p.out.clear();
    p.failed = false;
  }
  local.clear();
  has_info = false;
}

namespace {

enum class cmd : std::uint8_t {
  unknown,
  ping,
  echo,
  quit,
  get,
  set,
  del,
  exists,
  incr,
  decr,
  incrby,
  decrby,
  mget,
  mset,
  dbsize,
  flushall,
  info,
  config,
  debug,
  select,
  command,
};

char upper(char c) noexcept {
  return c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c;
}

/// Case-insensitive equality with an upper-case literal.
bool is(std::string_view s, std::string_view upper_literal) noexcept {
  if (s.size() != upper_literal.size()) {
    return false;
  }
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (upper(s[i]) != upper_literal[i]) {
      return false;
    }
  }
  return true;
}

struct command_name {
  std::string_view upper;
  std::string_view lower; ///< as redis names it in errors
  cmd id;
};

constexpr std::array<command_name, 20> command_table{{
    {"GET", "get", cmd::get},
    {"SET", "set", cmd::set},
    {"DEL", "del", cmd::del},
    {"PING", "ping", cmd::ping},
    {"ECHO", "echo", cmd::echo},
    {"QUIT", "quit", cmd::quit},
    {"INCR", "incr", cmd::incr},
    {"DECR", "decr", cmd::decr},
    {"MGET", "mget", cmd::mget},
    {"MSET", "mset", cmd::mset},
    {"INFO", "info", cmd::info},
    {"DEBUG", "debug", cmd::debug},
    {"EXISTS", "exists", cmd::exists},
    {"INCRBY", "incrby", cmd::incrby},
    {"DECRBY", "decrby", cmd::decrby},
    {"DBSIZE", "dbsize", cmd::dbsize},
    {"CONFIG", "config", cmd::config},
    {"SELECT", "select", cmd::select},
    {"COMMAND", "command", cmd::command},
    {"FLUSHALL", "flushall", cmd::flushall},
}};

const command_name* lookup(std::string_view name) noexcept {
  for (const auto& c : command_table) {
    if (is(name, c.upper)) {
      return &c;
    }
  }
  return nullptr;
}

/// The prefix of `s` printf's "%.*s" prints: at most `n` bytes, stopping at a NUL.
std::string_view c_prefix(std::string_view s, std::size_t n) noexcept {
  s = s.substr(0, std::min(n, s.size()));
  return s.substr(0, std::min(s.find('\0'), s.size()));
}

/// Builds a command's reply in request_batch::local.
class local_reply {
public:
  local_reply(request_batch& b, command_entry& e) noexcept
      : b_(b)
      , e_(e)
      , start_(b.local.size()) {}
  local_reply(const local_reply&) = delete;
  local_reply& operator=(const local_reply&) = delete;
  ~local_reply() {
    e_.kind = reply_kind::local;
    e_.local_off = static_cast<std::uint32_t>(start_);
    e_.local_len = static_cast<std::uint32_t>(b_.local.size() - start_);
  }
  std::string& out() noexcept { return b_.local; }

private:
  request_batch& b_;
  command_entry& e_;
  std::size_t start_;
};

void reply_error(request_batch& b, command_entry& e, std::string_view msg) {
  local_reply r{b, e};
  append_error(r.out(), msg);
}

void reply_arity(request_batch& b, command_entry& e, std::string_view lower_name) {
  std::string msg = "ERR wrong number of arguments for '";
  msg += lower_name;
  msg += "' command";
  reply_error(b, e, msg);
}

/// Redis's glob match restricted to '*' and '?' (what CONFIG GET patterns use).
bool glob_match(std::string_view pat, std::string_view s) noexcept {
  std::size_t p = 0;
  std::size_t i = 0;
  std::size_t star = std::string_view::npos;
  std::size_t mark = 0;
  while (i < s.size()) {
    if (p < pat.size() && (pat[p] == '?' || upper(pat[p]) == upper(s[i]))) {
      ++p;
      ++i;
    } else if (p < pat.size() && pat[p] == '*') {
      star = p++;
      mark = i;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      i = ++mark;
    } else {
      return false;
    }
  }
  while (p < pat.size() && pat[p] == '*') {
    ++p;
  }
  return p == pat.size();
}

void plan_config(request_batch& b, command_entry& e, const server_view& view) {
  const std::uint32_t f = e.first_arg;
  if (e.argc < 2) {
    reply_arity(b, e, "config");
    return;
  }
  const std::string_view sub = b.arg(f + 1);
  if (is(sub, "GET")) {
    if (e.argc < 3) {
      reply_arity(b, e, "config|get");
      return;
    }
    const std::string port = std::to_string(view.port);
    const std::array<std::pair<std::string_view, std::string_view>, 6> params{{
        {"save", ""},
        {"appendonly", view.appendonly ? "yes" : "no"},
        {"appendfsync", "everysec"},
        {"dir", view.dir},
        {"port", port},
        {"databases", "1"},
    }};
    std::array<bool, params.size()> sent{};
    std::string body;
    std::size_t n = 0;
    for (std::uint32_t j = 2; j < e.argc; ++j) {
      const std::string_view pat = b.arg(f + j);
      const bool glob = pat.find_first_of("*?[") != std::string_view::npos;
      for (std::size_t k = 0; k < params.size(); ++k) {
        if (!sent[k] && glob_match(pat, params[k].first)) {
          sent[k] = true;
          append_bulk(body, glob ? params[k].first : pat); // redis echoes an exact name as given
          append_bulk(body, params[k].second);
          n += 2;
        }
      }
    }
    local_reply r{b, e};
    append_array_header(r.out(), n);
    r.out() += body;
  } else if (is(sub, "SET")) {
    if (e.argc < 4) {
      reply_arity(b, e, "config|set");
      return;
    }
    std::string msg = "ERR Unknown option or number of arguments for CONFIG SET - '";
    msg += c_prefix(b.arg(f + 2), 128);
    msg += "'";
    reply_error(b, e, msg);
  } else if (is(sub, "RESETSTAT") && e.argc == 2) {
    local_reply r{b, e};
    append_simple(r.out(), "OK");
  } else {
    std::string msg = "ERR unknown subcommand '";
    msg += c_prefix(sub, 128);
    msg += "'. Try CONFIG HELP.";
    reply_error(b, e, msg);
  }
}

enum set_option : std::uint16_t {
  opt_nx = 1,
  opt_xx = 2,
  opt_get = 4,
  opt_keepttl = 8,
  opt_ex = 16,
  opt_px = 32,
  opt_exat = 64,
  opt_pxat = 128,
};

/// SET's options as redis 7's parseExtendedStringArgumentsOrReply and
/// getExpireMillisecondsOrReply check them. False when an error reply was written.
bool plan_set(request_batch& b, command_entry& e, std::int64_t now, shard_op& op) {
  const std::uint32_t f = e.first_arg;
  unsigned opts = 0;
  std::uint32_t expire_arg = 0;
  for (std::uint32_t j = 3; j < e.argc; ++j) {
    const std::string_view o = b.arg(f + j);
    const bool has_next = j + 1 < e.argc;
    constexpr unsigned ttl = opt_keepttl | opt_ex | opt_px | opt_exat | opt_pxat;
    if (is(o, "NX") && (opts & opt_xx) == 0) {
      opts |= opt_nx;
    } else if (is(o, "XX") && (opts & opt_nx) == 0) {
      opts |= opt_xx;
    } else if (is(o, "GET")) {
      opts |= opt_get;
    } else if (is(o, "KEEPTTL") && (opts & (ttl & ~opt_keepttl)) == 0) {
      opts |= opt_keepttl;
    } else if (is(o, "EX") && (opts & (ttl & ~opt_ex)) == 0 && has_next) {
      opts |= opt_ex;
      expire_arg = ++j;
    } else if (is(o, "PX") && (opts & (ttl & ~opt_px)) == 0 && has_next) {
      opts |= opt_px;
      expire_arg = ++j;
    } else if (is(o, "EXAT") && (opts & (ttl & ~opt_exat)) == 0 && has_next) {
      opts |= opt_exat;
      expire_arg = ++j;
    } else if (is(o, "PXAT") && (opts & (ttl & ~opt_pxat)) == 0 && has_next) {
      opts |= opt_pxat;
      expire_arg = ++j;
    } else {
      reply_error(b, e, "ERR syntax error");
      return false;
    }
  }
  op.flags = static_cast<std::uint8_t>(
      ((opts & opt_nx) != 0 ? set_nx : 0) | ((opts & opt_xx) != 0 ? set_xx : 0)
      | ((opts & opt_keepttl) != 0 ? set_keepttl : 0) | ((opts & opt_get) != 0 ? set_get : 0));
  op.num = 0;
  if (expire_arg != 0) {
    std::int64_t v = 0;
    if (!parse_i64(b.arg(f + expire_arg), v)) {
      reply_error(b, e, "ERR value is not an integer or out of range");
      return false;
    }
    constexpr auto max = std::numeric_limits<std::int64_t>::max();
    const bool seconds = (opts & (opt_ex | opt_exat)) != 0;
    const bool relative = (opts & (opt_ex | opt_px)) != 0;
    if (v <= 0 || (seconds && v > max / 1000)) {
      reply_error(b, e, "ERR invalid expire time in 'set' command");
      return false;
    }
    if (seconds) {
      v *= 1000;
    }
    if (relative) {
      if (v > max - now) {
        reply_error(b, e, "ERR invalid expire time in 'set' command");
        return false;
      }
      v += now;
    }
    op.num = v;
  }
  return true;
}

} // namespace

plan_result plan_command(
    request_batch& b,
    std::uint32_t first,
    std::uint32_t argc,
    const server_view& view,
    std::int64_t now,
    const raw_request& raw) {
  command_entry& e = b.commands.emplace_back();
  e.first_arg = first;
  e.argc = argc;
  e.refs_begin = static_cast<std::uint32_t>(b.refs.size());
  e.refs_end = e.refs_begin;
  const std::size_t shards = b.parts.size();
  auto add_op = [&](std::size_t shard, const shard_op& op) {
    auto& ops = b.parts[shard].ops;
    b.refs.push_back({static_cast<std::uint32_t>(shard), static_cast<std::uint32_t>(ops.size())});
    ops.push_back(op);
    e.refs_end = static_cast<std::uint32_t>(b.refs.size());
  };
  auto key_op = [&](op_code code, std::uint32_t key_arg) {
    shard_op op;
    op.code = code;
    op.key = key_arg;
    add_op(shard_of(b.arg(key_arg), shards), op);
  };
  auto every_shard = [&](op_code code) {
    shard_op op;
    op.code = code;
    for (std::size_t s = 0; s < shards; ++s) {
      add_op(s, op);
    }
  };

  const std::string_view name = b.arg(first);
  const command_name* c = lookup(name);
  if (c == nullptr) {
    // "unknown command '%.128s', with args beginning with: " + "'%.*s' " per argument while
    // the list is shorter than 128 bytes (redis 7's processCommand).
    std::string args;
    for (std::uint32_t j = 1; j < argc && args.size() < 128; ++j) {
      const std::size_t room = 128 - args.size();
      args += '\'';
      args += c_prefix(b.arg(first + j), room);
      args += "' ";
    }
    std::string msg = "ERR unknown command '";
    msg += c_prefix(name, 128);
    msg += "', with args beginning with: ";
    msg += args;
    reply_error(b, e, msg);
    return plan_result::ok;
  }

  switch (c->id) {
  case cmd::ping:
    if (argc > 2) {
      reply_arity(b, e, c->lower);
    } else {
      local_reply r{b, e};
      if (argc == 1) {
        append_simple(r.out(), "PONG");
      } else {
        append_bulk(r.out(), b.arg(first + 1));
      }
    }
    break;
  case cmd::echo:
    if (argc != 2) {
      reply_arity(b, e, c->lower);
    } else {
      local_reply r{b, e};
      append_bulk(r.out(), b.arg(first + 1));
    }
    break;
  case cmd::quit: {
    local_reply r{b, e};
    append_simple(r.out(), "OK");
    return plan_result::quit;
  }
  case cmd::get:
    if (argc != 2) {
      reply_arity(b, e, c->lower);
    } else {
      e.kind = reply_kind::single;
      key_op(op_code::get, first + 1);
    }
    break;
  case cmd::set: {
    if (argc < 3) {
      reply_arity(b, e, c->lower);
      break;
    }
    shard_op op;
    op.code = op_code::set;
    op.key = first + 1;
    op.value = first + 2;
    if (plan_set(b, e, now, op)) {
      if (argc == 3 && raw.multibulk && raw.end > raw.begin) {
        op.raw_off = static_cast<std::uint32_t>(raw.begin);
        op.raw_len = static_cast<std::uint32_t>(raw.end - raw.begin);
      }
      e.kind = reply_kind::single;
      add_op(shard_of(b.arg(op.key), shards), op);
    }
    break;
  }
  case cmd::del:
  case cmd::exists:
    if (argc < 2) {
      reply_arity(b, e, c->lower);
    } else {
      e.kind = reply_kind::sum;
      for (std::uint32_t j = 1; j < argc; ++j) {
        key_op(c->id == cmd::del ? op_code::del : op_code::exists, first + j);
      }
    }
    break;
  case cmd::incr:
  case cmd::decr:
  case cmd::incrby:
  case cmd::decrby: {
    const bool by = c->id == cmd::incrby || c->id == cmd::decrby;
    if (argc != (by ? 3U : 2U)) {
      reply_arity(b, e, c->lower);
      break;
    }
    std::int64_t delta = 1;
    if (by && !parse_i64(b.arg(first + 2), delta)) {
      reply_error(b, e, "ERR value is not an integer or out of range");
      break;
    }
    if (c->id == cmd::decr || c->id == cmd::decrby) {
      if (delta == std::numeric_limits<std::int64_t>::min()) {
        reply_error(b, e, "ERR decrement would overflow");
        break;
      }
      delta = -delta;
    }
    shard_op op;
    op.code = op_code::incr_by;
    op.key = first + 1;
    op.num = delta;
    e.kind = reply_kind::single;
    add_op(shard_of(b.arg(op.key), shards), op);
    break;
  }
  case cmd::mget:
    if (argc < 2) {
      reply_arity(b, e, c->lower);
    } else {
      e.kind = reply_kind::array;
      for (std::uint32_t j = 1; j < argc; ++j) {
        key_op(op_code::get, first + j);
      }
    }
    break;
  case cmd::mset:
    if (argc < 3 || argc % 2 == 0) {
      reply_arity(b, e, c->lower);
    } else {
      e.kind = reply_kind::ok;
      for (std::uint32_t j = 1; j < argc; j += 2) {
        shard_op op;
        op.code = op_code::set;
        op.key = first + j;
        op.value = first + j + 1;
        add_op(shard_of(b.arg(op.key), shards), op);
      }
    }
    break;
  case cmd::dbsize:
    if (argc != 1) {
      reply_arity(b, e, c->lower);
    } else {
      e.kind = reply_kind::sum;
      every_shard(op_code::dbsize);
    }
    break;
  case cmd::flushall:
    if (argc > 2
        || (argc == 2 && !is(b.arg(first + 1), "ASYNC") && !is(b.arg(first + 1), "SYNC"))) {
      reply_error(b, e, "ERR syntax error");
    } else {
      e.kind = reply_kind::ok;
      every_shard(op_code::flushall);
    }
    break;
  case cmd::info:
    e.kind = reply_kind::info;
    b.has_info = true;
    every_shard(op_code::info);
    break;
  case cmd::config:
    plan_config(b, e, view);
    break;
  case cmd::debug: {
    if (argc < 2) {
      reply_arity(b, e, c->lower);
      break;
    }
    const std::string_view sub = b.arg(first + 1);
    if (!is(sub, "CRASH-SHARD")) {
      std::string msg = "ERR unknown subcommand '";
      msg += c_prefix(sub, 128);
      msg += "'. Try DEBUG HELP.";
      reply_error(b, e, msg);
      break;
    }
    std::int64_t n = 0;
    if (argc != 3) {
      reply_arity(b, e, "debug|crash-shard");
    } else if (!parse_i64(b.arg(first + 2), n)) {
      reply_error(b, e, "ERR value is not an integer or out of range");
    } else if (n < 0 || static_cast<std::uint64_t>(n) >= shards) {
      reply_error(b, e, fmt::format("ERR shard index out of range (0..{})", shards - 1));
    } else {
      shard_op op;
      op.code = op_code::crash;
      e.kind = reply_kind::single;
      add_op(static_cast<std::size_t>(n), op);
    }
    break;
  }
  case cmd::select: {
    std::int64_t db = 0;
    if (argc != 2) {
      reply_arity(b, e, c->lower);
    } else if (!parse_i64(b.arg(first + 1), db)) {
      reply_error(b, e, "ERR value is not an integer or out of range");
    } else if (db != 0) {
      reply_error(b, e, "ERR DB index is out of range");
    } else {
      local_reply r{b, e};
      append_simple(r.out(), "OK");
    }
    break;
  }
  case cmd::command: {
    local_reply r{b, e};
    append_array_header(r.out(), 0);
    break;
  }
  case cmd::unknown:
    break;
  }
  return plan_result::ok;
}

bool execute_part(
    request_batch& b, std::size_t shard, keyspace& ks, std::string& aof, std::int64_t now) {
  shard_part& part = b.parts[shard];
  std::string& out = part.out;
  bool crash = false;
  char num[24];
  for (shard_op& op : part.ops) {
    const std::size_t start = out.size();
    switch (op.code) {
    case op_code::get: {
      const entry* e = ks.find(b.arg(op.key), now);
      if (e != nullptr) {
        append_bulk(out, e->value);
      } else {
        append_nil(out);
      }
      break;
    }
    case op_code::set: {
      const std::string_view key = b.arg(op.key);
      const std::string_view value = b.arg(op.value);
      std::int64_t expire_at = op.num;
      if (op.flags != 0) {
        const entry* old = ks.find(key, now);
        if ((op.flags & set_get) != 0) {
          if (old != nullptr) {
            append_bulk(out, old->value);
          } else {
            append_nil(out);
          }
        }
        if (((op.flags & set_nx) != 0 && old != nullptr)
            || ((op.flags & set_xx) != 0 && old == nullptr)) {
          if ((op.flags & set_get) == 0) {
            append_nil(out);
          }
          break;
        }
        if ((op.flags & set_keepttl) != 0 && old != nullptr) {
          expire_at = old->expire_at;
        }
      }
      if (ks.set(key, value, expire_at, now) != nullptr) {
        if (op.raw_len != 0) {
          aof.append(b.in.data() + op.raw_off, op.raw_len); // "*3 $3 SET key value" as sent
        } else {
          append_set_record(aof, key, value, expire_at);
        }
      } else {
        append_del_record(aof, key); // an expiry already in the past removes the key
      }
      if ((op.flags & set_get) == 0) {
        out += "+OK\r\n";
      }
      break;
    }
    case op_code::del:
      op.result = ks.erase(b.arg(op.key), now) ? 1 : 0;
      if (op.result != 0) {
        append_del_record(aof, b.arg(op.key));
      }
      break;
    case op_code::exists:
      op.result = ks.find(b.arg(op.key), now) != nullptr ? 1 : 0;
      break;
    case op_code::incr_by: {
      const std::string_view key = b.arg(op.key);
      entry* e = ks.find(key, now);
      std::int64_t v = 0;
      if (e != nullptr && !parse_i64(e->value, v)) {
        append_error(out, "ERR value is not an integer or out of range");
        break;
      }
      const std::int64_t d = op.num;
      if ((d < 0 && v < 0 && d < std::numeric_limits<std::int64_t>::min() - v)
          || (d > 0 && v > 0 && d > std::numeric_limits<std::int64_t>::max() - v)) {
        append_error(out, "ERR increment or decrement would overflow");
        break;
      }
      v += d;
      auto [end, ec] = std::to_chars(num, num + sizeof num, v);
      (void)ec;
      const std::string_view text(num, static_cast<std::size_t>(end - num));
      std::int64_t expire_at = 0;
      if (e != nullptr) {
        e->value.assign(text); // keeps the expiry, as redis's INCR
        expire_at = e->expire_at;
      } else {
        ks.set(key, text, 0, now);
      }
      append_set_record(aof, key, text, expire_at);
      append_int(out, v);
      break;
    }
    case op_code::dbsize:
      op.result = static_cast<std::int64_t>(ks.size());
      break;
    case op_code::flushall:
      ks.clear();
      append_flushall_record(aof);
      break;
    case op_code::info:
      op.result = static_cast<std::int64_t>(ks.size());
      op.result2 = static_cast<std::int64_t>(ks.expires());
      break;
    case op_code::crash:
      out += "+OK\r\n";
      crash = true;
      break;
    }
    op.frag_off = static_cast<std::uint32_t>(start);
    op.frag_len = static_cast<std::uint32_t>(out.size() - start);
  }
  return crash;
}

namespace {

void append_info(
    const request_batch& b,
    const command_entry& e,
    const server_view& view,
    std::int64_t keys,
    std::int64_t expires,
    std::string& out) {
  struct section {
    std::string_view name;
    std::string body;
  };
  const std::int64_t up = view.uptime_s;
  const std::array<section, 6> sections{{
      {"Server",
       fmt::format(
           "redis_version:7.0.0\r\nkv_server_version:0.1.0\r\nprocess_id:{}\r\ntcp_port:{}\r\n"
           "uptime_in_seconds:{}\r\nuptime_in_days:{}\r\n",
           ::getpid(),
           view.port,
           up,
           up / 86400)},
      {"Clients", fmt::format("connected_clients:{}\r\n", view.connected_clients)},
      {"Persistence",
       fmt::format("aof_enabled:{}\r\naof_fsync:everysec\r\n", view.appendonly ? 1 : 0)},
      {"Stats",
       fmt::format(
           "total_connections_received:{}\r\ntotal_commands_processed:{}\r\n",
           view.total_connections,
           view.total_commands)},
      {"Bastion",
       fmt::format(
           "shards:{}\r\nkeys:{}\r\nshard_restarts:{}\r\nconnection_actors:{}\r\n"
           "dead_letters:{}\r\n",
           view.shards,
           keys,
           view.shard_restarts,
           view.connection_actors,
           view.dead_letters)},
      {"Keyspace",
       keys > 0 ? fmt::format("db0:keys={},expires={},avg_ttl=0\r\n", keys, expires)
                : std::string()},
  }};
  bool all = e.argc == 1;
  for (std::uint32_t j = 1; j < e.argc; ++j) {
    const std::string_view a = b.arg(e.first_arg + j);
    all = all || is(a, "ALL") || is(a, "DEFAULT") || is(a, "EVERYTHING");
  }
  std::string text;
  for (const auto& s : sections) {
    bool wanted = all;
    for (std::uint32_t j = 1; j < e.argc && !wanted; ++j) {
      const std::string_view a = b.arg(e.first_arg + j);
      wanted = a.size() == s.name.size()
               && std::equal(a.begin(), a.end(), s.name.begin(), [](char x, char y) {
                    return upper(x) == upper(y);
                  });
    }
    if (!wanted) {
      continue;
    }
    if (!text.empty()) {
      text += "\r\n";
    }
    text += "# ";
    text += s.name;
    text += "\r\n";
    text += s.body;
  }
  append_bulk(out, text);
}

} // namespace

void assemble_replies(const request_batch& b, const server_view& view, std::string& out) {
  for (const command_entry& e : b.commands) {
    if (e.kind == reply_kind::local) {
      out.append(b.local, e.local_off, e.local_len);
      continue;
    }
    std::uint32_t failed_shard = 0;
    bool failed = false;
    for (std::uint32_t r = e.refs_begin; r < e.refs_end && !failed; ++r) {
      if (b.parts[b.refs[r].shard].failed) {
        failed = true;
        failed_shard = b.refs[r].shard;
      }
    }
    if (failed) {
      append_error(
          out,
          fmt::format(
              "ERR shard {} failed before answering; the command may not have run", failed_shard));
      continue;
    }
    auto op = [&](std::uint32_t r) -> const shard_op& {
      return b.parts[b.refs[r].shard].ops[b.refs[r].index];
    };
    auto frag = [&](std::uint32_t r) {
      const shard_op& o = op(r);
      out.append(b.parts[b.refs[r].shard].out, o.frag_off, o.frag_len);
    };
    switch (e.kind) {
    case reply_kind::local:
      break;
    case reply_kind::single:
      frag(e.refs_begin);
      break;
    case reply_kind::array:
      append_array_header(out, e.refs_end - e.refs_begin);
      for (std::uint32_t r = e.refs_begin; r < e.refs_end; ++r) {
        frag(r);
      }
      break;
    case reply_kind::sum: {
      std::int64_t n = 0;
      for (std::uint32_t r = e.refs_begin; r < e.refs_end; ++r) {
        n += op(r).result;
      }
      append_int(out, n);
      break;
    }
    case reply_kind::ok:
      out += "+OK\r\n";
      break;
    case reply_kind::info: {
      std::int64_t keys = 0;
      std::int64_t expires = 0;
      for (std::uint32_t r = e.refs_begin; r < e.refs_end; ++r) {
        keys += op(r).result;
        expires += op(r).result2;
      }
      append_info(b, e, view, keys, expires, out);
      break;
    }
    }
  }
}

} // namespace kv
