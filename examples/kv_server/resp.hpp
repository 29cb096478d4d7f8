// examples/kv_server/resp.hpp: the RESP2 wire format as redis-server 7 speaks it: a resumable
// request parser (multibulk and inline commands, with redis's limits and error texts) and the
// reply writers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace kv {

/// Largest bulk string a request may declare (redis's proto-max-bulk-len): 512 MiB.
inline constexpr std::size_t max_bulk_len = std::size_t{512} * 1024 * 1024;
/// Largest element count a multibulk request may declare: 1024 * 1024.
inline constexpr std::size_t max_multibulk_len = std::size_t{1024} * 1024;
/// Longest inline request, or multibulk/bulk count line, without a newline: 64 KiB.
inline constexpr std::size_t max_inline_len = std::size_t{64} * 1024;

/// Parses `s` as a signed 64-bit decimal exactly as redis's string2ll does: an optional '-',
/// no '+', no spaces, no leading zeros ("0" alone is fine, "-0" is not), at most 20 chars.
/// @return false (and `out` untouched) when `s` is not such a number or overflows.
/// Thread-safety: pure. Complexity: O(|s|).
[[nodiscard]] bool parse_i64(std::string_view s, std::int64_t& out) noexcept;

/// An argument of a parsed request: `len` bytes at offset `off` of the parser's buffer.
struct arg_ref {
  std::size_t off = 0; ///< byte offset in the buffer the command was parsed from
  std::size_t len = 0; ///< length in bytes
};

/// A resumable RESP2 request parser (after redis's processMultibulkBuffer and
/// processInlineBuffer).
///
/// The caller owns the byte buffer; the parser reads it from `pos` up to `end` and yields one
/// command at a time as argument references into it. A command that is not complete yet
/// leaves `pos` at the command's first byte and the parser mid-command: it remembers how far
/// it got (relative to that first byte), so nothing is rescanned when the caller calls again
/// with more bytes after `end`. The caller may move the bytes from `pos` on (e.g. to the
/// start of its buffer) between calls, but must not change them.
/// Declared lengths are checked before the parser waits for (or the caller allocates) the
/// bytes: a bulk over max_bulk_len, a count over max_multibulk_len or a count line longer
/// than max_inline_len is a protocol error. Inline commands (a line not starting with '*')
/// are split like redis's sdssplitargs, quotes and escapes decoded in place (the buffer is
/// written to; a decoded argument never grows).
///
/// After result::error the parser must not be used again (reset() it); redis answers
/// `-ERR <error()>` and closes the connection.
/// Thread-safety: one owner.
class request_parser {
public:
  /// What next() found.
  enum class result : std::uint8_t {
    command,   ///< a complete command with at least one argument was appended to `args`
    need_more, ///< the buffer ends before the next command is complete
    error,     ///< a protocol error; see error()
  };

  /// Parses the next command of `buf[pos, end)`, skipping empty ones (`*0`, `*-1`, blank
  /// inline lines). On result::command appends the command's arguments to `args` (offsets
  /// into `buf`) and moves `pos` past it; on need_more leaves `pos` at the first byte of the
  /// incomplete command (past skipped empty ones); on error leaves `pos` at the offending
  /// request.
  /// @param buf the caller's buffer (inline arguments are unescaped in place)
  /// @param end bytes of `buf` that are valid
  /// @param pos where the next command starts, in bytes; updated
  /// Complexity: O(bytes consumed) plus the newline searches of incomplete lines.
  result next(char* buf, std::size_t end, std::size_t& pos, std::vector<arg_ref>& args);

  /// The protocol error after result::error, e.g. "Protocol error: invalid bulk length".
  [[nodiscard]] const std::string& error() const noexcept { return error_; }
  /// Where the command next() returned last began (its first byte in the buffer), and
  /// whether it was a multibulk request (its bytes [last_begin(), pos) are then a RESP array
  /// of bulk strings, e.g. reusable as an AOF record) rather than an inline one.
  [[nodiscard]] std::size_t last_begin() const noexcept { return last_begin_; }
  [[nodiscard]] bool last_multibulk() const noexcept { return last_multibulk_; }
  /// True while a multibulk command is partially parsed.
  [[nodiscard]] bool in_command() const noexcept { return remaining_ > 0; }
  /// Forgets any partial command and error.
  void reset() noexcept;

private:
  result fail(std::string msg);
  result parse_inline(char* buf, std::size_t end, std::size_t& pos, std::vector<arg_ref>& args);

  std::int64_t remaining_ = 0;   ///< arguments of the current multibulk still to read
  std::int64_t bulk_len_ = -1;   ///< length of the bulk being read; -1 while its header is unread
  std::size_t progress_ = 0;     ///< bytes of the current multibulk parsed, from its first byte
  std::vector<arg_ref> partial_; ///< its arguments so far, offsets from its first byte
  std::string error_;
  std::size_t last_begin_ = 0;
  bool last_multibulk_ = false;
};

/// Reply writers: each appends one RESP2 value to `out`. Thread-safety: pure.
/// `+s\r\n` (s must not contain CR or LF).
void append_simple(std::string& out, std::string_view s);
/// `-msg\r\n`; `msg` is the whole error text ("ERR ..."), CR and LF become spaces as in redis.
void append_error(std::string& out, std::string_view msg);
/// `:v\r\n`.
void append_int(std::string& out, std::int64_t v);
/// `$len\r\ns\r\n`.
void append_bulk(std::string& out, std::string_view s);
/// `$-1\r\n` (the null bulk string).
void append_nil(std::string& out);
/// `*n\r\n` (an array header; the n elements follow).
void append_array_header(std::string& out, std::size_t n);
/// A request as a multibulk array of bulk strings (`*n\r\n$len\r\narg\r\n...`), the form
/// clients send and the AOF stores.
void append_command(std::string& out, std::initializer_list<std::string_view> args);

} // namespace kv
