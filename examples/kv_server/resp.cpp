// examples/kv_server/resp.cpp: RESP2 request parsing and reply writing (see resp.hpp).
#include "resp.hpp"

#include <charconv>
#include <cstring>
#include <limits>
#include <utility>

namespace kv {

bool parse_i64(std::string_view s, std::int64_t& out) noexcept {
  // redis's string2ll, byte for byte in behaviour.
  if (s.empty() || s.size() >= 21) {
    return false;
  }
  if (s.size() == 1 && s[0] == '0') {
    out = 0;
    return true;
  }
  std::size_t i = 0;
  bool negative = false;
  if (s[0] == '-') {
    negative = true;
    ++i;
    if (i == s.size()) {
      return false;
    }
  }
  if (s[i] < '1' || s[i] > '9') {
    return false;
  }
  std::uint64_t v = static_cast<std::uint64_t>(s[i] - '0');
  ++i;
  for (; i < s.size(); ++i) {
    const char c = s[i];
    if (c < '0' || c > '9') {
      return false;
    }
    const auto digit = static_cast<std::uint64_t>(c - '0');
    if (v > std::numeric_limits<std::uint64_t>::max() / 10) {
      return false;
    }
    v *= 10;
    if (v > std::numeric_limits<std::uint64_t>::max() - digit) {
      return false;
    }
    v += digit;
  }
  if (negative) {
    constexpr auto limit = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) + 1;
    if (v > limit) {
      return false;
    }
    out = v == limit ? std::numeric_limits<std::int64_t>::min() : -static_cast<std::int64_t>(v);
  } else {
    if (v > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
      return false;
    }
    out = static_cast<std::int64_t>(v);
  }
  return true;
}

namespace {

bool is_space(char c) noexcept {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

bool is_hex(char c) noexcept {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  return c - 'A' + 10;
}

/// Splits the line buf[begin, end) like redis's sdssplitargs, writing each decoded argument
/// in place (at or before where it was read). False on unbalanced quotes.
bool split_inline(char* buf, std::size_t begin, std::size_t end, std::vector<arg_ref>& args) {
  // sdssplitargs works on a C string: a NUL byte ends the line.
  if (const void* nul = std::memchr(buf + begin, '\0', end - begin)) {
    end = static_cast<std::size_t>(static_cast<const char*>(nul) - buf);
  }
  std::size_t r = begin; // read cursor
  std::size_t w = begin; // write cursor (w <= r)
  for (;;) {
    while (r < end && is_space(buf[r])) {
      ++r;
    }
    if (r == end) {
      return true;
    }
    const std::size_t start = w;
    bool in_dq = false;
    bool in_sq = false;
    bool done = false;
    while (!done) {
      const bool has_next = r + 1 < end;
      if (in_dq) {
        if (r == end) {
          return false; // unterminated quotes
        }
        if (buf[r] == '\\' && has_next && buf[r + 1] == 'x' && r + 3 < end && is_hex(buf[r + 2])
            && is_hex(buf[r + 3])) {
          buf[w++] = static_cast<char>(hex_value(buf[r + 2]) * 16 + hex_value(buf[r + 3]));
          r += 3;
        } else if (buf[r] == '\\' && has_next) {
          ++r;
          char c = buf[r];
          switch (c) {
          case 'n':
            c = '\n';
            break;
          case 'r':
            c = '\r';
            break;
          case 't':
            c = '\t';
            break;
          case 'b':
            c = '\b';
            break;
          case 'a':
            c = '\a';
            break;
          default:
            break;
          }
          buf[w++] = c;
        } else if (buf[r] == '"') {
          // The closing quote must be followed by a space or nothing at all.
          if (has_next && !is_space(buf[r + 1])) {
            return false;
          }
          done = true;
        } else {
          buf[w++] = buf[r];
        }
      } else if (in_sq) {
        if (r == end) {
          return false;
        }
        if (buf[r] == '\\' && has_next && buf[r + 1] == '\'') {
          ++r;
          buf[w++] = '\'';
        } else if (buf[r] == '\'') {
          if (has_next && !is_space(buf[r + 1])) {
            return false;
          }
          done = true;
        } else {
          buf[w++] = buf[r];
        }
      } else {
        if (r == end) {
          done = true;
        } else {
          switch (buf[r]) {
          case ' ':
          case '\n':
          case '\r':
          case '\t':
            done = true;
            break;
          case '"':
            in_dq = true;
            break;
          case '\'':
            in_sq = true;
            break;
          default:
            buf[w++] = buf[r];
            break;
          }
        }
      }
      if (r < end) {
        ++r;
      }
    }
    args.push_back({start, w - start});
  }
}

} // namespace

request_parser::result request_parser::fail(std::string msg) {
  error_ = std::move(msg);
  return result::error;
}

void request_parser::reset() noexcept {
  remaining_ = 0;
  bulk_len_ = -1;
  progress_ = 0;
  partial_.clear();
  error_.clear();
}

request_parser::result request_parser::parse_inline(
    char* buf, std::size_t end, std::size_t& pos, std::vector<arg_ref>& args) {
  const void* nl = std::memchr(buf + pos, '\n', end - pos);
  if (nl == nullptr) {
    if (end - pos > max_inline_len) {
      return fail("Protocol error: too big inline request");
    }
    return result::need_more;
  }
  const auto line_end = static_cast<std::size_t>(static_cast<const char*>(nl) - buf);
  std::size_t stop = line_end;
  if (stop > pos && buf[stop - 1] == '\r') {
    --stop;
  }
  const std::size_t first = args.size();
  if (!split_inline(buf, pos, stop, args)) {
    args.resize(first);
    return fail("Protocol error: unbalanced quotes in request");
  }
  last_begin_ = pos;
  last_multibulk_ = false;
  pos = line_end + 1;
  return args.size() > first ? result::command : result::need_more;
}

request_parser::result
request_parser::next(char* buf, std::size_t end, std::size_t& pos, std::vector<arg_ref>& args) {
  for (;;) {
    if (remaining_ == 0) {
      // Between commands.
      if (pos >= end) {
        return result::need_more;
      }
      if (buf[pos] != '*') {
        const std::size_t before = pos;
        const result r = parse_inline(buf, end, pos, args);
        if (r == result::need_more && pos != before) {
          continue; // a blank line was skipped
        }
        return r;
      }
      const void* cr = std::memchr(buf + pos, '\r', end - pos);
      if (cr == nullptr) {
        if (end - pos > max_inline_len) {
          return fail("Protocol error: too big mbulk count string");
        }
        return result::need_more;
      }
      const auto cr_at = static_cast<std::size_t>(static_cast<const char*>(cr) - buf);
      if (cr_at + 2 > end) {
        return result::need_more; // the '\n' is not here yet
      }
      std::int64_t count = 0;
      if (!parse_i64({buf + pos + 1, cr_at - pos - 1}, count)
          || count > static_cast<std::int64_t>(max_multibulk_len)) {
        return fail("Protocol error: invalid multibulk length");
      }
      if (count <= 0) {
        pos = cr_at + 2;
        continue; // an empty command: nothing to run
      }
      remaining_ = count;
      bulk_len_ = -1;
      progress_ = cr_at + 2 - pos;
      partial_.clear();
    }
    // Inside a multibulk command that starts at `pos`: read `remaining_` bulk strings.
    std::size_t cur = pos + progress_;
    while (remaining_ > 0) {
      if (bulk_len_ < 0) {
        const void* cr = cur < end ? std::memchr(buf + cur, '\r', end - cur) : nullptr;
        if (cr == nullptr) {
          if (end - cur > max_inline_len) {
            return fail("Protocol error: too big bulk count string");
          }
          progress_ = cur - pos;
          return result::need_more;
        }
        const auto cr_at = static_cast<std::size_t>(static_cast<const char*>(cr) - buf);
        if (cr_at + 2 > end) {
          progress_ = cur - pos;
          return result::need_more;
        }
        if (buf[cur] != '$') {
          char got = buf[cur];
          if (got == '\r' || got == '\n') {
            got = ' ';
          }
          return fail(std::string("Protocol error: expected '$', got '") + got + "'");
        }
        std::int64_t len = 0;
        if (!parse_i64({buf + cur + 1, cr_at - cur - 1}, len) || len < 0
            || len > static_cast<std::int64_t>(max_bulk_len)) {
          return fail("Protocol error: invalid bulk length");
        }
        cur = cr_at + 2;
        bulk_len_ = len;
      }
      const auto len = static_cast<std::size_t>(bulk_len_);
      if (end - cur < len + 2) {
        progress_ = cur - pos;
        return result::need_more;
      }
      partial_.push_back({cur - pos, len});
      cur += len + 2; // like redis, the two bytes after the data are not checked
      bulk_len_ = -1;
      --remaining_;
    }
    for (const auto& a : partial_) {
      args.push_back({pos + a.off, a.len});
    }
    partial_.clear();
    progress_ = 0;
    last_begin_ = pos;
    last_multibulk_ = true;
    pos = cur;
    return result::command;
  }
}

void append_simple(std::string& out, std::string_view s) {
  out += '+';
  out += s;
  out += "\r\n";
}

void append_error(std::string& out, std::string_view msg) {
  out += '-';
  const std::size_t at = out.size();
  out += msg;
  for (std::size_t i = at; i < out.size(); ++i) {
    if (out[i] == '\r' || out[i] == '\n') {
      out[i] = ' ';
    }
  }
  out += "\r\n";
}

namespace {
void append_prefixed_number(std::string& out, char prefix, std::int64_t v) {
  char tmp[24];
  tmp[0] = prefix;
  auto [end, ec] = std::to_chars(tmp + 1, tmp + sizeof tmp - 2, v);
  (void)ec; // 20 digits and a sign always fit
  *end++ = '\r';
  *end++ = '\n';
  out.append(tmp, static_cast<std::size_t>(end - tmp));
}
} // namespace

void append_int(std::string& out, std::int64_t v) {
  append_prefixed_number(out, ':', v);
}

void append_bulk(std::string& out, std::string_view s) {
  append_prefixed_number(out, '$', static_cast<std::int64_t>(s.size()));
  out += s;
  out += "\r\n";
}

void append_nil(std::string& out) {
  out += "$-1\r\n";
}

void append_array_header(std::string& out, std::size_t n) {
  append_prefixed_number(out, '*', static_cast<std::int64_t>(n));
}

void append_command(std::string& out, std::initializer_list<std::string_view> args) {
  append_array_header(out, args.size());
  for (auto a : args) {
    append_bulk(out, a);
  }
}

} // namespace kv
