// examples/broadcast.cpp: a pipeline over named groups. "input" broadcasts each batch of numbers
// to the "workers" group (one shared, immutable copy); each of the 3 workers sums its share
// (the numbers whose index modulo 3 is its rank) and tells the partial sum to "output", which
// answers main once every partial of every batch has arrived. Groups find each other by name.
#include <bastion/bastion.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <numeric>
#include <optional>
#include <utility>
#include <vector>

using namespace std::chrono_literals;

namespace {
struct partial {
  std::size_t batch;
  std::size_t rank;
  std::uint64_t sum;
};
struct total_request {
  std::size_t batches;
};
constexpr std::size_t n_workers = 3;
} // namespace

int main() {
  bastion::system sys{bastion::config{}.workers(2)};

  sys.children([&sys](bastion::children_builder& c) {
    c.name("input").exec([&sys](bastion::context& ctx) -> bastion::task<> {
      std::size_t batch = 0;
      for (;;) {
        auto msg = co_await ctx.recv();
        bastion::match(
            std::move(msg),
            [&](std::vector<std::uint64_t>&& numbers) {
              auto workers = sys.find_group("workers"); // by name: no ref passed around
              const auto n = workers ? workers->broadcast(std::pair{batch, std::move(numbers)}) : 0;
              std::printf("input: batch %zu broadcast to %zu workers\n", batch, n);
              ++batch;
            },
            bastion::otherwise([](bastion::message&&) {}));
      }
    });
  });
  sys.children([&sys](bastion::children_builder& c) {
    c.name("workers").redundancy(n_workers).exec([&sys](bastion::context& ctx) -> bastion::task<> {
      // This worker's rank: its position among the group's members.
      const auto members = ctx.parent().elems();
      const auto rank = static_cast<std::size_t>(
          std::find(members.begin(), members.end(), ctx.signature()) - members.begin());
      const auto output = sys.find_group("output");
      for (;;) {
        auto msg = co_await ctx.recv();
        bastion::match(
            std::move(msg),
            [&](bastion::broadcast<std::pair<std::size_t, std::vector<std::uint64_t>>> const& b) {
              std::uint64_t s = 0;
              for (std::size_t i = rank; i < b->second.size(); i += n_workers) {
                s += b->second[i];
              }
              ctx.tell(output->elems().at(0), partial{b->first, rank, s});
            },
            bastion::otherwise([](bastion::message&&) {}));
      }
    });
  });
  sys.children([](bastion::children_builder& c) {
    c.name("output").exec([](bastion::context& ctx) -> bastion::task<> {
      std::uint64_t total = 0;
      std::size_t partials = 0;
      std::optional<bastion::question<total_request>> waiting;
      for (;;) {
        auto msg = co_await ctx.recv();
        bastion::match(
            std::move(msg),
            [&](partial&& p) {
              std::printf(
                  "output: batch %zu, worker %zu: %llu\n",
                  p.batch,
                  p.rank,
                  static_cast<unsigned long long>(p.sum));
              total += p.sum;
              ++partials;
            },
            [&](bastion::question<total_request> q) { waiting.emplace(std::move(q)); },
            bastion::otherwise([](bastion::message&&) {}));
        if (waiting && partials == waiting->value().batches * n_workers) {
          waiting->reply(total);
          waiting.reset();
        }
      }
    });
  });

  sys.start();
  const auto input = sys.find_group("input").value().elems().at(0);
  constexpr std::size_t batches = 4;
  std::uint64_t expected = 0;
  for (std::size_t b = 0; b < batches; ++b) {
    std::vector<std::uint64_t> numbers(1000);
    std::iota(numbers.begin(), numbers.end(), b * 1000 + 1);
    expected = std::accumulate(numbers.begin(), numbers.end(), expected);
    input.tell(std::move(numbers));
  }
  const auto output = sys.find_group("output").value().elems().at(0);
  const auto total = sys.runtime().run(output.ask<std::uint64_t>(total_request{batches}, 3s));
  std::printf(
      "total %llu (expected %llu)\n",
      static_cast<unsigned long long>(total),
      static_cast<unsigned long long>(expected));
  sys.stop();
  sys.block_until_stopped();
  return total == expected ? 0 : 1;
}
