// examples/kv_server/batch.hpp: a batch of pipelined requests on its way from a connection to
// the shards and back: the commands parsed from one read, planned into per-shard operations
// (one message per shard per batch), executed by the shards, and assembled into the replies,
// in request order, for one write.
#pragma once

#include "keyspace.hpp"
#include "resp.hpp"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace kv {

/// What one shard does for one command (or one key of a multi-key command).
enum class op_code : std::uint8_t {
  get,      ///< reply fragment: the value or nil
  set,      ///< reply fragment: +OK, nil (NX/XX not met) or the old value (GET option)
  del,      ///< result: 1 when a live key was removed
  exists,   ///< result: 1 when the key is live
  incr_by,  ///< reply fragment: the new integer or an error
  dbsize,   ///< result: the shard's key count
  flushall, ///< removes every key of the shard
  info,     ///< result: keys, result2: keys with an expiry
  crash,    ///< reply fragment +OK; the shard fails once the batch is answered
};

/// Flags of op_code::set (redis's SET options).
enum set_flag : std::uint8_t {
  set_nx = 1,      ///< only when the key does not exist
  set_xx = 2,      ///< only when the key exists
  set_keepttl = 4, ///< keep the key's expiry
  set_get = 8,     ///< reply the old value
};

/// One operation for one shard, with its result (written by the shard, read by the
/// connection after the shard's reply).
struct shard_op {
  op_code code = op_code::get;
  std::uint8_t flags = 0;  ///< set_flag bits (set)
  std::uint32_t key = 0;   ///< argument index of the key
  std::uint32_t value = 0; ///< argument index of the value (set)
  std::int64_t num = 0;    ///< set: absolute expiry (Unix ms, 0: none); incr_by: the delta
  std::int64_t result = 0;
  std::int64_t result2 = 0;
  std::uint32_t frag_off = 0; ///< reply fragment: offset in the shard_part's `out`
  std::uint32_t frag_len = 0;
  std::uint32_t raw_off = 0; ///< set without options: the request's own bytes (in
  std::uint32_t raw_len = 0; ///< request_batch::in), logged as the AOF record; 0: none
};

/// The operations of one batch for one shard.
struct shard_part {
  std::vector<shard_op> ops;
  std::string out;     ///< reply fragments of `ops`
  bool failed = false; ///< the shard failed before answering (set by the connection)
};

/// How a command's reply is built.
enum class reply_kind : std::uint8_t {
  local,  ///< computed by the connection (in request_batch::local)
  single, ///< the fragment of one shard operation
  array,  ///< an array of the fragments of its operations (MGET)
  sum,    ///< an integer: the sum of its operations' results (DEL, EXISTS, DBSIZE)
  ok,     ///< +OK once every operation ran (MSET, FLUSHALL)
  info,   ///< the INFO text, with the shards' key counts
};

/// Where a command's operation lives.
struct op_ref {
  std::uint32_t shard;
  std::uint32_t index;
};

/// One parsed command and how to reply to it.
struct command_entry {
  reply_kind kind = reply_kind::local;
  std::uint32_t first_arg = 0; ///< index of its name in request_batch::args
  std::uint32_t argc = 0;
  std::uint32_t refs_begin = 0; ///< its operations: request_batch::refs[begin, end)
  std::uint32_t refs_end = 0;
  std::uint32_t local_off = 0; ///< kind local: its reply in request_batch::local
  std::uint32_t local_len = 0;
};

/// A growable byte buffer without zero-filling (the connection's read buffer).
class byte_buffer {
public:
  [[nodiscard]] char* data() noexcept { return data_.get(); }
  [[nodiscard]] const char* data() const noexcept { return data_.get(); }
  [[nodiscard]] std::size_t capacity() const noexcept { return cap_; }
  /// Grows to at least `n` bytes, keeping the first `keep` bytes. Throws std::bad_alloc.
  void reserve(std::size_t n, std::size_t keep);
  /// Frees the memory when it is larger than `n` bytes and none of it is kept.
  void shrink(std::size_t n) noexcept;

private:
  std::unique_ptr<char[]> data_;
  std::size_t cap_ = 0;
};

/// The requests parsed from a connection's input, the operations they became and the
/// shards' results: shared (std::shared_ptr) by the connection and the shards it asked.
///
/// Ownership protocol: the connection fills everything, then asks each shard with operations
/// to run its part; shard i writes only parts[i] and releases its reference before it
/// replies; the connection reads the parts after every reply came (the reply's wake orders
/// the writes before the reads). So no field is ever written by two threads at once. A
/// connection cancelled while it waits drops its reference; the shards still holding one
/// keep the batch alive until they are done.
struct request_batch {
  explicit request_batch(std::size_t shards)
      : parts(shards) {}

  byte_buffer in;            ///< the bytes read; every arg_ref points into it
  std::vector<arg_ref> args; ///< arguments of the complete commands
  std::vector<command_entry> commands;
  std::vector<op_ref> refs;
  std::vector<shard_part> parts; ///< one per shard
  std::string local;             ///< replies computed by the connection
  bool has_info = false;         ///< an INFO command is in the batch (assembly needs a view)

  /// The i-th argument.
  [[nodiscard]] std::string_view arg(std::size_t i) const noexcept {
    return {in.data() + args[i].off, args[i].len};
  }
  /// Forgets the commands and results (keeps `in` and the capacities).
  void clear() noexcept;
};

/// What a connection knows when it plans and assembles (for INFO, CONFIG, DEBUG).
struct server_view {
  std::size_t shards = 1;
  std::uint16_t port = 0;
  std::string dir;
  bool appendonly = true;
  std::int64_t uptime_s = 0;
  std::uint64_t shard_restarts = 0;
  std::uint64_t dead_letters = 0;
  std::int64_t connected_clients = 0;
  std::uint64_t total_connections = 0;
  std::uint64_t total_commands = 0;
  std::uint64_t connection_actors = 0; ///< connection children in the tree now
};

/// The outcome of planning a command.
enum class plan_result : std::uint8_t {
  ok,   ///< planned (local reply or operations)
  quit, ///< QUIT: reply +OK, run nothing after it, then close
};

/// The bytes a command was parsed from, when they were a multibulk request.
struct raw_request {
  std::size_t begin = 0;
  std::size_t end = 0;
  bool multibulk = false;
};

/// Plans the last command of `b` (its arguments are b.args[first, first + argc)): checks
/// arity and options the way redis does (errors become local replies with redis's text),
/// answers the commands that need no keys (PING, ECHO, CONFIG, SELECT, COMMAND, QUIT), and
/// turns the others into shard operations (one per key for multi-key commands, one per
/// shard for DBSIZE/FLUSHALL/INFO). `now` (Unix ms) makes EX/PX absolute. `raw` (optional)
/// lets a plain `SET key value` log its own bytes as its AOF record.
/// Thread-safety: the connection that owns `b`, before it asks the shards.
plan_result plan_command(
    request_batch& b,
    std::uint32_t first,
    std::uint32_t argc,
    const server_view& view,
    std::int64_t now,
    const raw_request& raw = {});

/// Runs parts[shard] of `b` on `ks` at `now` (Unix ms): writes each operation's result and
/// reply fragment, and appends the AOF records of the writes to `aof` (to be logged before
/// the reply). Returns true when an operation was DEBUG CRASH-SHARD (the caller replies, then
/// fails). Thread-safety: the shard actor `shard`, between the connection's ask and its reply.
bool execute_part(
    request_batch& b, std::size_t shard, keyspace& ks, std::string& aof, std::int64_t now);

/// Appends the replies of every command of `b`, in order, to `out` (once every part was
/// answered or marked failed). `view` fills in INFO. Thread-safety: the owning connection.
void assemble_replies(const request_batch& b, const server_view& view, std::string& out);

} // namespace kv
