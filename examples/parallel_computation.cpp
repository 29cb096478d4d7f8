// examples/parallel_computation.cpp: map-reduce by ask. A master proc splits 1..N into chunks,
// asks the "mappers" group (4 actors, round-robin) for the sum of squares of each chunk, then
// reduces the replies and checks the closed form N(N+1)(2N+1)/6.
#include <bastion/bastion.hpp>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <utility>
#include <vector>

using namespace std::chrono_literals;

namespace {
struct chunk {
  std::uint64_t from; // inclusive
  std::uint64_t to;   // exclusive
};

bastion::task<std::uint64_t>
map_reduce(bastion::children_ref mappers, std::uint64_t n, std::uint64_t chunks) {
  const auto workers = mappers.elems();
  std::vector<bastion::reply_future<std::uint64_t>> parts;
  const std::uint64_t step = (n + chunks - 1) / chunks;
  for (std::uint64_t from = 1, i = 0; from <= n; from += step, ++i) { // map: scatter
    parts.push_back(
        workers[i % workers.size()].ask<std::uint64_t>(chunk{from, std::min(from + step, n + 1)}));
  }
  std::uint64_t total = 0;
  for (auto& p : parts) { // reduce: gather
    total += co_await std::move(p);
  }
  std::printf("reduced %zu partial sums\n", parts.size());
  co_return total;
}
} // namespace

int main() {
  bastion::system sys{bastion::config{}.workers(2)};
  auto mappers = sys.children([](bastion::children_builder& c) {
    c.name("mappers").redundancy(4).exec([](bastion::context& ctx) -> bastion::task<> {
      std::uint64_t handled = 0;
      for (;;) {
        bastion::match(
            co_await ctx.recv(),
            [&](bastion::question<chunk> q) {
              std::uint64_t s = 0;
              for (std::uint64_t i = q.value().from; i < q.value().to; ++i) {
                s += i * i;
              }
              q.reply(s);
              ++handled;
            },
            bastion::otherwise([](bastion::message&&) {}));
      }
    });
  });
  sys.start();
  constexpr std::uint64_t n = 1'000'000;
  const auto t0 = std::chrono::steady_clock::now();
  const std::uint64_t total = sys.runtime().run(map_reduce(mappers, n, 64));
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  const std::uint64_t expected = n * (n + 1) * (2 * n + 1) / 6;
  std::printf(
      "sum of squares 1..%llu = %llu (expected %llu) in %.1f ms\n",
      static_cast<unsigned long long>(n),
      static_cast<unsigned long long>(total),
      static_cast<unsigned long long>(expected),
      ms);
  sys.stop();
  sys.block_until_stopped();
  return total == expected ? 0 : 1;
}
