// examples/getting_started.cpp: the actor version of "Getting started" (shared spec, api.md):
// a group of four doublers, an ask (21 -> 42), a tell, a broadcast, then a graceful stop.
#include <bastion/bastion.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>
#include <utility>

using namespace std::chrono_literals;

int main() {
  bastion::system sys{bastion::config{}.workers(4)};
  std::atomic<int> told{0};

  // A children group: four identical actors running the same body. Each gets its own mailbox.
  auto doublers = sys.children([&told](bastion::children_builder& c) {
    c.name("doublers").redundancy(4).exec([&told](bastion::context& ctx) -> bastion::task<> {
      for (;;) {
        auto msg = co_await ctx.recv();
        bastion::match(
            std::move(msg),
            [&](bastion::question<int> q) {
              std::printf(
                  "doubler %llu asked %d\n", static_cast<unsigned long long>(ctx.id()), q.value());
              q.reply(q.value() * 2);
            },
            [&](const std::string& s) {
              std::printf(
                  "doubler %llu told: %s\n", static_cast<unsigned long long>(ctx.id()), s.c_str());
              told.fetch_add(1);
            },
            [&](bastion::broadcast<std::string> const& b) {
              std::printf(
                  "doubler %llu got the broadcast: %s\n",
                  static_cast<unsigned long long>(ctx.id()),
                  b->c_str());
              told.fetch_add(1);
            },
            bastion::otherwise([](bastion::message&& m) {
              std::printf("unexpected message of type %s\n", m.type().name());
            }));
      }
    });
  });

  sys.start();
  const auto members = doublers.elems();
  std::printf("the group %s has %zu members\n", doublers.name().c_str(), members.size());

  members[0].tell(std::string{"hello"}); // fire and forget
  doublers.broadcast(std::string{"to everyone"});
  // An ask from main: a task that yields the reply (or throws timed_out after 1 s), run on
  // the system's runtime. FIFO per sender: the tell and the broadcast are handled first.
  const int answer = sys.runtime().run(members[0].ask<int>(21, 1s));
  std::printf("ask(21) -> %d\n", answer);
  for (std::size_t i = 1; i < members.size(); ++i) { // every member handled its broadcast
    (void)sys.runtime().run(members[i].ask<int>(0, 1s));
  }

  sys.stop(); // graceful: every child is stopped, then block_until_stopped returns
  sys.block_until_stopped();
  std::printf("stopped; %d tells/broadcasts handled\n", told.load());
  return answer == 42 && told.load() == 5 ? 0 : 1;
}
