// examples/fibonacci.cpp: ask/answer workers. Four "fib" actors answer questions "fib(n)?"; a
// master proc spreads n = 0..90 over them round-robin, awaits every reply future, and checks
// each answer against its own table.
#include <bastion/bastion.hpp>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <utility>
#include <vector>

using namespace std::chrono_literals;

namespace {
struct fib_answer {
  unsigned n;
  std::uint64_t value;
  std::uint64_t worker;
};

std::uint64_t fib(unsigned n) {
  std::uint64_t a = 0;
  std::uint64_t b = 1;
  for (unsigned i = 0; i < n; ++i) {
    a = std::exchange(b, a + b);
  }
  return a;
}

bastion::task<int> master(bastion::children_ref fibs) {
  const auto workers = fibs.elems();
  std::vector<bastion::reply_future<fib_answer>> pending;
  for (unsigned n = 0; n <= 90; ++n) {
    pending.push_back(workers[n % workers.size()].ask<fib_answer>(n)); // sent at once
  }
  int wrong = 0;
  std::uint64_t a = 0;
  std::uint64_t b = 1;
  for (auto& f : pending) {
    const fib_answer r = co_await std::move(f);
    if (r.n % 10 == 0) {
      std::printf(
          "fib(%u) = %llu (worker %llu)\n",
          r.n,
          static_cast<unsigned long long>(r.value),
          static_cast<unsigned long long>(r.worker));
    }
    wrong += r.value == a ? 0 : 1;
    a = std::exchange(b, a + b);
  }
  co_return wrong;
}
} // namespace

int main() {
  bastion::system sys{bastion::config{}.workers(2)};
  auto fibs = sys.children([](bastion::children_builder& c) {
    c.name("fib").redundancy(4).exec([](bastion::context& ctx) -> bastion::task<> {
      for (;;) {
        bastion::match(
            co_await ctx.recv(),
            [&](bastion::question<unsigned> q) {
              q.reply(fib_answer{q.value(), fib(q.value()), ctx.id()});
            },
            bastion::otherwise([](bastion::message&&) {}));
      }
    });
  });
  sys.start();
  const int wrong = sys.runtime().run(master(fibs));
  std::printf("%d wrong answers\n", wrong);
  sys.stop();
  sys.block_until_stopped();
  return wrong == 0 ? 0 : 1;
}
