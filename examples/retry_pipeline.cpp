// examples/retry_pipeline.cpp: a supervised parser over a real file.
//
// main writes 1,000 records ("<id>,<value>") to a file in a temporary directory; every 20th
// record is malformed. A "parser" actor reads the file record by record and tells each good
// record to a "tally" actor. A malformed record makes the parser throw; its supervisor restarts
// it with backoff. The read position lives outside the incarnation (in state the group's body
// captures), and the before_restart callback, which receives the failure, reports the bad
// record to the tally and moves the position past it, so the next incarnation resumes right
// after it: nothing is lost, nothing is counted twice. At end of file the parser tells the
// tally, which answers main's question. Exit 1 unless good + bad == total, every id was seen
// exactly once, and the sum of good values is right.
#include <bastion/bastion.hpp>

#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

using namespace std::chrono_literals;

namespace {

constexpr std::size_t total_records = 1000;

struct good_record {
  std::size_t id;
  std::uint64_t value;
};
struct bad_record {
  std::size_t line;
  std::string text;
  std::string why;
};
struct end_of_file {};
struct summary_request {};
struct summary {
  std::size_t good = 0;
  std::size_t bad = 0;
  std::size_t duplicates = 0;
  std::size_t missing = 0;
  std::uint64_t sum = 0;
};

/// What a malformed record throws (the failure's exception).
class malformed_record : public std::runtime_error {
public:
  malformed_record(std::size_t line, std::string text, std::string why, std::streamoff next)
      : std::runtime_error(
            "malformed record on line " + std::to_string(line) + ": \"" + text + "\"")
      , line_(line)
      , text_(std::move(text))
      , why_(std::move(why))
      , next_(next) {}
  std::size_t line_;
  std::string text_;
  std::string why_;
  std::streamoff next_; ///< where the record after it starts
};

/// The parser's position: survives restarts. Written by the parser's body and by the
/// before_restart callback, never at the same time (the callback runs once the failed
/// incarnation has ended and before the next one is spawned).
struct cursor {
  std::streamoff offset = 0;
  std::size_t line = 0; ///< lines consumed (committed) so far
};

good_record parse(const std::string& text) {
  const auto comma = text.find(',');
  if (comma == std::string::npos || comma == 0 || comma + 1 == text.size()) {
    throw std::invalid_argument("expected <id>,<value>");
  }
  std::size_t used = 0;
  const auto id = std::stoull(text.substr(0, comma), &used);
  if (used != comma) {
    throw std::invalid_argument("bad id");
  }
  const auto digits = text.substr(comma + 1);
  const auto value = std::stoull(digits, &used);
  if (used != digits.size()) {
    throw std::invalid_argument("bad value");
  }
  return {static_cast<std::size_t>(id), value};
}

/// Writes the input: record i is "i,i*3" except every 20th, which is malformed in one of
/// four ways. Returns {expected good count, expected sum of good values}.
std::pair<std::size_t, std::uint64_t> write_input(const std::filesystem::path& file) {
  std::ofstream out(file);
  std::size_t good = 0;
  std::uint64_t sum = 0;
  const char* broken[] = {"%zu;%zu", "%zu,", "%zu,x%zu", ",%zu%zu"};
  for (std::size_t i = 0; i < total_records; ++i) {
    if (i % 20 == 7) {
      char buf[64];
      std::snprintf(buf, sizeof buf, broken[(i / 20) % 4], i, i * 3);
      out << buf << '\n';
    } else {
      out << i << ',' << i * 3 << '\n';
      ++good;
      sum += i * 3;
    }
  }
  return {good, sum};
}

} // namespace

int main() {
  // The supervisor logs every failure at warn: keep the output to what this example prints.
  bastion::system sys{bastion::config{}.workers(2).log_level("off")};

  const auto dir =
      std::filesystem::temp_directory_path() / ("bastion-retry-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto file = dir / "records.csv";
  const auto [expected_good, expected_sum] = write_input(file);
  std::printf(
      "wrote %zu records to %s (%zu malformed)\n",
      total_records,
      file.c_str(),
      total_records - expected_good);

  auto tally = sys.children([](bastion::children_builder& c) {
    c.name("tally").exec([](bastion::context& ctx) -> bastion::task<> {
      summary s;
      std::vector<int> seen(total_records, 0);
      bool eof = false;
      std::optional<bastion::question<summary_request>> waiting;
      for (;;) {
        bastion::match(
            co_await ctx.recv(),
            [&](good_record&& r) {
              ++s.good;
              s.sum += r.value;
              s.duplicates += r.id < total_records && seen[r.id]++ > 0 ? 1 : 0;
            },
            [&](bad_record&& r) {
              ++s.bad;
              std::printf(
                  "  bad record, line %zu: \"%s\" (%s)\n", r.line, r.text.c_str(), r.why.c_str());
              // a malformed record's id is its line number - 1
              s.duplicates += r.line - 1 < total_records && seen[r.line - 1]++ > 0 ? 1 : 0;
            },
            [&](end_of_file&&) { eof = true; },
            [&](bastion::question<summary_request> q) { waiting.emplace(std::move(q)); },
            bastion::otherwise([](bastion::message&&) {}));
        if (eof && waiting) {
          for (int n : seen) {
            s.missing += n == 0 ? 1 : 0;
          }
          waiting->reply(s);
          waiting.reset();
        }
      }
    });
  });
  const auto tally_ref = tally.elems().at(0);

  auto pos = std::make_shared<cursor>();
  std::size_t restarts = 0; // written only by the callback (the supervisor's proc)
  sys.supervisor([&](bastion::supervisor_builder& s) {
    s.restart(bastion::restart_strategy{}
                  .policy(bastion::restart_policy::always())
                  .backoff(bastion::backoff::exponential(1ms, 1.5, 10ms)) // 1, 1.5, ... 10 ms
                  .intensity(100, 10s)); // a storm of failures would escalate
    s.children([&](bastion::children_builder& c) {
      c.name("parser")
          .exec([pos, file, tally_ref](bastion::context& ctx) -> bastion::task<> {
            std::ifstream in(file);
            in.seekg(pos->offset);
            std::string text;
            while (std::getline(in, text)) {
              const std::streamoff next = in.tellg();
              const std::size_t line = pos->line + 1;
              good_record r;
              try {
                r = parse(text);
              } catch (const std::exception& e) {
                throw malformed_record(line, text, e.what(), next); // the actor fails
              }
              ctx.tell(tally_ref, r);
              pos->offset = next; // committed: a restart resumes after it
              pos->line = line;
            }
            ctx.tell(tally_ref, end_of_file{});
            co_return; // finished for good
          })
          .before_restart([&, pos](const bastion::failure& f) {
            ++restarts;
            try {
              std::rethrow_exception(f.error);
            } catch (const malformed_record& e) {
              tally_ref.tell(bad_record{e.line_, e.text_, e.why_});
              pos->offset = e.next_; // skip it: the next incarnation resumes after it
              pos->line = e.line_;
            } catch (...) {
              // any other failure: retry the same record
            }
          });
    });
  });

  sys.start();
  const auto t0 = std::chrono::steady_clock::now();
  const summary s = sys.runtime().run(tally_ref.ask<summary>(summary_request{}, 4s));
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  sys.stop();
  sys.block_until_stopped();
  std::filesystem::remove_all(dir);

  std::printf(
      "good %zu + bad %zu = %zu of %zu records; %zu restarts; %zu duplicates, %zu missing; "
      "sum %llu (expected %llu); %.0f ms\n",
      s.good,
      s.bad,
      s.good + s.bad,
      total_records,
      restarts,
      s.duplicates,
      s.missing,
      static_cast<unsigned long long>(s.sum),
      static_cast<unsigned long long>(expected_sum),
      ms);
  const bool ok = s.good + s.bad == total_records && s.good == expected_good && s.duplicates == 0
                  && s.missing == 0 && s.sum == expected_sum && restarts == s.bad;
  std::printf("%s\n", ok ? "OK: nothing lost, nothing counted twice" : "FAILED");
  return ok ? 0 : 1;
}
